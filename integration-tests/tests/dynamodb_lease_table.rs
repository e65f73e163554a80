//! The requests a Java KCL 2.x/3.x worker sends to its lease table, replayed with the real
//! `aws-sdk-dynamodb` client in the shapes the KCL's `DynamoDBLeaseRefresher` and
//! `DynamoDBLeaseSerializer` build them (legacy `Expected`/`AttributeUpdates`), plus the
//! expression forms a newer client uses. Each step must succeed or fail exactly as on DynamoDB.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeAction, AttributeDefinition, AttributeValue, AttributeValueUpdate, BillingMode,
    CreateGlobalSecondaryIndexAction, ExpectedAttributeValue, GlobalSecondaryIndexUpdate,
    IndexStatus, KeySchemaElement, KeyType, PointInTimeRecoverySpecification, Projection,
    ProjectionType, ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
    TableStatus,
};
use integration_tests::dynamodb_client;
use local_broker::{LocalBroker, ShiftableClock};
use std::collections::HashMap;
use std::time::Duration;

const TABLE: &str = "kcl-app";
const INDEX: &str = "LeaseOwnerToLeaseKeyIndex";

type Record = HashMap<String, AttributeValue>;

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn put(value: AttributeValue) -> AttributeValueUpdate {
    AttributeValueUpdate::builder()
        .action(AttributeAction::Put)
        .value(value)
        .build()
}

fn add(value: AttributeValue) -> AttributeValueUpdate {
    AttributeValueUpdate::builder()
        .action(AttributeAction::Add)
        .value(value)
        .build()
}

fn delete() -> AttributeValueUpdate {
    AttributeValueUpdate::builder()
        .action(AttributeAction::Delete)
        .build()
}

/// `getDynamoLeaseCounterExpectation`: `Value` without `Exists`.
fn equals(value: AttributeValue) -> ExpectedAttributeValue {
    ExpectedAttributeValue::builder().value(value).build()
}

fn absent() -> ExpectedAttributeValue {
    ExpectedAttributeValue::builder().exists(false).build()
}

/// `getDynamoExistentExpectation`: the lease must still exist.
fn exists(lease_key: &str) -> ExpectedAttributeValue {
    ExpectedAttributeValue::builder()
        .value(s(lease_key))
        .exists(true)
        .build()
}

fn definition(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("definition")
}

fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .expect("key")
}

/// `DynamoDBLeaseSerializer.toDynamoRecord` for a new, unowned lease.
fn lease_record(lease_key: &str) -> Record {
    HashMap::from([
        ("leaseKey".to_owned(), s(lease_key)),
        ("leaseCounter".to_owned(), n(0)),
        ("ownerSwitchesSinceCheckpoint".to_owned(), n(0)),
        ("checkpoint".to_owned(), s("TRIM_HORIZON")),
        ("checkpointSubSequenceNumber".to_owned(), n(0)),
        ("startingHashKey".to_owned(), s("0")),
        (
            "endingHashKey".to_owned(),
            s("340282366920938463463374607431768211455"),
        ),
        (
            "parentShardId".to_owned(),
            AttributeValue::Ss(vec!["shardId-000000000000".to_owned()]),
        ),
    ])
}

async fn create_lease(client: &Client, lease_key: &str) -> bool {
    let result = client
        .put_item()
        .table_name(TABLE)
        .set_item(Some(lease_record(lease_key)))
        .expected("leaseKey", absent())
        .send()
        .await;
    match result {
        Ok(_) => true,
        Err(err) if err.code() == Some("ConditionalCheckFailedException") => false,
        Err(err) => panic!("createLeaseIfNotExists failed: {err:?}"),
    }
}

async fn get_lease(client: &Client, lease_key: &str) -> Option<Record> {
    client
        .get_item()
        .table_name(TABLE)
        .key("leaseKey", s(lease_key))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem succeeds")
        .item
}

fn counter(record: &Record) -> u64 {
    record["leaseCounter"]
        .as_n()
        .expect("leaseCounter is a number")
        .parse()
        .expect("leaseCounter is an integer")
}

/// `takeLease`: expect the counter we saw, bump it, set the owner.
async fn take_lease(
    client: &Client,
    lease_key: &str,
    seen_counter: u64,
    owner: &str,
    switched: bool,
) -> bool {
    let mut request = client
        .update_item()
        .table_name(TABLE)
        .key("leaseKey", s(lease_key))
        .expected("leaseCounter", equals(n(seen_counter)))
        .attribute_updates("leaseCounter", put(n(seen_counter + 1)))
        .attribute_updates("leaseOwner", put(s(owner)));
    if switched {
        request = request.attribute_updates("ownerSwitchesSinceCheckpoint", add(n(1)));
    }
    match request.send().await {
        Ok(_) => true,
        Err(err) if err.code() == Some("ConditionalCheckFailedException") => false,
        Err(err) => panic!("takeLease failed: {err:?}"),
    }
}

/// `renewLease` (3.x): counter expectation plus "no graceful shutdown pending".
async fn renew_lease(client: &Client, lease_key: &str, held_counter: u64) -> bool {
    let result = client
        .update_item()
        .table_name(TABLE)
        .key("leaseKey", s(lease_key))
        .expected("leaseCounter", equals(n(held_counter)))
        .expected("checkpointOwner", absent())
        .attribute_updates("leaseCounter", put(n(held_counter + 1)))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match result {
        Ok(_) => true,
        Err(err) if err.code() == Some("ConditionalCheckFailedException") => false,
        Err(err) => panic!("renewLease failed: {err:?}"),
    }
}

async fn create_lease_table(client: &Client) {
    let missing = client
        .describe_table()
        .table_name(TABLE)
        .send()
        .await
        .expect_err("no table yet");
    assert!(
        missing
            .into_service_error()
            .is_resource_not_found_exception()
    );
    client
        .create_table()
        .table_name(TABLE)
        .attribute_definitions(definition("leaseKey"))
        .key_schema(key("leaseKey", KeyType::Hash))
        .billing_mode(BillingMode::PayPerRequest)
        .deletion_protection_enabled(false)
        .send()
        .await
        .expect("CreateTable succeeds");
    // A second worker racing to create the table sees ResourceInUseException and carries on.
    let raced = client
        .create_table()
        .table_name(TABLE)
        .attribute_definitions(definition("leaseKey"))
        .key_schema(key("leaseKey", KeyType::Hash))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect_err("the table exists");
    assert!(raced.into_service_error().is_resource_in_use_exception());
}

#[tokio::test]
async fn kcl_worker_lease_lifecycle_with_legacy_parameters() {
    let broker = LocalBroker::builder().start().await.expect("broker starts");
    let client = dynamodb_client(&broker.endpoint());
    create_lease_table(&client).await;
    let table = client
        .describe_table()
        .table_name(TABLE)
        .send()
        .await
        .expect("DescribeTable succeeds")
        .table
        .expect("table");
    assert_eq!(table.table_status, Some(TableStatus::Active));
    assert_eq!(
        table.billing_mode_summary.and_then(|b| b.billing_mode),
        Some(BillingMode::PayPerRequest),
        "KCL 3 reads the billing mode before creating its GSI"
    );
    client
        .update_continuous_backups()
        .table_name(TABLE)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .expect("spec"),
        )
        .send()
        .await
        .expect("PITR can be enabled");

    // Shard sync creates leases; a second sync finds them already there.
    assert!(create_lease(&client, "shardId-000000000001").await);
    assert!(!create_lease(&client, "shardId-000000000001").await);

    // Worker 1 takes the unowned lease; a stale take loses.
    assert!(take_lease(&client, "shardId-000000000001", 0, "worker-1", false).await);
    assert!(!take_lease(&client, "shardId-000000000001", 0, "worker-2", false).await);

    // Renewals bump the counter; a renewal with a stale counter fails.
    assert!(renew_lease(&client, "shardId-000000000001", 1).await);
    assert!(renew_lease(&client, "shardId-000000000001", 2).await);
    assert!(!renew_lease(&client, "shardId-000000000001", 2).await);

    // Worker 2 steals with the counter it observed; worker 1's next renewal fails: lease lost.
    assert!(take_lease(&client, "shardId-000000000001", 3, "worker-2", true).await);
    assert!(!renew_lease(&client, "shardId-000000000001", 3).await);
    let stolen = get_lease(&client, "shardId-000000000001")
        .await
        .expect("lease exists");
    assert_eq!(counter(&stolen), 4);
    assert_eq!(stolen["leaseOwner"], s("worker-2"));
    assert_eq!(stolen["ownerSwitchesSinceCheckpoint"], n(1));

    // Checkpoint (`updateLease`): counter expectation, PUT the checkpoint, DELETE pending fields.
    client
        .update_item()
        .table_name(TABLE)
        .key("leaseKey", s("shardId-000000000001"))
        .expected("leaseCounter", equals(n(4)))
        .attribute_updates(
            "checkpoint",
            put(s(
                "49590338271490256608559692538361571095921575989136588898",
            )),
        )
        .attribute_updates("checkpointSubSequenceNumber", put(n(0)))
        .attribute_updates("ownerSwitchesSinceCheckpoint", put(n(0)))
        .attribute_updates("pendingCheckpoint", delete())
        .attribute_updates("pendingCheckpointSubSequenceNumber", delete())
        .send()
        .await
        .expect("checkpoint succeeds");
    let checkpointed = get_lease(&client, "shardId-000000000001")
        .await
        .expect("lease exists");
    assert_eq!(
        checkpointed["checkpoint"],
        s("49590338271490256608559692538361571095921575989136588898")
    );
    assert_eq!(checkpointed["ownerSwitchesSinceCheckpoint"], n(0));
    assert!(!checkpointed.contains_key("pendingCheckpoint"));

    // The counter renewal the task description mentions: Exists=true + ADD.
    client
        .update_item()
        .table_name(TABLE)
        .key("leaseKey", s("shardId-000000000001"))
        .expected(
            "leaseCounter",
            ExpectedAttributeValue::builder()
                .value(n(4))
                .exists(true)
                .build(),
        )
        .attribute_updates("leaseCounter", add(n(1)))
        .send()
        .await
        .expect("ADD renewal succeeds");
    assert_eq!(
        counter(
            &get_lease(&client, "shardId-000000000001")
                .await
                .expect("lease")
        ),
        5
    );

    // Evict (`evictLease`): owner expectation + existence, remove the owner.
    let evicted = client
        .update_item()
        .table_name(TABLE)
        .key("leaseKey", s("shardId-000000000001"))
        .expected("leaseOwner", equals(s("worker-2")))
        .expected("leaseKey", exists("shardId-000000000001"))
        .attribute_updates("leaseOwner", delete())
        .attribute_updates("leaseCounter", add(n(1)))
        .return_values(ReturnValue::AllNew)
        .send()
        .await
        .expect("evict succeeds")
        .attributes
        .expect("ALL_NEW");
    assert!(!evicted.contains_key("leaseOwner"));
    assert_eq!(counter(&evicted), 6);

    // Assigning a lease that was deleted meanwhile must not create a malformed item.
    let ghost = client
        .update_item()
        .table_name(TABLE)
        .key("leaseKey", s("shardId-000000000099"))
        .expected("leaseOwner", absent())
        .expected("leaseKey", exists("shardId-000000000099"))
        .attribute_updates("leaseOwner", put(s("worker-3")))
        .attribute_updates("leaseCounter", add(n(1)))
        .return_values(ReturnValue::AllNew)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await
        .expect_err("the lease does not exist");
    assert_eq!(ghost.code(), Some("ConditionalCheckFailedException"));
    assert!(get_lease(&client, "shardId-000000000099").await.is_none());

    // Delete (`deleteLease` at shard end): only with the expected owner.
    assert!(take_lease(&client, "shardId-000000000001", 6, "worker-3", false).await);
    let wrong_owner = client
        .delete_item()
        .table_name(TABLE)
        .key("leaseKey", s("shardId-000000000001"))
        .expected("leaseOwner", equals(s("worker-1")))
        .send()
        .await
        .expect_err("wrong owner");
    assert_eq!(wrong_owner.code(), Some("ConditionalCheckFailedException"));
    client
        .delete_item()
        .table_name(TABLE)
        .key("leaseKey", s("shardId-000000000001"))
        .expected("leaseOwner", equals(s("worker-3")))
        .send()
        .await
        .expect("delete succeeds");
    assert!(get_lease(&client, "shardId-000000000001").await.is_none());
}

#[tokio::test]
async fn lease_creation_and_renewal_in_expression_form() {
    let broker = LocalBroker::builder().start().await.expect("broker starts");
    let client = dynamodb_client(&broker.endpoint());
    create_lease_table(&client).await;
    let create = || {
        client
            .put_item()
            .table_name(TABLE)
            .set_item(Some(lease_record("shardId-000000000007")))
            .condition_expression("attribute_not_exists(leaseKey)")
            .send()
    };
    create().await.expect("first create succeeds");
    assert_eq!(
        create().await.expect_err("second create fails").code(),
        Some("ConditionalCheckFailedException")
    );
    let renew = |expected: u64| {
        client
            .update_item()
            .table_name(TABLE)
            .key("leaseKey", s("shardId-000000000007"))
            .update_expression("SET leaseCounter = leaseCounter + :one, leaseOwner = :me")
            .condition_expression("leaseCounter = :expected AND (attribute_not_exists(leaseOwner) OR leaseOwner = :me)")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":me", s("worker-1"))
            .expression_attribute_values(":expected", n(expected))
            .return_values(ReturnValue::UpdatedNew)
            .send()
    };
    let updated = renew(0)
        .await
        .expect("renewal succeeds")
        .attributes
        .expect("UPDATED_NEW");
    assert_eq!(updated["leaseCounter"], n(1));
    assert_eq!(
        renew(0).await.expect_err("stale renewal").code(),
        Some("ConditionalCheckFailedException")
    );
}

#[tokio::test]
async fn lease_listing_pages_and_parallel_segments_cover_every_lease() {
    let broker = LocalBroker::builder().start().await.expect("broker starts");
    let client = dynamodb_client(&broker.endpoint());
    create_lease_table(&client).await;
    for shard in 0..23 {
        assert!(create_lease(&client, &format!("shardId-{shard:012}")).await);
    }
    // `listLeases` with a page size (integration tests force paging this way).
    let mut listed = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(TABLE)
            .limit(5)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("Scan succeeds");
        listed.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    assert_eq!(listed.len(), 23);
    // `listLeasesParallely`: each segment paged on its own.
    let mut seen = Vec::new();
    for segment in 0..10 {
        let mut start = None;
        loop {
            let page = client
                .scan()
                .table_name(TABLE)
                .segment(segment)
                .total_segments(10)
                .limit(2)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("segment Scan succeeds");
            for item in page.items.unwrap_or_default() {
                seen.push(item["leaseKey"].as_s().expect("string").clone());
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 23, "segments are disjoint and complete");
}

#[tokio::test]
async fn kcl3_adds_the_lease_owner_index_and_queries_it_once_active() {
    let clock = ShiftableClock::new();
    let broker = LocalBroker::builder()
        .state_transition_delay(Duration::from_secs(5))
        .clock(clock.clone())
        .start()
        .await
        .expect("broker starts");
    let client = dynamodb_client(&broker.endpoint());
    create_lease_table(&client).await;
    // `waitUntilLeaseTableExists`: poll until ACTIVE.
    let status = client
        .describe_table()
        .table_name(TABLE)
        .send()
        .await
        .expect("DescribeTable")
        .table
        .and_then(|t| t.table_status);
    assert_eq!(status, Some(TableStatus::Creating));
    clock.advance(Duration::from_secs(6));
    for shard in 0..6 {
        assert!(create_lease(&client, &format!("shardId-{shard:012}")).await);
        let owner = if shard % 2 == 0 {
            "worker-a"
        } else {
            "worker-b"
        };
        assert!(take_lease(&client, &format!("shardId-{shard:012}"), 0, owner, false).await);
    }

    // `createLeaseOwnerToLeaseKeyIndexIfNotExists` on a PAY_PER_REQUEST table.
    let described = client
        .describe_table()
        .table_name(TABLE)
        .send()
        .await
        .expect("DescribeTable")
        .table
        .expect("table");
    assert!(described.global_secondary_indexes.is_none());
    let response = client
        .update_table()
        .table_name(TABLE)
        .attribute_definitions(definition("leaseOwner"))
        .attribute_definitions(definition("leaseKey"))
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder()
                .create(
                    CreateGlobalSecondaryIndexAction::builder()
                        .index_name(INDEX)
                        .key_schema(key("leaseOwner", KeyType::Hash))
                        .key_schema(key("leaseKey", KeyType::Range))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::KeysOnly)
                                .build(),
                        )
                        .build()
                        .expect("create action"),
                )
                .build(),
        )
        .send()
        .await
        .expect("UpdateTable adds the GSI");
    let index_status =
        |description: Option<Vec<aws_sdk_dynamodb::types::GlobalSecondaryIndexDescription>>| {
            description
                .unwrap_or_default()
                .into_iter()
                .find(|i| i.index_name() == Some(INDEX))
                .and_then(|i| i.index_status)
        };
    assert_eq!(
        index_status(
            response
                .table_description
                .and_then(|t| t.global_secondary_indexes)
        ),
        Some(IndexStatus::Creating),
        "the UpdateTable response already lists the new index"
    );

    // `waitUntilLeaseOwnerToLeaseKeyIndexExists`: poll DescribeTable until ACTIVE.
    let mut polls = 0;
    loop {
        let table = client
            .describe_table()
            .table_name(TABLE)
            .send()
            .await
            .expect("DescribeTable")
            .table
            .expect("table");
        if index_status(table.global_secondary_indexes) == Some(IndexStatus::Active) {
            break;
        }
        polls += 1;
        assert!(polls < 10, "the index never became ACTIVE");
        clock.advance(Duration::from_secs(2));
    }
    assert!(
        polls >= 1,
        "the index was CREATING for the transition delay"
    );

    // `listLeaseKeysForWorker`: query the index, following LastEvaluatedKey.
    let mut keys = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .query()
            .table_name(TABLE)
            .index_name(INDEX)
            .key_condition_expression("leaseOwner = :leaseOwner")
            .expression_attribute_values(":leaseOwner", s("worker-b"))
            .limit(2)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("GSI query succeeds");
        for item in page.items.unwrap_or_default() {
            assert_eq!(item.len(), 2, "KEYS_ONLY: table key and index key");
            keys.push(item["leaseKey"].as_s().expect("string").clone());
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    assert_eq!(
        keys,
        [
            "shardId-000000000001",
            "shardId-000000000003",
            "shardId-000000000005"
        ]
    );

    // Graceful handoff (3.x): owner moves without a counter bump; the index follows at once.
    let handed = client
        .update_item()
        .table_name(TABLE)
        .key("leaseKey", s("shardId-000000000001"))
        .expected("leaseOwner", equals(s("worker-b")))
        .expected("checkpointOwner", absent())
        .expected("leaseKey", exists("shardId-000000000001"))
        .attribute_updates("leaseOwner", put(s("worker-a")))
        .attribute_updates("checkpointOwner", put(s("worker-b")))
        .return_values(ReturnValue::AllNew)
        .send()
        .await
        .expect("handoff succeeds")
        .attributes
        .expect("ALL_NEW");
    assert_eq!(counter(&handed), 1);
    // The old owner's renewal now fails its "no shutdown pending" expectation.
    assert!(!renew_lease(&client, "shardId-000000000001", 1).await);
    let page = client
        .query()
        .table_name(TABLE)
        .index_name(INDEX)
        .key_condition_expression("leaseOwner = :leaseOwner")
        .expression_attribute_values(":leaseOwner", s("worker-a"))
        .send()
        .await
        .expect("GSI query succeeds");
    assert_eq!(page.count, 4);
}

#[tokio::test]
async fn coordinator_state_lock_item_elects_one_leader() {
    let broker = LocalBroker::builder().start().await.expect("broker starts");
    let client = dynamodb_client(&broker.endpoint());
    client
        .create_table()
        .table_name("kcl-app-CoordinatorState")
        .attribute_definitions(definition("key"))
        .key_schema(key("key", KeyType::Hash))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable succeeds");
    let acquire = |owner: &str, version: &str| {
        client
            .put_item()
            .table_name("kcl-app-CoordinatorState")
            .item("key", s("Leader"))
            .item("ownerName", s(owner))
            .item("leaseDuration", n(120_000))
            .item("recordVersionNumber", s(version))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", "key")
            .send()
    };
    acquire("worker-a", "v1").await.expect("first acquire wins");
    let lost = acquire("worker-b", "v2")
        .await
        .expect_err("second acquire loses");
    assert_eq!(lost.code(), Some("ConditionalCheckFailedException"));
    let heartbeat = |expected: &str, next: &str| {
        client
            .update_item()
            .table_name("kcl-app-CoordinatorState")
            .key("key", s("Leader"))
            .update_expression("SET #rvn = :next")
            .condition_expression("attribute_exists(#k) AND #owner = :owner AND #rvn = :expected")
            .expression_attribute_names("#k", "key")
            .expression_attribute_names("#rvn", "recordVersionNumber")
            .expression_attribute_names("#owner", "ownerName")
            .expression_attribute_values(":owner", s("worker-a"))
            .expression_attribute_values(":expected", s(expected))
            .expression_attribute_values(":next", s(next))
            .send()
    };
    heartbeat("v1", "v3")
        .await
        .expect("heartbeat with the current version succeeds");
    assert_eq!(
        heartbeat("v1", "v4")
            .await
            .expect_err("stale version")
            .code(),
        Some("ConditionalCheckFailedException")
    );
    let unreserved = client
        .delete_item()
        .table_name("kcl-app-CoordinatorState")
        .key("key", s("Leader"))
        .condition_expression("key = :k")
        .expression_attribute_values(":k", s("Leader"))
        .send()
        .await
        .expect_err("`key` is a reserved word");
    assert_eq!(unreserved.code(), Some("ValidationException"));
    assert_eq!(
        unreserved.message(),
        Some(
            "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: key"
        )
    );
}
