//! KPL-aggregated records through the Scheduler: processors see each user record with its
//! sub-sequence number, in order, once; a checkpoint inside an aggregate resumes exactly after
//! the last checkpointed sub-record.

mod kcl_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kcl::aggregation::Aggregator;
use kcl::{
    ProcessRecordsInput, ProcessorError, RecordProcessor, SequenceNumber, ShutdownRequestedInput,
};
use kcl_support::{Fleet, test_config};

/// (sequence number, sub-sequence number, payload) as a processor received them.
type Seen = Arc<Mutex<Vec<(String, u64, String)>>>;

/// Records what it receives; checkpoints only where the test says.
struct Recorder {
    seen: Seen,
    /// Checkpoint at this (sequence, sub-sequence) once it was delivered; `None`: after every batch.
    checkpoint_at: Option<(String, u64)>,
}

#[async_trait]
impl RecordProcessor for Recorder {
    async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
        for r in &input.records {
            self.seen.lock().unwrap().push((
                r.sequence_number.to_string(),
                r.sub_sequence_number,
                String::from_utf8_lossy(&r.data).into_owned(),
            ));
        }
        match &self.checkpoint_at {
            None => input.checkpointer.checkpoint().await?,
            Some((sequence, sub)) => {
                let delivered = input.records.iter().any(|r| {
                    r.sequence_number.to_string() == *sequence && r.sub_sequence_number == *sub
                });
                if delivered {
                    let sequence: SequenceNumber = sequence.parse().unwrap();
                    input
                        .checkpointer
                        .checkpoint_at_sequence(sequence, *sub)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        _input: ShutdownRequestedInput,
    ) -> Result<(), ProcessorError> {
        // Keep the checkpoint where process_records left it.
        Ok(())
    }
}

/// Puts `count` user records packed into aggregates of `per_aggregate`; returns the payloads and
/// the sequence number of each aggregate.
async fn produce_aggregated(
    fleet: &Fleet,
    count: usize,
    per_aggregate: usize,
) -> (Vec<String>, Vec<String>) {
    let mut aggregator = Aggregator::new();
    let mut aggregates = Vec::new();
    let mut payloads = Vec::new();
    for i in 0..count {
        let payload = format!("user-record-{i:04}");
        payloads.push(payload.clone());
        if let Some(full) = aggregator
            .add("same-key", None, payload.into_bytes())
            .unwrap()
        {
            aggregates.push(full);
        }
        if aggregator.len() == per_aggregate {
            aggregates.extend(aggregator.flush());
        }
    }
    aggregates.extend(aggregator.flush());
    let entries: Vec<PutRecordsRequestEntry> = aggregates
        .into_iter()
        .map(|a| {
            PutRecordsRequestEntry::builder()
                .partition_key(a.partition_key)
                .explicit_hash_key(a.explicit_hash_key)
                .data(Blob::new(a.data.to_vec()))
                .build()
                .unwrap()
        })
        .collect();
    let out = fleet
        .kinesis
        .put_records()
        .stream_name(&fleet.stream)
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count, Some(0));
    let sequences = out
        .records
        .into_iter()
        .map(|r| r.sequence_number.unwrap())
        .collect();
    (payloads, sequences)
}

async fn wait_for(seen: &Seen, count: usize) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.lock().unwrap().len() < count {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("records arrive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_records_arrive_as_user_records_with_sub_sequence_numbers() {
    let fleet = Fleet::new(2).await;
    let (payloads, _) = produce_aggregated(&fleet, 50, 10).await;
    let seen: Seen = Arc::default();
    let recorder = seen.clone();
    let worker = fleet.start_worker_with("agg", test_config(), move || Recorder {
        seen: recorder.clone(),
        checkpoint_at: None,
    });
    wait_for(&seen, 50).await;
    worker.stop().await;

    let seen = seen.lock().unwrap().clone();
    let data: Vec<&str> = seen.iter().map(|(_, _, d)| d.as_str()).collect();
    assert_eq!(data, payloads, "every user record once, in order");
    for (i, (_, sub, _)) in seen.iter().enumerate() {
        assert_eq!(
            *sub,
            (i % 10) as u64,
            "sub-sequence numbers count within each aggregate"
        );
    }
    let aggregates: std::collections::BTreeSet<&String> = seen.iter().map(|(s, _, _)| s).collect();
    assert_eq!(
        aggregates.len(),
        5,
        "ten user records share each Kinesis sequence number"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_inside_an_aggregate_resumes_right_after_it() {
    let fleet = Fleet::new(1).await;
    let (_, aggregates) = produce_aggregated(&fleet, 30, 10).await;
    // The 5th user record of the 2nd aggregate.
    let target = (aggregates[1].clone(), 4u64);

    // The first run reads everything but checkpoints only at the target.
    let run1: Seen = Arc::default();
    let recorder = run1.clone();
    let at = target.clone();
    let worker = fleet.start_worker_with("run-1", test_config(), move || Recorder {
        seen: recorder.clone(),
        checkpoint_at: Some(at.clone()),
    });
    wait_for(&run1, 30).await;
    worker.stop().await;

    let run2: Seen = Arc::default();
    let recorder = run2.clone();
    let worker = fleet.start_worker_with("run-2", test_config(), move || Recorder {
        seen: recorder.clone(),
        checkpoint_at: None,
    });
    wait_for(&run2, 15).await;
    worker.stop().await;
    let resumed = run2.lock().unwrap().clone();
    assert_eq!(
        resumed.len(),
        15,
        "exactly the records after the checkpoint: {resumed:?}"
    );
    assert_eq!((resumed[0].0.clone(), resumed[0].1), (target.0.clone(), 5));
    assert_eq!(resumed[0].2, "user-record-0015");
}
