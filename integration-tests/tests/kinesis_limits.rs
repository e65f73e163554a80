//! With limits enforced, a shard pushes back like AWS: PutRecords reports throttled entries one by
//! one (HTTP 200), a producer that retries them gets everything in, and fast readers are throttled.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use integration_tests::{
    create_on_demand_stream, create_stream, get_records, kinesis_client, trim_horizon_iterator,
};
use local_broker::{LocalBroker, RunningBroker};
use std::time::Duration;

/// A broker enforcing the per-shard limits of AWS, and a Kinesis client for it.
async fn limited_broker() -> (RunningBroker, aws_sdk_kinesis::Client) {
    let broker = LocalBroker::builder()
        .enforce_limits(true)
        .start()
        .await
        .unwrap();
    let client = kinesis_client(&broker.endpoint());
    (broker, client)
}

#[tokio::test]
async fn a_producer_over_the_shard_limit_is_throttled_per_entry_and_retries_land_everything() {
    let (broker, client) = limited_broker().await;
    create_stream(&client, "limited", 1).await;
    // 2 MB in one go: about twice what a shard takes per second.
    let mut pending: Vec<(usize, PutRecordsRequestEntry)> = (0..500)
        .map(|i| {
            let entry = PutRecordsRequestEntry::builder()
                .partition_key(format!("k{i}"))
                .data(Blob::new(vec![(i % 251) as u8; 4096]))
                .build()
                .unwrap();
            (i, entry)
        })
        .collect();
    let mut throttled_once = false;
    let mut landed = 0;
    for _attempt in 0..50 {
        if pending.is_empty() {
            break;
        }
        let out = client
            .put_records()
            .stream_name("limited")
            .set_records(Some(pending.iter().map(|(_, e)| e.clone()).collect()))
            .send()
            .await
            .unwrap();
        let mut retry = Vec::new();
        for ((i, entry), result) in pending.into_iter().zip(out.records) {
            match result.error_code.as_deref() {
                None => landed += 1,
                Some(code) => {
                    assert_eq!(code, "ProvisionedThroughputExceededException");
                    assert!(result.sequence_number.is_none());
                    throttled_once = true;
                    retry.push((i, entry));
                }
            }
        }
        assert_eq!(out.failed_record_count.unwrap_or(0) as usize, retry.len());
        pending = retry;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(throttled_once, "2 MiB at once exceeds a shard's 1 MiB/s");
    assert_eq!(landed, 500, "retried entries all land");

    // Read it all back; the reader retries when throttled, as the KCL does.
    let mut iterator = client
        .get_shard_iterator()
        .stream_name("limited")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator;
    let mut read = 0;
    while let Some(it) = iterator.take() {
        let page = get_records(&client, &it).await;
        read += page.records.len();
        if page.records.is_empty() {
            break;
        }
        iterator = page.next_shard_iterator;
    }
    assert_eq!(read, 500);
    broker.shutdown().await;
}

#[tokio::test]
async fn more_than_five_reads_a_second_are_throttled() {
    let (broker, _) = limited_broker().await;
    // One attempt per call: the SDK would otherwise retry throttling errors by itself.
    let client = aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
            .endpoint_url(broker.endpoint())
            .credentials_provider(aws_credential_types::Credentials::new(
                "a", "b", None, None, "t",
            ))
            .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
            .build(),
    );
    create_stream(&client, "reads", 1).await;
    let it = client
        .get_shard_iterator()
        .stream_name("reads")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::Latest)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let mut throttled = 0;
    for _ in 0..8 {
        if let Err(err) = client.get_records().shard_iterator(&it).send().await {
            let err = err.into_service_error();
            assert!(
                err.is_provisioned_throughput_exceeded_exception(),
                "{err:?}"
            );
            throttled += 1;
        }
    }
    assert!(
        throttled >= 1,
        "eight reads in a burst exceed five per second"
    );
    broker.shutdown().await;
}

/// Reads a whole shard from TRIM_HORIZON (to its end if it is closed, else until caught up).
async fn read_shard(client: &aws_sdk_kinesis::Client, stream: &str, shard: &str) -> Vec<String> {
    let mut iterator = Some(trim_horizon_iterator(client, stream, shard).await);
    let mut data = Vec::new();
    while let Some(it) = iterator.take() {
        let page = get_records(client, &it).await;
        let caught_up = page.records.is_empty() && page.millis_behind_latest == Some(0);
        data.extend(
            page.records
                .iter()
                .map(|r| String::from_utf8_lossy(r.data.as_ref()).into_owned()),
        );
        if caught_up {
            break;
        }
        iterator = page.next_shard_iterator;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    data
}

#[tokio::test]
async fn an_on_demand_stream_splits_shards_under_sustained_write_load_and_keeps_every_record() {
    let (broker, client) = limited_broker().await;
    create_on_demand_stream(&client, "elastic").await;
    let open_shards = || async {
        client
            .describe_stream_summary()
            .stream_name("elastic")
            .send()
            .await
            .unwrap()
            .stream_description_summary
            .unwrap()
            .open_shard_count
    };
    assert_eq!(
        open_shards().await,
        4,
        "on-demand streams start with 4 shards"
    );

    // Everything goes to the first shard's quarter of the hash key space, 500 records every
    // 100 ms: five times the 1,000 records/s one shard takes.
    let quarter = 1u128 << 126;
    let mut produced = Vec::new();
    let mut pending: Vec<(String, u128)> = Vec::new();
    let mut rounds = 0;
    while open_shards().await < 6 {
        rounds += 1;
        assert!(rounds < 300, "the stream never scaled past 5 open shards");
        for _ in 0..500 {
            let n = produced.len();
            // Spread over the quarter, so both halves of a split stay hot.
            let hash =
                (n as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) % quarter;
            produced.push(format!("r{n}"));
            pending.push((format!("r{n}"), hash));
        }
        pending = put_with_hash_keys(&client, "elastic", pending).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The producer retries what was refused until everything is in.
    while !pending.is_empty() {
        pending = put_with_hash_keys(&client, "elastic", pending).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let shards = client
        .list_shards()
        .stream_name("elastic")
        .send()
        .await
        .unwrap()
        .shards
        .unwrap_or_default();
    let children_of_first: Vec<_> = shards
        .iter()
        .filter(|s| s.parent_shard_id.as_deref() == Some("shardId-000000000000"))
        .collect();
    assert_eq!(children_of_first.len(), 2, "the hot shard was split in two");
    let mut read = Vec::new();
    for shard in &shards {
        read.extend(read_shard(&client, "elastic", &shard.shard_id).await);
    }
    read.sort();
    produced.sort();
    assert_eq!(
        read.len(),
        produced.len(),
        "every record landed exactly once"
    );
    assert_eq!(read, produced);
    broker.shutdown().await;
}

/// Puts (data, explicit hash key) entries; returns the ones refused.
async fn put_with_hash_keys(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    entries: Vec<(String, u128)>,
) -> Vec<(String, u128)> {
    let mut refused = Vec::new();
    for chunk in entries.chunks(500) {
        let out = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(
                chunk
                    .iter()
                    .map(|(data, hash)| {
                        PutRecordsRequestEntry::builder()
                            .partition_key("k")
                            .explicit_hash_key(hash.to_string())
                            .data(Blob::new(data.clone()))
                            .build()
                            .unwrap()
                    })
                    .collect(),
            ))
            .send()
            .await
            .unwrap();
        for (entry, result) in chunk.iter().zip(out.records) {
            if let Some(code) = result.error_code {
                assert_eq!(code, "ProvisionedThroughputExceededException");
                refused.push(entry.clone());
            }
        }
    }
    refused
}
