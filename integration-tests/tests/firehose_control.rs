//! The Firehose control plane and PutRecord/PutRecordBatch limits: lifecycle, describe, list,
//! tags, encryption, version ids, and the AWS error each bad request gets.

mod firehose_support;

use aws_sdk_firehose::error::ProvideErrorMetadata;
use aws_sdk_firehose::types::{
    DeliveryStreamStatus, ExtendedS3DestinationUpdate, Record, RedshiftDestinationConfiguration,
    S3DestinationConfiguration, Tag,
};
use firehose_support::{
    buffered_s3, create_s3_stream, delivered_lines, description, record, s3_destination,
    sorted_text, start_encryption, status, try_create_s3_stream, try_delete, try_put,
    update_s3_destination,
};
use integration_tests::{
    FIREHOSE_ROLE_ARN, TempDir, broker_with_firehose, firehose_client, service_error,
};
use local_broker::LocalBroker;
use std::time::Duration;

async fn setup() -> (
    TempDir,
    local_broker::RunningBroker,
    aws_sdk_firehose::Client,
) {
    let root = TempDir::new("fh-control");
    let (broker, client) = broker_with_firehose(&root).await;
    (root, broker, client)
}

async fn create(client: &aws_sdk_firehose::Client, name: &str) -> String {
    create_s3_stream(client, name, s3_destination("bucket")).await
}

#[tokio::test]
async fn create_describe_list_delete() {
    let (_root, _broker, client) = setup().await;
    let arn = create(&client, "orders").await;
    assert_eq!(
        arn,
        "arn:aws:firehose:us-east-1:000000000000:deliverystream/orders"
    );
    create(&client, "audit").await;

    let d = description(&client, "orders").await;
    assert_eq!(d.delivery_stream_status(), &DeliveryStreamStatus::Active);
    assert_eq!(d.delivery_stream_type().as_str(), "DirectPut");
    assert_eq!(d.version_id(), "1");
    let destination = &d.destinations()[0];
    assert_eq!(destination.destination_id(), "destinationId-000000000001");
    let ext = destination.extended_s3_destination_description().unwrap();
    // Defaults AWS always describes.
    let hints = ext.buffering_hints().unwrap();
    assert_eq!(
        (hints.size_in_mbs(), hints.interval_in_seconds()),
        (Some(5), Some(300))
    );
    assert_eq!(ext.compression_format().as_str(), "UNCOMPRESSED");
    assert!(destination.s3_destination_description().is_some());

    let listed = client.list_delivery_streams().send().await.unwrap();
    assert_eq!(listed.delivery_stream_names(), ["audit", "orders"]);
    assert!(!listed.has_more_delivery_streams());
    let page = client
        .list_delivery_streams()
        .limit(1)
        .send()
        .await
        .unwrap();
    assert_eq!(page.delivery_stream_names(), ["audit"]);
    assert!(page.has_more_delivery_streams());
    let next = client
        .list_delivery_streams()
        .exclusive_start_delivery_stream_name("audit")
        .send()
        .await
        .unwrap();
    assert_eq!(next.delivery_stream_names(), ["orders"]);

    try_delete(&client, "orders").await.unwrap();
    assert_eq!(status(&client, "orders").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_acknowledged_while_a_delete_races_is_delivered() {
    let (root, _broker, client) = setup().await;
    create(&client, "racing").await;
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0.. {
                    let line = format!("w{writer}-{i}");
                    let put = try_put(&client, "racing", format!("{line}\n")).await;
                    match put {
                        Ok(_) => acknowledged.push(line),
                        Err(err) => {
                            let err = err.into_service_error();
                            assert!(err.is_resource_not_found_exception(), "{err:?}");
                            return acknowledged;
                        }
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    try_delete(&client, "racing").await.unwrap();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    while status(&client, "racing").await.is_some() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    acknowledged.sort();
    assert_eq!(sorted_text(&delivered_lines(&root)), acknowledged);
}

#[tokio::test]
async fn streams_are_creating_until_the_transition_delay_passes() {
    let root = TempDir::new("fh-creating");
    let broker = LocalBroker::builder()
        .s3_root(&root.0)
        // Long enough for the calls below to see CREATING on a loaded machine.
        .state_transition_delay(Duration::from_secs(5))
        .start()
        .await
        .unwrap();
    let client = firehose_client(&broker.endpoint());
    create(&client, "slow").await;
    assert_eq!(
        status(&client, "slow").await,
        Some(DeliveryStreamStatus::Creating)
    );
    let err = service_error(try_put(&client, "slow", "early").await);
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = service_error(try_delete(&client, "slow").await);
    assert!(err.is_resource_in_use_exception(), "{err:?}");
    for _ in 0..600 {
        if status(&client, "slow").await == Some(DeliveryStreamStatus::Active) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status(&client, "slow").await,
        Some(DeliveryStreamStatus::Active)
    );
}

#[tokio::test]
async fn bad_requests_get_the_aws_error() {
    let (_root, _broker, client) = setup().await;
    create(&client, "dup").await;
    let err = service_error(try_create_s3_stream(&client, "dup", s3_destination("b")).await);
    assert!(err.is_resource_in_use_exception(), "{err:?}");

    let err = try_create_s3_stream(&client, "bad name!", s3_destination("b"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
    assert!(
        err.message().unwrap().contains("deliveryStreamName"),
        "{err:?}"
    );

    let err = try_create_s3_stream(&client, "hints", buffered_s3("b", 500, 60))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
    assert!(err.message().unwrap().contains("sizeInMBs"), "{err:?}");

    // Expressions in the Prefix need an ErrorOutputPrefix.
    let err = service_error(
        try_create_s3_stream(
            &client,
            "prefix",
            s3_destination("b").prefix("!{timestamp:yyyy}/"),
        )
        .await,
    );
    assert!(err.is_invalid_argument_exception(), "{err:?}");

    let err = client
        .create_delivery_stream()
        .delivery_stream_name("none")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_argument_exception(), "{err:?}");

    assert_eq!(status(&client, "missing").await, None);
}

#[tokio::test]
async fn unsupported_options_are_rejected_by_name() {
    let (_root, _broker, client) = setup().await;
    let redshift = RedshiftDestinationConfiguration::builder()
        .role_arn(FIREHOSE_ROLE_ARN)
        .cluster_jdbcurl("jdbc:redshift://x:5439/db")
        .copy_command(
            aws_sdk_firehose::types::CopyCommand::builder()
                .data_table_name("t")
                .build()
                .unwrap(),
        )
        .s3_configuration(
            S3DestinationConfiguration::builder()
                .role_arn(FIREHOSE_ROLE_ARN)
                .bucket_arn("arn:aws:s3:::b")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = client
        .create_delivery_stream()
        .delivery_stream_name("redshift")
        .redshift_destination_configuration(redshift)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_argument_exception(), "{err:?}");
    assert!(
        err.message()
            .unwrap()
            .contains("RedshiftDestinationConfiguration")
    );

    let err = service_error(
        try_create_s3_stream(
            &client,
            "tz",
            s3_destination("b").custom_time_zone("Europe/Paris"),
        )
        .await,
    );
    assert!(err.message().unwrap().contains("CustomTimeZone"), "{err:?}");
}

#[tokio::test]
async fn stale_version_ids_are_concurrent_modifications() {
    let (_root, _broker, client) = setup().await;
    create(&client, "versioned").await;
    let update = |version: &'static str| {
        let update = ExtendedS3DestinationUpdate::builder().prefix("p/").build();
        update_s3_destination(&client, "versioned", version, update)
    };
    update("1").await.expect("the current version updates");
    let err = service_error(update("1").await);
    assert!(err.is_concurrent_modification_exception(), "{err:?}");
    update("2").await.expect("the new version updates");
}

#[tokio::test]
async fn tags_and_encryption() {
    let (_root, _broker, client) = setup().await;
    create(&client, "tagged").await;
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().unwrap();
    client
        .tag_delivery_stream()
        .delivery_stream_name("tagged")
        .tags(tag("team", "data"))
        .tags(tag("env", "test"))
        .send()
        .await
        .unwrap();
    client
        .untag_delivery_stream()
        .delivery_stream_name("tagged")
        .tag_keys("env")
        .send()
        .await
        .unwrap();
    let tags = client
        .list_tags_for_delivery_stream()
        .delivery_stream_name("tagged")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags(), [tag("team", "data")]);
    assert!(!tags.has_more_tags());
    let err = client
        .tag_delivery_stream()
        .delivery_stream_name("tagged")
        .tags(tag("aws:reserved", "x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));

    start_encryption(&client, "tagged").await;
    let put = try_put(&client, "tagged", "secret").await.unwrap();
    assert_eq!(put.encrypted(), Some(true));
    client
        .stop_delivery_stream_encryption()
        .delivery_stream_name("tagged")
        .send()
        .await
        .unwrap();
    let described = description(&client, "tagged").await;
    let encryption = described
        .delivery_stream_encryption_configuration()
        .unwrap();
    assert_eq!(encryption.status().unwrap().as_str(), "DISABLED");
}

#[tokio::test]
async fn put_limits_and_per_record_results() {
    let (_root, _broker, client) = setup().await;
    create(&client, "limits").await;
    let out = client
        .put_record_batch()
        .delivery_stream_name("limits")
        .records(record("a"))
        .records(record("b"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_put_count(), 0);
    let ids: Vec<&str> = out
        .request_responses()
        .iter()
        .filter_map(|r| r.record_id())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);

    let err = try_put(&client, "limits", vec![0u8; 1_024_001])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    try_put(&client, "limits", vec![0u8; 1_024_000])
        .await
        .expect("a 1,000 KiB record is accepted");

    let too_many: Vec<Record> = (0..501).map(|i| record(format!("{i}"))).collect();
    let err = client
        .put_record_batch()
        .delivery_stream_name("limits")
        .set_records(Some(too_many))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");

    let too_big: Vec<Record> = (0..5).map(|_| record(vec![1u8; 1_000_000])).collect();
    let err = client
        .put_record_batch()
        .delivery_stream_name("limits")
        .set_records(Some(too_big))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_argument_exception(), "{err:?}");

    let err = service_error(try_put(&client, "missing", "x").await);
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}
