//! Split, merge and UpdateShardCount: parents close with an ending sequence number, children name
//! their parents, and a reader of a parent is led to its children.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ScalingType, Shard, ShardIteratorType};
use integration_tests::{broker_with_kinesis, create_stream, get_records};

async fn all_shards(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<Shard> {
    client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap()
        .shards
        .unwrap_or_default()
}

fn open(shards: &[Shard]) -> Vec<&Shard> {
    shards
        .iter()
        .filter(|s| {
            s.sequence_number_range
                .as_ref()
                .is_some_and(|r| r.ending_sequence_number.is_none())
        })
        .collect()
}

#[tokio::test]
async fn split_closes_the_parent_and_leads_readers_to_both_children() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "split", 1).await;
    for i in 0..3 {
        client
            .put_record()
            .stream_name("split")
            .partition_key(format!("k{i}"))
            .data(Blob::new(format!("before-{i}")))
            .send()
            .await
            .unwrap();
    }
    let middle = (u128::MAX / 2 + 1).to_string();
    client
        .split_shard()
        .stream_name("split")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(&middle)
        .send()
        .await
        .unwrap();
    let shards = all_shards(&client, "split").await;
    assert_eq!(shards.len(), 3);
    let parent = &shards[0];
    assert!(
        parent
            .sequence_number_range
            .as_ref()
            .unwrap()
            .ending_sequence_number
            .is_some(),
        "the parent is closed"
    );
    let children = open(&shards);
    assert_eq!(children.len(), 2);
    for child in &children {
        assert_eq!(
            child.parent_shard_id.as_deref(),
            Some("shardId-000000000000")
        );
    }
    assert_eq!(
        children[1]
            .hash_key_range
            .as_ref()
            .unwrap()
            .starting_hash_key,
        middle
    );

    // Reading the parent to its end returns its records, then no iterator and the children.
    let mut it = client
        .get_shard_iterator()
        .stream_name("split")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let mut seen = 0;
    loop {
        let page = get_records(&client, &it).await;
        seen += page.records.len();
        match page.next_shard_iterator {
            Some(next) => it = next,
            None => {
                let child_ids: Vec<String> = page
                    .child_shards
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| c.shard_id)
                    .collect();
                assert_eq!(child_ids, ["shardId-000000000001", "shardId-000000000002"]);
                break;
            }
        }
    }
    assert_eq!(seen, 3);

    // Writes after the split land in the children, never in the closed parent.
    let put = client
        .put_record()
        .stream_name("split")
        .partition_key("after")
        .data(Blob::new("after"))
        .send()
        .await
        .unwrap();
    assert_ne!(put.shard_id, "shardId-000000000000");
}

#[tokio::test]
async fn merge_names_both_parents() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "merge", 2).await;
    client
        .merge_shards()
        .stream_name("merge")
        .shard_to_merge("shardId-000000000000")
        .adjacent_shard_to_merge("shardId-000000000001")
        .send()
        .await
        .unwrap();
    let shards = all_shards(&client, "merge").await;
    let open = open(&shards);
    assert_eq!(open.len(), 1);
    let child = open[0];
    assert_eq!(
        child.parent_shard_id.as_deref(),
        Some("shardId-000000000000")
    );
    assert_eq!(
        child.adjacent_parent_shard_id.as_deref(),
        Some("shardId-000000000001")
    );
    let range = child.hash_key_range.as_ref().unwrap();
    assert_eq!(range.starting_hash_key, "0");
    assert_eq!(range.ending_hash_key, u128::MAX.to_string());

    // A reader of either parent is led to the merged child, listing both parents.
    let it = client
        .get_shard_iterator()
        .stream_name("merge")
        .shard_id("shardId-000000000001")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let page = client
        .get_records()
        .shard_iterator(&it)
        .send()
        .await
        .unwrap();
    assert!(page.next_shard_iterator.is_none());
    let children = page.child_shards.unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(
        children[0].parent_shards,
        ["shardId-000000000000", "shardId-000000000001"]
    );
}

#[tokio::test]
async fn update_shard_count_scales_up_and_down_to_even_ranges() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "scale", 4).await;
    for target in [8, 5, 3, 4] {
        let out = client
            .update_shard_count()
            .stream_name("scale")
            .target_shard_count(target)
            .scaling_type(ScalingType::UniformScaling)
            .send()
            .await
            .unwrap();
        assert_eq!(out.target_shard_count, Some(target));
        let shards = all_shards(&client, "scale").await;
        let open = open(&shards);
        assert_eq!(open.len(), target as usize);
        // Every open shard descends from a listed parent: lineage is never broken.
        for shard in &open {
            let parent = shard.parent_shard_id.as_deref().unwrap();
            assert!(shards.iter().any(|s| s.shard_id == parent));
        }
    }
    let err = client
        .update_shard_count()
        .stream_name("scale")
        .target_shard_count(9)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_limit_exceeded_exception(), "{err:?}");
}

#[tokio::test]
async fn list_shards_filters_select_the_right_generation() {
    use aws_sdk_kinesis::types::{ShardFilter, ShardFilterType};
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "filters", 2).await;
    client
        .merge_shards()
        .stream_name("filters")
        .shard_to_merge("shardId-000000000000")
        .adjacent_shard_to_merge("shardId-000000000001")
        .send()
        .await
        .unwrap();
    let ids = |filter: ShardFilter| {
        let client = client.clone();
        async move {
            client
                .list_shards()
                .stream_name("filters")
                .shard_filter(filter)
                .send()
                .await
                .unwrap()
                .shards
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.shard_id)
                .collect::<Vec<_>>()
        }
    };
    let filter = |kind: ShardFilterType| ShardFilter::builder().r#type(kind).build().unwrap();
    assert_eq!(
        ids(filter(ShardFilterType::AtLatest)).await,
        ["shardId-000000000002"]
    );
    assert_eq!(
        ids(filter(ShardFilterType::AtTrimHorizon)).await,
        ["shardId-000000000000", "shardId-000000000001"]
    );
    assert_eq!(ids(filter(ShardFilterType::FromTrimHorizon)).await.len(), 3);
    let after = ShardFilter::builder()
        .r#type(ShardFilterType::AfterShardId)
        .shard_id("shardId-000000000000")
        .build()
        .unwrap();
    assert_eq!(
        ids(after).await,
        ["shardId-000000000001", "shardId-000000000002"]
    );

    // Paging with MaxResults and NextToken visits every shard once.
    let first = client
        .list_shards()
        .stream_name("filters")
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(first.shards.unwrap().len(), 2);
    let second = client
        .list_shards()
        .next_token(first.next_token.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(second.shards.unwrap().len(), 1);
    assert!(second.next_token.is_none());
}
