//! Firehose with a data directory: delivery streams (configuration, status, version, tags,
//! encryption) and records accepted but not yet delivered survive a restart, and the restarted
//! broker delivers those records; streams come back in their status (CREATING, ACTIVE, DELETING)
//! and finish what they were doing; a deleted stream stays deleted.

mod firehose_support;

use aws_sdk_firehose::types::builders::ExtendedS3DestinationConfigurationBuilder;
use aws_sdk_firehose::types::{DeliveryStreamStatus, ExtendedS3DestinationUpdate, Tag};
use firehose_support::{
    assert_buffered, buffered_s3, create_kinesis_sourced_stream, create_s3_stream, delivered_lines,
    description, durable_broker, metrics_page, put_kinesis_record, record, sample, sorted_text,
    start_encryption, status, update_s3_destination, wait_for_lines,
};
use integration_tests::{
    TempDir, create_stream, files_under, firehose_client, kinesis_client, newline_delimited,
    put_record_batch, stream_arn, wait_for_files,
};
use local_broker::{LocalBroker, RunningBroker, ShiftableClock, SyncMode};
use std::time::{Duration, Instant};

/// A broker on `data` delivering S3 objects under `root`, with `clock`, and a client for it.
async fn start(
    data: &TempDir,
    root: &TempDir,
    clock: ShiftableClock,
) -> (RunningBroker, aws_sdk_firehose::Client) {
    start_with_delay(data, root, clock, Duration::ZERO).await
}

/// [`start`], with streams taking `delay` to finish creating or deleting.
async fn start_with_delay(
    data: &TempDir,
    root: &TempDir,
    clock: ShiftableClock,
    delay: Duration,
) -> (RunningBroker, aws_sdk_firehose::Client) {
    let broker = durable_broker(data, root)
        .sync(SyncMode::Always)
        .clock(clock)
        .state_transition_delay(delay)
        .start()
        .await
        .unwrap();
    let client = firehose_client(&broker.endpoint());
    (broker, client)
}

/// A data directory and an S3 root for the test `label`.
fn directories(label: &str) -> (TempDir, TempDir) {
    (TempDir::new(label), TempDir::new(&format!("{label}-s3")))
}

/// An ExtendedS3 destination into `bucket` that waits up to 900 s (or `size_in_mbs` MiB) before
/// delivering, with newline-delimited records.
fn slow_s3(bucket: &str, size_in_mbs: i32) -> ExtendedS3DestinationConfigurationBuilder {
    buffered_s3(bucket, size_in_mbs, 900).processing_configuration(newline_delimited())
}

/// Creates the Kinesis stream `source` with `shards` shards and the delivery stream `name`
/// reading it into a [`slow_s3`] `bucket`.
async fn create_sourced(
    kinesis: &aws_sdk_kinesis::Client,
    client: &aws_sdk_firehose::Client,
    source: &str,
    shards: i32,
    name: &str,
    bucket: &str,
) {
    create_stream(kinesis, source, shards).await;
    let arn = stream_arn(kinesis, source).await;
    create_kinesis_sourced_stream(client, name, &arn, slow_s3(bucket, 128))
        .await
        .unwrap();
}

async fn create(client: &aws_sdk_firehose::Client, name: &str, bucket: &str, size_in_mbs: i32) {
    create_s3_stream(client, name, slow_s3(bucket, size_in_mbs)).await;
}

/// Every line of every object under `root`, sorted.
fn delivered_text(root: &TempDir) -> Vec<String> {
    sorted_text(&delivered_lines(root))
}

/// Everything DescribeDeliveryStream and ListTagsForDeliveryStream say about `name`.
async fn described(client: &aws_sdk_firehose::Client, name: &str) -> String {
    let description = client
        .describe_delivery_stream()
        .delivery_stream_name(name)
        .send()
        .await
        .unwrap()
        .delivery_stream_description
        .unwrap();
    let tags = client
        .list_tags_for_delivery_stream()
        .delivery_stream_name(name)
        .send()
        .await
        .unwrap();
    format!("{description:?}\n{:?}", tags.tags())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_their_configuration_survive_a_restart_and_deleted_ones_stay_deleted() {
    let (data, root) = directories("fh-dur-config");
    let (broker, client) = start(&data, &root, ShiftableClock::new()).await;
    create(&client, "kept", "kept-bucket", 128).await;
    create(&client, "doomed", "doomed-bucket", 128).await;
    let update = ExtendedS3DestinationUpdate::builder()
        .prefix("updated/")
        .build();
    update_s3_destination(&client, "kept", "1", update)
        .await
        .unwrap();
    client
        .tag_delivery_stream()
        .delivery_stream_name("kept")
        .tags(Tag::builder().key("team").value("data").build().unwrap())
        .send()
        .await
        .unwrap();
    start_encryption(&client, "kept").await;
    client
        .delete_delivery_stream()
        .delivery_stream_name("doomed")
        .send()
        .await
        .unwrap();
    let before = described(&client, "kept").await;
    assert!(before.contains("version_id: \"2\""), "{before}");
    assert!(before.contains("updated/"), "{before}");
    broker.shutdown().await;

    let (broker, client) = start(&data, &root, ShiftableClock::new()).await;
    assert_eq!(described(&client, "kept").await, before);
    let names = client
        .list_delivery_streams()
        .send()
        .await
        .unwrap()
        .delivery_stream_names;
    assert_eq!(names, ["kept"]);
    let gone = client
        .describe_delivery_stream()
        .delivery_stream_name("doomed")
        .send()
        .await
        .unwrap_err();
    assert!(
        gone.into_service_error().is_resource_not_found_exception(),
        "a deleted stream stays deleted"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_come_back_in_their_status_and_finish_creating_or_deleting() {
    let (data, root) = directories("fh-dur-status");
    let (broker, client) = start(&data, &root, ShiftableClock::new()).await;
    create(&client, "steady", "steady-bucket", 128).await;
    create(&client, "doomed", "doomed-bucket", 128).await;
    put_record_batch(&client, "doomed", &[b"last words"]).await;
    broker.shutdown().await;

    // Transitions that take an hour: the broker stops in the middle of them.
    let hour = Duration::from_secs(3600);
    let (broker, client) = start_with_delay(&data, &root, ShiftableClock::new(), hour).await;
    create(&client, "young", "young-bucket", 128).await;
    client
        .delete_delivery_stream()
        .delivery_stream_name("doomed")
        .send()
        .await
        .unwrap();
    // A deleted stream still delivers what it buffered.
    wait_for_files(&root.0, 1).await;
    assert_eq!(delivered_text(&root), ["last words"]);
    broker.shutdown().await;

    let (broker, client) = start_with_delay(&data, &root, ShiftableClock::new(), hour).await;
    for (name, expected) in [
        ("steady", DeliveryStreamStatus::Active),
        ("young", DeliveryStreamStatus::Creating),
        ("doomed", DeliveryStreamStatus::Deleting),
    ] {
        assert_eq!(status(&client, name).await, Some(expected), "{name}");
    }
    let refused = client
        .put_record()
        .delivery_stream_name("doomed")
        .record(record("too late"))
        .send()
        .await;
    assert!(refused.is_err(), "a DELETING stream takes no records");
    broker.shutdown().await;

    // Once the delay passes, the transitions complete; nothing is delivered twice.
    let (broker, client) = start(&data, &root, ShiftableClock::new()).await;
    assert_eq!(
        status(&client, "young").await,
        Some(DeliveryStreamStatus::Active)
    );
    let mut doomed = status(&client, "doomed").await;
    for _ in 0..100 {
        if doomed.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        doomed = status(&client, "doomed").await;
    }
    assert_eq!(doomed, None, "the DELETING stream finished deleting");
    let names = client
        .list_delivery_streams()
        .send()
        .await
        .unwrap()
        .delivery_stream_names;
    assert_eq!(names, ["steady", "young"]);
    broker.shutdown().await;

    let (broker, client) = start(&data, &root, ShiftableClock::new()).await;
    assert_eq!(status(&client, "doomed").await, None, "and stays deleted");
    assert_eq!(delivered_text(&root), ["last words"]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_records_are_delivered_after_a_restart_byte_exact() {
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 500;
    let (data, root) = directories("fh-dur-records");
    let (broker, client) = start(&data, &root, ShiftableClock::new()).await;
    create(&client, "slow", "slow-bucket", 1).await;
    let mut expected = Vec::new();
    for batch in 0..BATCHES {
        let records: Vec<Vec<u8>> = (0..PER_BATCH)
            .map(|i| {
                // Every byte value, so the round trip is byte-exact, not just text-exact.
                let mut data = format!("record-{batch}-{i}:").into_bytes();
                data.extend((0..64u8).map(|b| b.wrapping_mul(i as u8).wrapping_add(b)));
                data.retain(|b| *b != b'\n');
                data
            })
            .collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        put_record_batch(&client, "slow", &refs).await;
        for record in records {
            expected.extend(record);
            expected.push(b'\n');
        }
    }
    // The first MiB left by size while the puts went on; the rest waits for its interval.
    let before = wait_for_files(&root.0, 1).await;
    broker.shutdown().await;
    assert_eq!(
        files_under(&root.0).len(),
        1,
        "shutdown leaves buffered records in the data directory"
    );

    // Restart after the buffer interval has passed: the recovered records are due at once.
    let clock = ShiftableClock::new();
    clock.advance(Duration::from_secs(901));
    let started = Instant::now();
    let (broker, _) = start(&data, &root, clock).await;
    eprintln!(
        "restart recovered the undelivered part of {} records ({} bytes) in {:?}",
        BATCHES * PER_BATCH,
        expected.len(),
        started.elapsed()
    );
    let files = wait_for_files(&root.0, 2).await;
    assert_eq!(
        files.len(),
        2,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let first = files.iter().find(|(key, _)| *key == before[0].0).unwrap();
    let rest = files.iter().find(|(key, _)| *key != before[0].0).unwrap();
    assert!(rest.0.starts_with("slow-bucket/"), "{}", rest.0);
    assert!(
        [first.1.as_slice(), rest.1.as_slice()].concat() == expected,
        "every record once, in order, byte-exact"
    );

    // Delivered records are not delivered again by a later restart.
    broker.shutdown().await;
    let clock = ShiftableClock::new();
    clock.advance(Duration::from_secs(1802));
    let (broker, _) = start(&data, &root, clock).await;
    let page = metrics_page(&broker).await;
    assert_eq!(
        sample(&page, "BufferedRecords", "slow"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(files_under(&root.0).len(), 2);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_destination_refuses_at_shutdown_is_delivered_after_the_restart() {
    let (data, root) = directories("fh-dur-refused");
    let clock = ShiftableClock::new();
    let (broker, client) = start(&data, &root, clock.clone()).await;
    // A file where the bucket's directory should be: every object write fails.
    let blocker = root.0.join("refusing-bucket");
    std::fs::write(&blocker, b"").unwrap();
    create(&client, "refused", "refusing-bucket", 128).await;
    put_record_batch(&client, "refused", &[b"kept-1", b"kept-2"]).await;
    // Make the batch due; new hints wake the delivery task, which starts failing.
    clock.advance(Duration::from_secs(901));
    let update = ExtendedS3DestinationUpdate::builder().prefix("p/").build();
    update_s3_destination(&client, "refused", "1", update)
        .await
        .unwrap();
    while description(&client, "refused")
        .await
        .failure_description
        .is_none()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.shutdown().await;
    assert!(delivered_lines(&root).is_empty());

    std::fs::remove_file(&blocker).unwrap();
    let clock = ShiftableClock::new();
    clock.advance(Duration::from_secs(1802));
    let (broker, _) = start(&data, &root, clock).await;
    assert_eq!(
        sorted_text(&wait_for_lines(&root, 2).await),
        ["kept-1", "kept-2"],
        "the batch given up on at shutdown stays in the data directory"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinesis_sourced_stream_resumes_where_it_read_up_to() {
    let (data, root) = directories("fh-dur-source");
    let (broker, client) = start(&data, &root, ShiftableClock::new()).await;
    let kinesis = kinesis_client(&broker.endpoint());
    create_sourced(
        &kinesis,
        &client,
        "events",
        2,
        "from-kinesis",
        "source-bucket",
    )
    .await;
    let put = |data: &'static str| put_kinesis_record(&kinesis, "events", data, data);
    put("read-before-restart").await;
    // The source polls every second: this record is read (and logged) before the restart ...
    assert_buffered(&broker, "from-kinesis", 1).await;
    // ... and these most likely are not: the restarted broker reads them from where it was.
    put("put-just-before-restart-1").await;
    put("put-just-before-restart-2").await;
    broker.shutdown().await;

    let clock = ShiftableClock::new();
    clock.advance(Duration::from_secs(901));
    let (broker, client) = start(&data, &root, clock.clone()).await;
    let kinesis = kinesis_client(&broker.endpoint());
    put_kinesis_record(&kinesis, "events", "after", "put-after-restart").await;
    // Wait until all four are read (those restored at once delivered, being overdue), then
    // make everything due.
    for _ in 0..300 {
        let page = metrics_page(&broker).await;
        let buffered = sample(&page, "BufferedRecords", "from-kinesis").unwrap_or(0.0);
        if delivered_lines(&root).len() + buffered as usize == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    clock.advance(Duration::from_secs(901));
    // New hints wake the delivery task, which finds the buffer due by the advanced clock.
    let update = ExtendedS3DestinationUpdate::builder().prefix("p/").build();
    update_s3_destination(&client, "from-kinesis", "1", update)
        .await
        .unwrap();
    let lines = sorted_text(&wait_for_lines(&root, 4).await);
    let files = files_under(&root.0);
    assert_eq!(
        lines,
        [
            "put-after-restart",
            "put-just-before-restart-1",
            "put-just-before-restart-2",
            "read-before-restart",
        ],
        "every record once: {files:?}"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinesis_sourced_stream_whose_source_was_deleted_comes_back_and_delivers_what_it_read() {
    let (data, root) = directories("fh-dur-orphan");
    let (broker, client) = start(&data, &root, ShiftableClock::new()).await;
    let kinesis = kinesis_client(&broker.endpoint());
    create_sourced(
        &kinesis,
        &client,
        "doomed-source",
        1,
        "orphan",
        "orphan-bucket",
    )
    .await;
    put_kinesis_record(&kinesis, "doomed-source", "k", "read-before-deletion").await;
    assert_buffered(&broker, "orphan", 1).await;
    kinesis
        .delete_stream()
        .stream_name("doomed-source")
        .send()
        .await
        .unwrap();
    broker.shutdown().await;

    let clock = ShiftableClock::new();
    clock.advance(Duration::from_secs(901));
    let (broker, client) = start(&data, &root, clock).await;
    assert_eq!(
        status(&client, "orphan").await,
        Some(DeliveryStreamStatus::Active)
    );
    assert_eq!(
        sorted_text(&wait_for_lines(&root, 1).await),
        ["read-before-deletion"]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_restart_without_what_a_stored_stream_needs_fails_and_says_why() {
    let (data, root) = directories("fh-dur-needs");
    let (broker, client) = start(&data, &root, ShiftableClock::new()).await;
    create(&client, "needs-s3", "bucket", 1).await;
    broker.shutdown().await;

    let err = LocalBroker::builder()
        .data_dir(&data.0)
        .start()
        .await
        .err()
        .expect("no S3 destination configured");
    let message = err.to_string();
    assert!(
        matches!(err, local_broker::BrokerError::Firehose(_)) && message.contains("needs-s3"),
        "{message}"
    );
    // With what it needs, the same directory starts.
    let (broker, _) = start(&data, &root, ShiftableClock::new()).await;
    broker.shutdown().await;
}
