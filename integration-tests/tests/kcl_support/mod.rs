//! Shared harness for the `kcl_*` scenarios: an in-process broker, a stream, workers running the
//! real `kcl::Scheduler` with SDK clients, a producer, and a log of everything the processors saw.
#![allow(dead_code)] // each scenario uses a different part

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use integration_tests::{create_stream, dynamodb_client, kinesis_client};
use kcl::lease::{DynamoDbLeaseStore, LeaseStore};
use kcl::{
    Config, InitialPosition, InitializationInput, LeaseLostInput, ProcessRecordsInput,
    ProcessorError, RecordProcessor, Scheduler, SchedulerError, ShardEndedInput,
    ShutdownRequestedInput,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Short times so the scenarios stay fast: failover 1.5 s, renewal and scans every 475 ms.
pub fn test_config() -> Config {
    Config::default()
        .failover_time(Duration::from_millis(1500))
        .idle_time_between_reads(Duration::from_millis(50))
        .parent_shard_poll_interval(Duration::from_millis(200))
        .shard_sync_interval(Duration::from_secs(1))
        .lease_cleanup_interval(Duration::from_secs(1))
        .shutdown_timeout(Duration::from_secs(10))
}

/// One record as the producer put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    pub shard: String,
    pub sequence: String,
    pub data: String,
}

/// What a processor saw or did.
#[derive(Debug, Clone)]
pub enum Event {
    Initialized {
        worker: String,
        shard: String,
        at: Instant,
    },
    Batch {
        worker: String,
        shard: String,
        /// (sequence number, data) in delivery order.
        records: Vec<(String, String)>,
        started: Instant,
        finished: Instant,
    },
    Checkpointed {
        worker: String,
        shard: String,
        sequence: String,
    },
    LeaseLost {
        worker: String,
        shard: String,
    },
    ShutdownRequested {
        worker: String,
        shard: String,
    },
    ShardEnded {
        worker: String,
        shard: String,
    },
}

/// Everything every processor of a test saw, in order.
#[derive(Default)]
pub struct Log {
    events: Mutex<Vec<Event>>,
}

impl Log {
    pub fn push(&self, event: Event) {
        self.events.lock().expect("log lock").push(event);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("log lock").clone()
    }

    /// (worker, shard, sequence, data) of every processed record, in processing order.
    pub fn processed(&self) -> Vec<(String, String, String, String)> {
        let mut out = Vec::new();
        for e in self.events() {
            if let Event::Batch {
                worker,
                shard,
                records,
                ..
            } = e
            {
                for (seq, data) in records {
                    out.push((worker.clone(), shard.clone(), seq, data));
                }
            }
        }
        out
    }

    /// How many distinct records were processed.
    pub fn distinct(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        for (_, _, _, data) in self.processed() {
            seen.insert(data);
        }
        seen.len()
    }

    /// Records processed more than once, with the workers that processed them.
    pub fn duplicates(&self) -> BTreeMap<String, Vec<(String, String)>> {
        let mut by_data: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (worker, shard, seq, data) in self.processed() {
            let _ = shard;
            by_data.entry(data).or_default().push((worker, seq));
        }
        by_data.retain(|_, v| v.len() > 1);
        by_data
    }

    /// The last sequence number each worker checkpointed in each shard.
    pub fn last_checkpoints(&self) -> HashMap<(String, String), String> {
        let mut out = HashMap::new();
        for e in self.events() {
            if let Event::Checkpointed {
                worker,
                shard,
                sequence,
            } = e
            {
                out.insert((worker, shard), sequence);
            }
        }
        out
    }
}

/// Numeric order of decimal sequence numbers.
pub fn seq_key(seq: &str) -> (usize, String) {
    let s = seq.trim_start_matches('0');
    (s.len(), s.to_owned())
}

/// Checks every record was processed, and that within each shard records came in sequence order
/// (allowing a repeat only where processing restarted: a processor initialized again for the
/// shard, after a failover or a lost lease, resumes from the checkpoint).
pub fn assert_all_processed_in_order(log: &Log, produced: &[Produced]) {
    let processed = log.processed();
    let seen: std::collections::HashSet<&str> =
        processed.iter().map(|(_, _, _, d)| d.as_str()).collect();
    let missing: Vec<&Produced> = produced
        .iter()
        .filter(|p| !seen.contains(p.data.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} records never processed, e.g. {:?}",
        missing.len(),
        produced.len(),
        missing.first()
    );
    let mut last: HashMap<(String, String), String> = HashMap::new();
    for event in log.events() {
        match event {
            Event::Initialized { worker, shard, .. } => {
                last.remove(&(worker, shard));
            }
            Event::Batch {
                worker,
                shard,
                records,
                ..
            } => {
                for (seq, _) in records {
                    if let Some(prev) = last.insert((worker.clone(), shard.clone()), seq.clone()) {
                        assert!(
                            seq_key(&prev) < seq_key(&seq),
                            "{worker} processed {shard} out of order: {prev} then {seq}"
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

/// Logs everything and checkpoints after every batch; the default `shutdown_requested` and
/// `shard_ended` checkpoint as the library documents, and are logged around.
pub struct LoggingProcessor {
    pub worker: String,
    pub shard: String,
    pub log: Arc<Log>,
}

#[async_trait]
impl RecordProcessor for LoggingProcessor {
    async fn initialize(&mut self, input: InitializationInput) -> Result<(), ProcessorError> {
        // Shard ids repeat across the streams of a multi-stream application: name the stream too.
        self.shard = input.lease_key();
        self.log.push(Event::Initialized {
            worker: self.worker.clone(),
            shard: self.shard.clone(),
            at: Instant::now(),
        });
        Ok(())
    }

    async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
        let started = Instant::now();
        let records = input
            .records
            .iter()
            .map(|r| {
                (
                    r.sequence_number.to_string(),
                    String::from_utf8_lossy(&r.data).into_owned(),
                )
            })
            .collect::<Vec<_>>();
        let last = records.last().map(|(s, _)| s.clone());
        // The side effect first, then the checkpoint: a crash in between repeats records, never
        // loses them.
        self.log.push(Event::Batch {
            worker: self.worker.clone(),
            shard: self.shard.clone(),
            records,
            started,
            finished: Instant::now(),
        });
        input.checkpointer.checkpoint().await?;
        if let Some(sequence) = last {
            self.log.push(Event::Checkpointed {
                worker: self.worker.clone(),
                shard: self.shard.clone(),
                sequence,
            });
        }
        Ok(())
    }

    async fn lease_lost(&mut self, _input: LeaseLostInput) {
        self.log.push(Event::LeaseLost {
            worker: self.worker.clone(),
            shard: self.shard.clone(),
        });
    }

    async fn shard_ended(&mut self, input: ShardEndedInput) -> Result<(), ProcessorError> {
        input.checkpointer.checkpoint().await?;
        self.log.push(Event::ShardEnded {
            worker: self.worker.clone(),
            shard: self.shard.clone(),
        });
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        input: ShutdownRequestedInput,
    ) -> Result<(), ProcessorError> {
        input.checkpointer.checkpoint().await?;
        self.log.push(Event::ShutdownRequested {
            worker: self.worker.clone(),
            shard: self.shard.clone(),
        });
        Ok(())
    }
}

/// A broker with one stream, and the clients to reach it.
pub struct Fleet {
    pub broker: local_broker::RunningBroker,
    pub kinesis: aws_sdk_kinesis::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub stream: String,
    pub application: String,
    pub log: Arc<Log>,
}

/// A running worker.
pub struct Worker {
    pub id: String,
    /// Readiness and drain, as an autoscaler would use them.
    pub handle: kcl::WorkerHandle,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), SchedulerError>>,
}

impl Worker {
    /// Graceful stop: waits until the worker checkpointed and released its leases.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("worker task not aborted")
            .expect("worker ran without error");
    }

    /// Abrupt stop, like a crashed process: nothing is released or checkpointed.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

impl Fleet {
    /// A broker and a stream with `shards` shards. Set `RUST_LOG=kcl=debug` to see the workers'
    /// lease decisions.
    pub async fn new(shards: i32) -> Self {
        Self::with_broker(local_broker::LocalBroker::builder(), shards).await
    }

    /// Like [`Fleet::new`] with a configured broker.
    pub async fn with_broker(broker: local_broker::LocalBrokerBuilder, shards: i32) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let broker = broker.start().await.expect("the broker binds 127.0.0.1:0");
        let kinesis = kinesis_client(&broker.endpoint());
        let dynamodb = dynamodb_client(&broker.endpoint());
        create_stream(&kinesis, "orders", shards).await;
        Self {
            broker,
            kinesis,
            dynamodb,
            stream: "orders".into(),
            application: "order-processor".into(),
            log: Arc::new(Log::default()),
        }
    }

    /// Starts a worker reading from TRIM_HORIZON with a logging processor.
    pub fn start_worker(&self, id: &str, config: Config) -> Worker {
        let (log, worker) = (self.log.clone(), id.to_owned());
        self.start_worker_with(id, config, move || LoggingProcessor {
            worker: worker.clone(),
            shard: String::new(),
            log: log.clone(),
        })
    }

    /// Starts a worker reading from TRIM_HORIZON with any processor factory.
    pub fn start_worker_with(
        &self,
        id: &str,
        config: Config,
        factory: impl kcl::ProcessorFactory,
    ) -> Worker {
        self.start_worker_from(id, config, InitialPosition::TrimHorizon, factory)
    }

    /// Starts a worker with any initial position and processor factory.
    pub fn start_worker_from(
        &self,
        id: &str,
        config: Config,
        initial_position: InitialPosition,
        factory: impl kcl::ProcessorFactory,
    ) -> Worker {
        let builder = self
            .builder(id, config)
            .stream(&self.stream)
            .processor_factory(factory)
            .initial_position(initial_position);
        Self::spawn(id, builder)
    }

    /// Starts a worker of a multi-stream application consuming what `tracker` lists, with a
    /// logging processor (its shards are logged as `account:stream:epoch:shardId`).
    pub fn start_multi_stream_worker(
        &self,
        id: &str,
        config: Config,
        tracker: impl kcl::StreamTracker,
    ) -> Worker {
        let (log, worker) = (self.log.clone(), id.to_owned());
        let builder = self
            .builder(id, config)
            .stream_tracker(tracker)
            .processor_factory(move || LoggingProcessor {
                worker: worker.clone(),
                shard: String::new(),
                log: log.clone(),
            });
        Self::spawn(id, builder)
    }

    fn builder(&self, id: &str, config: Config) -> kcl::SchedulerBuilder {
        Scheduler::builder()
            .application_name(&self.application)
            .worker_id(id)
            .kinesis_client(self.kinesis.clone())
            .dynamodb_client(self.dynamodb.clone())
            .config(config)
    }

    fn spawn(id: &str, builder: kcl::SchedulerBuilder) -> Worker {
        let scheduler = builder.build().expect("complete builder");
        let shutdown = CancellationToken::new();
        let handle = scheduler.handle();
        let task = tokio::spawn(scheduler.run(shutdown.clone()));
        Worker {
            id: id.to_owned(),
            handle,
            shutdown,
            task,
        }
    }

    /// Puts `count` records numbered from `first`, spread over the shards.
    pub async fn produce(&self, first: usize, count: usize) -> Vec<Produced> {
        produce(&self.kinesis, &self.stream, first, count).await
    }

    /// Like [`Fleet::produce`], into another stream.
    pub async fn produce_to(&self, stream: &str, first: usize, count: usize) -> Vec<Produced> {
        produce(&self.kinesis, stream, first, count).await
    }

    /// Creates another stream and returns its multi-stream identifier.
    pub async fn create_stream(&self, name: &str, shards: i32) -> kcl::StreamIdentifier {
        create_stream(&self.kinesis, name, shards).await;
        kcl::StreamIdentifier::describe(&self.kinesis, name)
            .await
            .expect("DescribeStreamSummary of a new stream")
    }

    /// The names of the enhanced fan-out consumers registered on `stream`.
    pub async fn consumer_names(&self, stream: &str) -> Vec<String> {
        let stream_arn = self
            .kinesis
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .expect("DescribeStreamSummary")
            .stream_description_summary
            .expect("summary")
            .stream_arn;
        self.kinesis
            .list_stream_consumers()
            .stream_arn(stream_arn)
            .send()
            .await
            .expect("ListStreamConsumers")
            .consumers
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.consumer_name)
            .collect()
    }

    /// Every lease in the table (none before the workers created it).
    pub async fn leases(&self) -> Vec<kcl::lease::Lease> {
        let store = DynamoDbLeaseStore::new(self.dynamodb.clone(), &self.application);
        match store.list_leases().await {
            Ok(leases) => leases,
            Err(kcl::lease::LeaseStoreError::TableNotFound(_)) => Vec::new(),
            Err(err) => panic!("scan leases: {err}"),
        }
    }

    /// A producer putting `batch` records every `every` until stopped; returns what it put.
    pub fn produce_continuously(
        &self,
        batch: usize,
        every: Duration,
    ) -> (CancellationToken, JoinHandle<Vec<Produced>>) {
        let stop = CancellationToken::new();
        let (kinesis, stream, halt) = (self.kinesis.clone(), self.stream.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut all = Vec::new();
            while !halt.is_cancelled() {
                all.extend(produce(&kinesis, &stream, 1_000_000 + all.len(), batch).await);
                tokio::time::sleep(every).await;
            }
            all
        });
        (stop, task)
    }

    /// Owner → number of leases it holds (leases in a handoff count for nobody).
    pub async fn owners(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for lease in self.leases().await {
            if lease.checkpoint_owner.is_none()
                && !lease.is_finished()
                && let Some(owner) = lease.owner
            {
                *counts.entry(owner).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Polls `done` every 50 ms until it holds; panics with `what` after `timeout`.
    pub async fn wait_until<F, Fut>(&self, timeout: Duration, what: &str, mut done: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while !done().await {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        start.elapsed()
    }

    /// Waits until every record of `produced` was processed; on timeout, says what is missing.
    pub async fn wait_processed(&self, produced: &[Produced], timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let seen: std::collections::HashSet<String> = self
                .log
                .processed()
                .into_iter()
                .map(|(_, _, _, data)| data)
                .collect();
            let missing: Vec<&Produced> = produced
                .iter()
                .filter(|p| !seen.contains(&p.data))
                .collect();
            if missing.is_empty() {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                let mut per_shard: BTreeMap<&str, usize> = BTreeMap::new();
                for p in &missing {
                    *per_shard.entry(p.shard.as_str()).or_default() += 1;
                }
                panic!(
                    "after {timeout:?}, {} of {} records unprocessed (per shard {per_shard:?}); \
                     first: {:?}",
                    missing.len(),
                    produced.len(),
                    missing[0]
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether lease counts are within one of each other across `workers` workers, all owned.
pub fn balanced(counts: &BTreeMap<String, usize>, workers: usize, leases: usize) -> bool {
    let total: usize = counts.values().sum();
    let max = counts.values().copied().max().unwrap_or(0);
    let min = counts.values().copied().min().unwrap_or(0);
    total == leases && counts.len() == workers && max - min <= 1
}

async fn produce(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    first: usize,
    count: usize,
) -> Vec<Produced> {
    let mut out = Vec::with_capacity(count);
    let ids: Vec<usize> = (first..first + count).collect();
    for chunk in ids.chunks(500) {
        let entries = chunk
            .iter()
            .map(|i| {
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(format!("key-{i}"))
                    .data(aws_smithy_types::Blob::new(format!("record-{i}")))
                    .build()
                    .expect("complete entry")
            })
            .collect::<Vec<_>>();
        // A producer retries what the SDK gave up on (a broker injecting faults fails calls
        // now and then); a failed call wrote nothing, so nothing is put twice.
        let mut attempts = 0;
        let put = loop {
            let sent = kinesis
                .put_records()
                .stream_name(stream)
                .set_records(Some(entries.clone()))
                .send()
                .await;
            attempts += 1;
            match sent {
                Ok(put) => break put,
                Err(_) if attempts < 20 => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(err) => panic!("PutRecords failed {attempts} times: {err:?}"),
            }
        };
        assert_eq!(put.failed_record_count(), Some(0), "no record rejected");
        for (i, result) in chunk.iter().zip(put.records()) {
            out.push(Produced {
                shard: result.shard_id().unwrap_or_default().to_owned(),
                sequence: result.sequence_number().unwrap_or_default().to_owned(),
                data: format!("record-{i}"),
            });
        }
    }
    out
}
