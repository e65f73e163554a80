//! A delivery stream with `KinesisStreamAsSource` reads the broker's Kinesis stream from LATEST
//! and delivers what producers put there; it refuses direct puts.

mod firehose_support;

use aws_sdk_firehose::types::DeliveryStreamType;
use firehose_support::{
    buffered_s3, create_kinesis_sourced_stream, description, put_kinesis_record, s3_destination,
    sorted_text, try_put, wait_for_lines,
};
use integration_tests::{
    TempDir, broker_with_firehose, create_stream, kinesis_client, newline_delimited, service_error,
};

const CLICKS_ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/clicks";

async fn put(kinesis: &aws_sdk_kinesis::Client, data: &str) {
    put_kinesis_record(kinesis, "clicks", data, data).await;
}

/// A delivery stream reading the Kinesis stream `clicks` into bucket `from-kinesis`, one record
/// a line, flushed after a second.
async fn create_reading_clicks(firehose: &aws_sdk_firehose::Client, name: &str) {
    let destination =
        buffered_s3("from-kinesis", 1, 1).processing_configuration(newline_delimited());
    create_kinesis_sourced_stream(firehose, name, CLICKS_ARN, destination)
        .await
        .expect("CreateDeliveryStream succeeds");
}

#[tokio::test]
async fn records_put_to_the_kinesis_stream_after_creation_are_delivered() {
    let root = TempDir::new("fh-kds");
    let (broker, firehose) = broker_with_firehose(&root).await;
    let kinesis = kinesis_client(&broker.endpoint());
    create_stream(&kinesis, "clicks", 2).await;
    put(&kinesis, "before").await;

    create_reading_clicks(&firehose, "clicks-to-s3").await;
    for data in ["a", "b", "c", "d"] {
        put(&kinesis, data).await;
    }
    // Shards are polled one after another; wait for all four, then check nothing else came.
    let delivered = sorted_text(&wait_for_lines(&root, 4).await);
    assert_eq!(
        delivered,
        ["a", "b", "c", "d"],
        "LATEST: the record put before creation is not read"
    );

    let description = description(&firehose, "clicks-to-s3").await;
    assert_eq!(
        description.delivery_stream_type(),
        &DeliveryStreamType::KinesisStreamAsSource
    );
    let source = description
        .source()
        .unwrap()
        .kinesis_stream_source_description()
        .unwrap();
    assert_eq!(source.kinesis_stream_arn(), Some(CLICKS_ARN));
    assert!(source.delivery_start_timestamp().is_some());

    let err = service_error(try_put(&firehose, "clicks-to-s3", "direct").await);
    assert!(err.is_invalid_argument_exception(), "{err:?}");

    let err = service_error(
        create_kinesis_sourced_stream(
            &firehose,
            "missing-source",
            "arn:aws:kinesis:us-east-1:000000000000:stream/nope",
            s3_destination("b"),
        )
        .await,
    );
    assert!(err.is_invalid_argument_exception(), "{err:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn kpl_aggregates_are_delivered_as_their_user_records_in_order() {
    use kcl::aggregation::Aggregator;

    let root = TempDir::new("fh-kds-kpl");
    let (broker, firehose) = broker_with_firehose(&root).await;
    let kinesis = kinesis_client(&broker.endpoint());
    // One shard: the order of the Kinesis records is the order Firehose reads them in.
    create_stream(&kinesis, "clicks", 1).await;
    create_reading_clicks(&firehose, "kpl-to-s3").await;

    let aggregate = |users: &[&str]| {
        let mut aggregator = Aggregator::new();
        for user in users {
            assert!(
                aggregator
                    .add(*user, None, user.to_string())
                    .unwrap()
                    .is_none()
            );
        }
        aggregator.flush().unwrap()
    };
    let first = aggregate(&["u0", "u1", "u2"]);
    let second = aggregate(&["u3", "u4"]);
    // Starts like an aggregate but has no valid digest: a plain record to Firehose.
    let lookalike = [&kcl::aggregation::MAGIC[..], b"not an aggregate"].concat();
    let kinesis_records: [(&str, Vec<u8>); 4] = [
        (&first.partition_key, first.data.to_vec()),
        ("plain", b"plain".to_vec()),
        ("lookalike", lookalike.clone()),
        (&second.partition_key, second.data.to_vec()),
    ];
    for (partition_key, data) in kinesis_records {
        put_kinesis_record(&kinesis, "clicks", partition_key, data).await;
    }

    let mut expected: Vec<Vec<u8>> = ["u0", "u1", "u2", "plain"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    expected.push(lookalike);
    expected.extend([b"u3".to_vec(), b"u4".to_vec()]);
    // Objects sort by key, which starts with the hour and the time of the oldest record.
    let lines = wait_for_lines(&root, expected.len()).await;
    assert_eq!(
        lines, expected,
        "each user record once, in order; non-aggregates unchanged"
    );
    broker.shutdown().await;
}
