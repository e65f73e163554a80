//! A delivery stream with `KinesisStreamAsSource` reads the broker's Kinesis stream from LATEST
//! and delivers what producers put there; it refuses direct puts.

use aws_sdk_firehose::types::{
    BufferingHints, DeliveryStreamType, ExtendedS3DestinationConfiguration,
    KinesisStreamSourceConfiguration,
};
use integration_tests::{
    FIREHOSE_ROLE_ARN, TempDir, create_stream, firehose_client, kinesis_client, newline_delimited,
    wait_for_files,
};
use local_broker::LocalBroker;

async fn put(kinesis: &aws_sdk_kinesis::Client, data: &str) {
    kinesis
        .put_record()
        .stream_name("clicks")
        .partition_key(data)
        .data(aws_sdk_kinesis::primitives::Blob::new(data))
        .send()
        .await
        .unwrap();
}

/// A delivery stream reading the Kinesis stream `clicks` into bucket `from-kinesis`, one record
/// a line, flushed after a second.
async fn create_reading_clicks(firehose: &aws_sdk_firehose::Client, name: &str) {
    let destination = ExtendedS3DestinationConfiguration::builder()
        .role_arn(FIREHOSE_ROLE_ARN)
        .bucket_arn("arn:aws:s3:::from-kinesis")
        .buffering_hints(
            BufferingHints::builder()
                .size_in_mbs(1)
                .interval_in_seconds(1)
                .build(),
        )
        .processing_configuration(newline_delimited())
        .build()
        .unwrap();
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/clicks";
    firehose
        .create_delivery_stream()
        .delivery_stream_name(name)
        .delivery_stream_type(DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(
            KinesisStreamSourceConfiguration::builder()
                .kinesis_stream_arn(arn)
                .role_arn(FIREHOSE_ROLE_ARN)
                .build()
                .unwrap(),
        )
        .extended_s3_destination_configuration(destination)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn records_put_to_the_kinesis_stream_after_creation_are_delivered() {
    let root = TempDir::new("fh-kds");
    let broker = LocalBroker::builder()
        .s3_root(&root.0)
        .start()
        .await
        .unwrap();
    let kinesis = kinesis_client(&broker.endpoint());
    let firehose = firehose_client(&broker.endpoint());
    create_stream(&kinesis, "clicks", 2).await;
    put(&kinesis, "before").await;

    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/clicks";
    create_reading_clicks(&firehose, "clicks-to-s3").await;
    for data in ["a", "b", "c", "d"] {
        put(&kinesis, data).await;
    }
    wait_for_files(&root.0, 1).await;
    let lines = || -> Vec<String> {
        integration_tests::files_under(&root.0)
            .iter()
            .flat_map(|(_, body)| {
                let text = String::from_utf8(body.clone()).unwrap();
                text.lines().map(str::to_owned).collect::<Vec<_>>()
            })
            .collect()
    };
    // Shards are polled one after another; wait for all four, then check nothing else came.
    let mut delivered = lines();
    for _ in 0..50 {
        if delivered.len() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        delivered = lines();
    }
    delivered.sort();
    assert_eq!(
        delivered,
        ["a", "b", "c", "d"],
        "LATEST: the record put before creation is not read"
    );

    let described = firehose
        .describe_delivery_stream()
        .delivery_stream_name("clicks-to-s3")
        .send()
        .await
        .unwrap();
    let description = described.delivery_stream_description().unwrap();
    assert_eq!(
        description.delivery_stream_type(),
        &DeliveryStreamType::KinesisStreamAsSource
    );
    let source = description
        .source()
        .unwrap()
        .kinesis_stream_source_description()
        .unwrap();
    assert_eq!(source.kinesis_stream_arn(), Some(arn));
    assert!(source.delivery_start_timestamp().is_some());

    let err = firehose
        .put_record()
        .delivery_stream_name("clicks-to-s3")
        .record(
            aws_sdk_firehose::types::Record::builder()
                .data(aws_sdk_firehose::primitives::Blob::new("direct"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_argument_exception(), "{err:?}");

    let err = firehose
        .create_delivery_stream()
        .delivery_stream_name("missing-source")
        .delivery_stream_type(DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(
            KinesisStreamSourceConfiguration::builder()
                .kinesis_stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/nope")
                .role_arn(FIREHOSE_ROLE_ARN)
                .build()
                .unwrap(),
        )
        .extended_s3_destination_configuration(
            ExtendedS3DestinationConfiguration::builder()
                .role_arn(FIREHOSE_ROLE_ARN)
                .bucket_arn("arn:aws:s3:::b")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_argument_exception(), "{err:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn kpl_aggregates_are_delivered_as_their_user_records_in_order() {
    use kcl::aggregation::Aggregator;

    let root = TempDir::new("fh-kds-kpl");
    let broker = LocalBroker::builder()
        .s3_root(&root.0)
        .start()
        .await
        .unwrap();
    let kinesis = kinesis_client(&broker.endpoint());
    let firehose = firehose_client(&broker.endpoint());
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
        kinesis
            .put_record()
            .stream_name("clicks")
            .partition_key(partition_key)
            .data(aws_sdk_kinesis::primitives::Blob::new(data))
            .send()
            .await
            .unwrap();
    }

    let mut expected: Vec<Vec<u8>> = ["u0", "u1", "u2", "plain"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    expected.push(lookalike);
    expected.extend([b"u3".to_vec(), b"u4".to_vec()]);
    let delivered = || -> Vec<Vec<u8>> {
        // Objects sort by key, which starts with the hour and the time of the oldest record.
        integration_tests::files_under(&root.0)
            .into_iter()
            .flat_map(|(_, body)| {
                body.split(|b| *b == b'\n')
                    .filter(|line| !line.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    wait_for_files(&root.0, 1).await;
    let mut lines = delivered();
    for _ in 0..50 {
        if lines.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        lines = delivered();
    }
    assert_eq!(
        lines, expected,
        "each user record once, in order; non-aggregates unchanged"
    );
    broker.shutdown().await;
}
