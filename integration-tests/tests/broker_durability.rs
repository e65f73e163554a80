//! A broker with a data directory keeps everything across restarts: streams, shards and their
//! lineage, records with their sequence numbers, consumers, tags, policies, iterators, DynamoDB
//! tables and items; and in `--sync always` mode a `kill -9` loses nothing it acknowledged.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ShardIteratorType, SubscribeToShardEventStream,
};
use integration_tests::{
    TempDir, create_stream, create_table, dynamodb_client, kinesis_client, shard_iterator,
    stream_arn, subscribe_from_trim_horizon,
};
use local_broker::{LocalBroker, SyncMode};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every record of a shard, oldest first, as (sequence number, data).
async fn read_shard(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
) -> Vec<(String, Vec<u8>)> {
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator;
    read_from(client, iterator.take().unwrap()).await
}

async fn read_from(client: &aws_sdk_kinesis::Client, iterator: String) -> Vec<(String, Vec<u8>)> {
    let mut iterator = Some(iterator);
    let mut records = Vec::new();
    while let Some(it) = iterator {
        let out = client
            .get_records()
            .shard_iterator(it)
            .send()
            .await
            .unwrap();
        for r in out.records() {
            records.push((r.sequence_number().to_owned(), r.data().as_ref().to_vec()));
        }
        if out.records().is_empty() && out.millis_behind_latest() == Some(0) {
            break;
        }
        iterator = out.next_shard_iterator().map(str::to_owned);
    }
    records
}

/// The data of record `i` put with `tag`: `tag-i`, padded to `size` bytes.
fn data_of(tag: &str, i: usize, size: usize) -> Vec<u8> {
    let mut data = format!("{tag}-{i}").into_bytes();
    let pad = size.saturating_sub(data.len());
    data.extend((0..pad).map(|b| (b + i) as u8));
    data
}

/// Puts `n` records of `size` bytes (at least `tag-i`) in one call; returns (shard, sequence
/// number, data) of each.
async fn put(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    n: usize,
    tag: &str,
    size: usize,
) -> Vec<(String, String, Vec<u8>)> {
    let entries = (0..n)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("key-{i}"))
                .data(Blob::new(data_of(tag, i, size)))
                .build()
                .unwrap()
        })
        .collect::<Vec<_>>();
    let out = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
    out.records()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                r.shard_id().unwrap().to_owned(),
                r.sequence_number().unwrap().to_owned(),
                data_of(tag, i, size),
            )
        })
        .collect()
}

#[tokio::test]
async fn restart_keeps_streams_records_consumers_tags_and_tables() {
    let dir = TempDir::new("restart");
    let broker = LocalBroker::builder()
        .data_dir(&dir.0)
        .sync(SyncMode::Always)
        .start()
        .await
        .unwrap();
    let kinesis = kinesis_client(&broker.endpoint());
    let dynamodb = dynamodb_client(&broker.endpoint());
    create_stream(&kinesis, "durable", 2).await;
    let stream_arn = stream_arn(&kinesis, "durable").await;
    kinesis
        .add_tags_to_stream()
        .stream_name("durable")
        .tags("team", "storage")
        .send()
        .await
        .unwrap();
    kinesis
        .increase_stream_retention_period()
        .stream_name("durable")
        .retention_period_hours(48)
        .send()
        .await
        .unwrap();
    kinesis
        .register_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name("app")
        .send()
        .await
        .unwrap();
    let mut written = put(&kinesis, "durable", 20, "before-split", 0).await;
    kinesis
        .split_shard()
        .stream_name("durable")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((1u128 << 126).to_string())
        .send()
        .await
        .unwrap();
    written.extend(put(&kinesis, "durable", 20, "after-split", 0).await);
    let early_iterator = kinesis
        .get_shard_iterator()
        .stream_name("durable")
        .shard_id("shardId-000000000001")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();

    create_table(&dynamodb, "leases", "leaseKey").await;
    for (key, checkpoint) in [("shard-0", "10"), ("shard-1", "20"), ("shard-2", "30")] {
        dynamodb
            .put_item()
            .table_name("leases")
            .item("leaseKey", AttributeValue::S(key.into()))
            .item("checkpoint", AttributeValue::N(checkpoint.into()))
            .send()
            .await
            .unwrap();
    }
    dynamodb
        .update_item()
        .table_name("leases")
        .key("leaseKey", AttributeValue::S("shard-1".into()))
        .update_expression("SET checkpoint = :c")
        .expression_attribute_values(":c", AttributeValue::N("21".into()))
        .send()
        .await
        .unwrap();
    dynamodb
        .delete_item()
        .table_name("leases")
        .key("leaseKey", AttributeValue::S("shard-2".into()))
        .send()
        .await
        .unwrap();
    broker.shutdown().await;

    let broker = start_on(&dir).await;
    let kinesis = kinesis_client(&broker.endpoint());
    let dynamodb = dynamodb_client(&broker.endpoint());
    let shards = kinesis
        .list_shards()
        .stream_name("durable")
        .send()
        .await
        .unwrap()
        .shards
        .unwrap();
    assert_eq!(
        shards.len(),
        4,
        "the parent, its two children and the untouched shard"
    );
    let children: Vec<_> = shards
        .iter()
        .filter(|s| s.parent_shard_id() == Some("shardId-000000000000"))
        .map(|s| s.shard_id().to_owned())
        .collect();
    assert_eq!(children, ["shardId-000000000002", "shardId-000000000003"]);
    let summary = kinesis
        .describe_stream_summary()
        .stream_name("durable")
        .send()
        .await
        .unwrap()
        .stream_description_summary
        .unwrap();
    assert_eq!(summary.retention_period_hours(), 48);
    assert_eq!(summary.consumer_count(), Some(1));
    let tags = kinesis
        .list_tags_for_stream()
        .stream_name("durable")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags()[0].key(), "team");

    let by_shard = by_shard(&written);
    for (shard, expected) in &by_shard {
        assert_eq!(
            &read_shard(&kinesis, "durable", shard).await,
            expected,
            "{shard}"
        );
    }
    // An iterator issued before the restart still works.
    assert_eq!(
        read_from(&kinesis, early_iterator).await,
        by_shard["shardId-000000000001"]
    );
    // New records get larger sequence numbers than any before the restart.
    for (shard, seq, _) in put(&kinesis, "durable", 20, "after-restart", 0).await {
        let before = by_shard
            .get(&shard)
            .and_then(|r| r.last())
            .map(|r| r.0.clone());
        assert!(before.is_none_or(|before| seq > before), "{shard}: {seq}");
    }

    let items = dynamodb.scan().table_name("leases").send().await.unwrap();
    let mut checkpoints: Vec<(String, String)> = items
        .items()
        .iter()
        .map(|item| {
            (
                item["leaseKey"].as_s().unwrap().clone(),
                item["checkpoint"].as_n().unwrap().clone(),
            )
        })
        .collect();
    checkpoints.sort();
    assert_eq!(
        checkpoints,
        [
            ("shard-0".to_owned(), "10".to_owned()),
            ("shard-1".to_owned(), "21".to_owned())
        ]
    );
    broker.shutdown().await;
}

/// Acknowledged records grouped by shard, in sequence order.
fn by_shard(written: &[(String, String, Vec<u8>)]) -> BTreeMap<String, Vec<(String, Vec<u8>)>> {
    let mut by_shard: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for (shard, seq, data) in written {
        by_shard
            .entry(shard.clone())
            .or_default()
            .push((seq.clone(), data.clone()));
    }
    by_shard
}

/// Reads every shard back through GetRecords with every iterator type and checks it against what
/// was acknowledged, byte for byte and in order.
async fn check_reads(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    expected: &BTreeMap<String, Vec<(String, Vec<u8>)>>,
) {
    for (shard, records) in expected {
        assert_eq!(&read_shard(client, stream, shard).await, records, "{shard}");
        let mid = records.len() / 2;
        let at = shard_iterator(
            client,
            stream,
            shard,
            ShardIteratorType::AtSequenceNumber,
            Some(&records[mid].0),
            None,
        )
        .await;
        assert_eq!(read_from(client, at).await, records[mid..], "{shard} at");
        let after = shard_iterator(
            client,
            stream,
            shard,
            ShardIteratorType::AfterSequenceNumber,
            Some(&records[mid].0),
            None,
        )
        .await;
        assert_eq!(
            read_from(client, after).await,
            records[mid + 1..],
            "{shard} after"
        );
        // Small pages: every page boundary is a fresh read from the index.
        let mut it = Some(
            shard_iterator(
                client,
                stream,
                shard,
                ShardIteratorType::AtSequenceNumber,
                Some(&records[mid].0),
                None,
            )
            .await,
        );
        let mut paged = Vec::new();
        let mut first_arrival = None;
        while let Some(current) = it.take() {
            let out = client
                .get_records()
                .shard_iterator(current)
                .limit(7)
                .send()
                .await
                .unwrap();
            assert!(out.records().len() <= 7);
            first_arrival = first_arrival.or_else(|| {
                out.records()
                    .first()
                    .and_then(|r| r.approximate_arrival_timestamp().copied())
            });
            paged.extend(
                out.records()
                    .iter()
                    .map(|r| (r.sequence_number().to_owned(), r.data().as_ref().to_vec())),
            );
            if !out.records().is_empty() {
                it = out.next_shard_iterator().map(str::to_owned);
            }
        }
        assert_eq!(paged, records[mid..], "{shard} paged");
        // AT_TIMESTAMP of the middle record starts at or before it (records share milliseconds).
        let at_time = shard_iterator(
            client,
            stream,
            shard,
            ShardIteratorType::AtTimestamp,
            None,
            first_arrival,
        )
        .await;
        let from_time = read_from(client, at_time).await;
        assert!(
            records.ends_with(&from_time) && from_time.len() >= records.len() - mid,
            "{shard} at timestamp"
        );
        let latest =
            shard_iterator(client, stream, shard, ShardIteratorType::Latest, None, None).await;
        assert!(read_from(client, latest).await.is_empty(), "{shard} latest");
    }
}

/// With a data directory the broker keeps an index and a bounded hot tail, not every record: far
/// more data than the cache holds comes back byte-exact and in order, from GetRecords with every
/// iterator type and from fan-out (history from disk, then the live tail), before and after a
/// restart, while the cache stays within its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_far_beyond_the_cache_are_served_from_disk_in_order() {
    const CACHE: usize = 16 * 1024;
    let dir = TempDir::new("cache");
    let start = || {
        LocalBroker::builder()
            .data_dir(&dir.0)
            .sync(SyncMode::Never)
            .cache_size(CACHE)
            .start()
    };
    let broker = start().await.unwrap();
    let kinesis = kinesis_client(&broker.endpoint());
    create_stream(&kinesis, "big", 2).await;
    // 2 MB through a 16 KiB cache.
    let mut written = Vec::new();
    for batch in 0..20 {
        written.extend(put(&kinesis, "big", 100, &format!("b{batch}"), 1000).await);
        assert!(broker.cached_record_bytes() <= CACHE);
    }
    let expected = by_shard(&written);
    check_reads(&kinesis, "big", &expected).await;

    let stream_arn = stream_arn(&kinesis, "big").await;
    let consumer = kinesis
        .register_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name("fan")
        .send()
        .await
        .unwrap()
        .consumer
        .unwrap()
        .consumer_arn;
    let shard = "shardId-000000000000";
    let mut sub = subscribe_from_trim_horizon(&kinesis, &consumer, shard).await;
    let mut pushed = Vec::new();
    let mut live_sent = false;
    while pushed.len() < expected[shard].len() + 1 {
        match sub.event_stream.recv().await.unwrap() {
            Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)) => pushed.extend(
                event
                    .records
                    .iter()
                    .map(|r| (r.sequence_number.clone(), r.data.clone().into_inner())),
            ),
            other => panic!("unexpected event {other:?}"),
        }
        if pushed.len() == expected[shard].len() && !live_sent {
            let out = kinesis
                .put_record()
                .stream_name("big")
                .partition_key("k")
                .explicit_hash_key("0")
                .data(Blob::new("live"))
                .send()
                .await
                .unwrap();
            live_sent = true;
            assert_eq!(out.shard_id(), shard);
        }
    }
    assert_eq!(
        pushed[..expected[shard].len()],
        expected[shard],
        "fan-out history"
    );
    assert_eq!(pushed.last().unwrap().1, b"live", "fan-out live tail");
    drop(sub);
    broker.shutdown().await;

    let broker = start().await.unwrap();
    let kinesis = kinesis_client(&broker.endpoint());
    let mut expected = expected;
    expected
        .get_mut(shard)
        .unwrap()
        .push(pushed.last().unwrap().clone());
    check_reads(&kinesis, "big", &expected).await;
    assert!(broker.cached_record_bytes() <= CACHE);
    broker.shutdown().await;
}

/// A broker with default settings on `dir`, as a restarted broker comes up.
async fn start_on(dir: &TempDir) -> local_broker::RunningBroker {
    LocalBroker::builder()
        .data_dir(&dir.0)
        .start()
        .await
        .unwrap()
}

/// The `local-broker` binary next to this test's executable (`target/<profile>/`), if built.
fn broker_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let binary = profile_dir.join(format!("local-broker{}", std::env::consts::EXE_SUFFIX));
    binary.exists().then_some(binary)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker process, killed when dropped so a failing test leaves none behind.
struct BrokerProcess(std::process::Child);

impl BrokerProcess {
    /// `kill -9`: no shutdown path runs.
    fn kill_9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_broker(binary: &PathBuf, dir: &PathBuf, port: u16) -> BrokerProcess {
    let child = std::process::Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--sync",
            "always",
            "--data-dir",
        ])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    BrokerProcess(child)
}

async fn wait_until_serving(client: &aws_sdk_kinesis::Client) {
    for _ in 0..200 {
        if client.list_streams().send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the broker did not come up");
}

/// An acknowledged record: restart generation (if certain), shard, sequence number, data.
type Acked = (Option<usize>, String, String, Vec<u8>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_nothing_acknowledged() {
    let Some(binary) = broker_binary() else {
        eprintln!(
            "skipping: no local-broker binary beside the test executable; \
             `cargo test -p local-broker -p integration-tests` builds it"
        );
        return;
    };
    let dir = TempDir::new("crash");
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = kinesis_client(&endpoint);
    let mut child = spawn_broker(&binary, &dir.0, port);
    wait_until_serving(&client).await;
    create_stream(&client, "crash", 4).await;

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let generation = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let (client, acked, generation, stop) = (
                client.clone(),
                acked.clone(),
                generation.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.is_cancelled() {
                    let gen_at_send = generation.load(std::sync::atomic::Ordering::SeqCst);
                    let entries: Vec<_> = (0..10)
                        .map(|i| {
                            PutRecordsRequestEntry::builder()
                                .partition_key(format!("p{p}-{}", n + i))
                                .data(Blob::new(format!("p{p}-{}", n + i)))
                                .build()
                                .unwrap()
                        })
                        .collect();
                    let sent = client
                        .put_records()
                        .stream_name("crash")
                        .set_records(Some(entries))
                        .send()
                        .await;
                    match sent {
                        Ok(out) => {
                            // A request in flight across a restart may have been served by
                            // either broker; it takes no part in the ordering check.
                            let gen_at_ack = generation.load(std::sync::atomic::Ordering::SeqCst);
                            let label = if gen_at_ack == gen_at_send {
                                Some(gen_at_send)
                            } else {
                                None
                            };
                            let mut acked = acked.lock().unwrap();
                            for (i, r) in out.records().iter().enumerate() {
                                if let (Some(shard), Some(seq)) =
                                    (r.shard_id(), r.sequence_number())
                                {
                                    acked.push((
                                        label,
                                        shard.to_owned(),
                                        seq.to_owned(),
                                        format!("p{p}-{}", n + i as u64).into_bytes(),
                                    ));
                                }
                            }
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                    n += 10;
                }
            })
        })
        .collect();

    for round in 1..=3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        child.kill_9();
        generation.store(round, std::sync::atomic::Ordering::SeqCst);
        child = spawn_broker(&binary, &dir.0, port);
        wait_until_serving(&client).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.cancel();
    for producer in producers {
        producer.await.unwrap();
    }

    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "verifying {} acknowledged records across 3 kill -9 restarts",
        acked.len()
    );
    assert!(
        acked.len() > 100,
        "the load made progress: {} records",
        acked.len()
    );
    let mut stored: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for shard in 0..4 {
        let shard = format!("shardId-{shard:012}");
        let records = read_shard(&client, "crash", &shard).await;
        assert!(
            records.windows(2).all(|w| w[0].0 < w[1].0),
            "{shard}: sequence numbers strictly increase"
        );
        for (seq, data) in records {
            assert!(stored.insert(format!("{shard}/{seq}"), data).is_none());
        }
    }
    for (_, shard, seq, data) in &acked {
        assert_eq!(
            stored.get(&format!("{shard}/{seq}")),
            Some(data),
            "acknowledged record {shard}/{seq} is readable with its data"
        );
    }
    // Records acknowledged after a restart sort after every record acknowledged before it.
    for round in 1..=3 {
        for shard in 0..4 {
            let shard = format!("shardId-{shard:012}");
            let before = acked
                .iter()
                .filter(|a| a.0.is_some_and(|g| g < round) && a.1 == shard)
                .map(|a| &a.2)
                .max();
            let after = acked
                .iter()
                .filter(|a| a.0.is_some_and(|g| g >= round) && a.1 == shard)
                .map(|a| &a.2)
                .min();
            if let (Some(before), Some(after)) = (before, after) {
                assert!(after > before, "{shard} round {round}: {after} > {before}");
            }
        }
    }
    child.kill_9();
}

#[tokio::test]
async fn a_second_broker_on_a_data_dir_in_use_fails_to_start_until_the_first_stops() {
    let dir = TempDir::new("locked");
    let first = start_on(&dir).await;
    let second = LocalBroker::builder().data_dir(&dir.0).start().await;
    match second {
        Err(local_broker::BrokerError::Storage {
            source: local_broker::storage::StorageError::Locked,
            ..
        }) => {}
        Err(other) => panic!("expected the data directory to be locked, got {other}"),
        Ok(_) => panic!("two brokers opened one data directory"),
    }
    first.shutdown().await;
    let second = start_on(&dir).await;
    second.shutdown().await;
}

#[tokio::test]
async fn a_start_failing_on_its_tls_files_leaves_the_data_dir_free() {
    let dir = TempDir::new("tls-fails");
    let missing = dir.0.join("missing.pem");
    let failed = LocalBroker::builder()
        .data_dir(&dir.0)
        .tls(local_broker::TlsSettings::Files {
            cert: missing.clone(),
            key: missing,
        })
        .start()
        .await;
    assert!(
        matches!(failed, Err(local_broker::BrokerError::Tls(_))),
        "{:?}",
        failed.err()
    );
    let broker = start_on(&dir).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn account_settings_survive_a_restart() {
    use aws_sdk_kinesis::types::{
        MinimumThroughputBillingCommitmentInput, MinimumThroughputBillingCommitmentInputStatus,
        MinimumThroughputBillingCommitmentOutputStatus,
    };
    let dir = TempDir::new("account");
    let broker = start_on(&dir).await;
    let kinesis = kinesis_client(&broker.endpoint());
    let enabled = kinesis
        .update_account_settings()
        .minimum_throughput_billing_commitment(
            MinimumThroughputBillingCommitmentInput::builder()
                .status(MinimumThroughputBillingCommitmentInputStatus::Enabled)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .minimum_throughput_billing_commitment
        .unwrap();
    broker.shutdown().await;

    let broker = start_on(&dir).await;
    let kinesis = kinesis_client(&broker.endpoint());
    let restored = kinesis
        .describe_account_settings()
        .send()
        .await
        .unwrap()
        .minimum_throughput_billing_commitment
        .unwrap();
    assert_eq!(
        restored.status,
        MinimumThroughputBillingCommitmentOutputStatus::Enabled
    );
    assert_eq!(restored.started_at, enabled.started_at);
    broker.shutdown().await;
}
