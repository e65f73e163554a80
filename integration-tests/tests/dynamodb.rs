//! The broker's DynamoDB service driven by the real `aws-sdk-dynamodb` client: every operation,
//! both condition dialects, paging, limits, and the error codes for bad input.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeAction, AttributeDefinition, AttributeValue, AttributeValueUpdate, BillingMode,
    ComparisonOperator, Condition, CreateGlobalSecondaryIndexAction, DeleteRequest,
    ExpectedAttributeValue, GlobalSecondaryIndex, GlobalSecondaryIndexUpdate, IndexStatus,
    KeySchemaElement, KeyType, KeysAndAttributes, PointInTimeRecoverySpecification, Projection,
    ProjectionType, ProvisionedThroughput, PutRequest, ReturnValue, ScalarAttributeType, Select,
    TableStatus, Tag, TimeToLiveSpecification, WriteRequest,
};
use integration_tests::dynamodb_client;
use local_broker::{LocalBroker, RunningBroker, ShiftableClock};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

async fn start() -> (RunningBroker, Client) {
    let broker = LocalBroker::builder().start().await.expect("broker starts");
    let client = dynamodb_client(&broker.endpoint());
    (broker, client)
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: &str) -> AttributeValue {
    AttributeValue::N(value.to_owned())
}

fn definition(name: &str, ty: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ty)
        .build()
        .expect("definition")
}

fn key(name: &str, ty: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(ty)
        .build()
        .expect("key schema element")
}

/// A table with hash key `pk` (S) and, when `range` is given, range key `sk` of that type.
async fn create_table(client: &Client, name: &str, range: Option<ScalarAttributeType>) {
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(definition("pk", ScalarAttributeType::S))
        .key_schema(key("pk", KeyType::Hash));
    if let Some(ty) = range {
        request = request
            .attribute_definitions(definition("sk", ty))
            .key_schema(key("sk", KeyType::Range));
    }
    request.send().await.expect("CreateTable succeeds");
}

async fn put(client: &Client, table: &str, item: &[(&str, AttributeValue)]) {
    let mut request = client.put_item().table_name(table);
    for (name, value) in item {
        request = request.item(*name, value.clone());
    }
    request.send().await.expect("PutItem succeeds");
}

async fn get(client: &Client, table: &str, pk: &str) -> Option<HashMap<String, AttributeValue>> {
    client
        .get_item()
        .table_name(table)
        .key("pk", s(pk))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem succeeds")
        .item
}

fn code<E: ProvideErrorMetadata>(error: &E) -> &str {
    error.code().unwrap_or("<no code>")
}

fn message<E: ProvideErrorMetadata>(error: &E) -> &str {
    error.message().unwrap_or("<no message>")
}

#[tokio::test]
async fn table_lifecycle_create_describe_list_update_delete() {
    let (_broker, client) = start().await;
    let created = client
        .create_table()
        .table_name("orders")
        .attribute_definitions(definition("pk", ScalarAttributeType::S))
        .key_schema(key("pk", KeyType::Hash))
        .provisioned_throughput(
            ProvisionedThroughput::builder()
                .read_capacity_units(5)
                .write_capacity_units(5)
                .build()
                .expect("throughput"),
        )
        .tags(
            Tag::builder()
                .key("team")
                .value("streams")
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("CreateTable succeeds")
        .table_description
        .expect("description");
    assert_eq!(created.table_status, Some(TableStatus::Active));
    assert_eq!(
        created.table_arn.as_deref(),
        Some("arn:aws:dynamodb:us-east-1:000000000000:table/orders")
    );
    assert!(created.creation_date_time.is_some());

    let described = client
        .describe_table()
        .table_name("orders")
        .send()
        .await
        .expect("DescribeTable succeeds")
        .table
        .expect("table");
    assert_eq!(described.item_count, Some(0));
    assert_eq!(
        described
            .provisioned_throughput
            .and_then(|p| p.read_capacity_units),
        Some(5)
    );
    assert!(described.billing_mode_summary.is_none());

    let updated = client
        .update_table()
        .table_name("orders")
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("UpdateTable succeeds")
        .table_description
        .expect("description");
    assert_eq!(
        updated.billing_mode_summary.and_then(|b| b.billing_mode),
        Some(BillingMode::PayPerRequest)
    );

    let arn = updated.table_arn.expect("arn");
    let tags = client
        .list_tags_of_resource()
        .resource_arn(&arn)
        .send()
        .await
        .expect("ListTagsOfResource succeeds")
        .tags
        .unwrap_or_default();
    assert_eq!(tags.len(), 1);
    client
        .tag_resource()
        .resource_arn(&arn)
        .tags(
            Tag::builder()
                .key("env")
                .value("test")
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("TagResource succeeds");
    client
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("team")
        .send()
        .await
        .expect("UntagResource succeeds");
    let tags = client
        .list_tags_of_resource()
        .resource_arn(&arn)
        .send()
        .await
        .expect("ListTagsOfResource succeeds")
        .tags
        .unwrap_or_default();
    assert_eq!(tags.iter().map(|t| t.key()).collect::<Vec<_>>(), ["env"]);

    let deleted = client
        .delete_table()
        .table_name("orders")
        .send()
        .await
        .expect("DeleteTable succeeds")
        .table_description
        .expect("description");
    assert_eq!(deleted.table_status, Some(TableStatus::Deleting));
    let err = client
        .describe_table()
        .table_name("orders")
        .send()
        .await
        .expect_err("the table is gone");
    assert!(err.into_service_error().is_resource_not_found_exception());
}

#[tokio::test]
async fn table_errors_use_aws_codes() {
    let (_broker, client) = start().await;
    create_table(&client, "things", None).await;
    let err = client
        .create_table()
        .table_name("things")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(definition("pk", ScalarAttributeType::S))
        .key_schema(key("pk", KeyType::Hash))
        .send()
        .await
        .expect_err("the name is taken");
    assert!(err.into_service_error().is_resource_in_use_exception());

    let err = client
        .create_table()
        .table_name("x!")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(definition("pk", ScalarAttributeType::S))
        .key_schema(key("pk", KeyType::Hash))
        .send()
        .await
        .expect_err("bad name");
    assert_eq!(code(&err), "ValidationException");
    assert!(message(&err).contains("at 'tableName' failed to satisfy constraint"));

    let err = client
        .delete_table()
        .table_name("nothing")
        .send()
        .await
        .expect_err("missing table");
    assert_eq!(code(&err), "ResourceNotFoundException");
    assert_eq!(
        message(&err),
        "Requested resource not found: Table: nothing not found"
    );

    let err = client
        .get_item()
        .table_name("nothing")
        .key("pk", s("a"))
        .send()
        .await
        .expect_err("missing table");
    assert_eq!(message(&err), "Requested resource not found");
    assert!(err.into_service_error().is_resource_not_found_exception());
}

#[tokio::test]
async fn list_tables_pages_with_exclusive_start_table_name() {
    let (_broker, client) = start().await;
    for name in ["t-a", "t-b", "t-c", "t-d", "t-e"] {
        create_table(&client, name, None).await;
    }
    let mut seen = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let page = client
            .list_tables()
            .limit(2)
            .set_exclusive_start_table_name(start.clone())
            .send()
            .await
            .expect("ListTables succeeds");
        seen.extend(page.table_names.unwrap_or_default());
        start = page.last_evaluated_table_name;
        if start.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["t-a", "t-b", "t-c", "t-d", "t-e"]);
}

#[tokio::test]
async fn every_attribute_type_round_trips_and_numbers_are_normalised() {
    let (_broker, client) = start().await;
    create_table(&client, "types", None).await;
    let blob = aws_sdk_dynamodb::primitives::Blob::new(vec![0u8, 1, 2, 255]);
    put(
        &client,
        "types",
        &[
            ("pk", s("all")),
            ("s", s("text")),
            ("empty", s("")),
            ("n", n("0010.50")),
            ("neg_zero", n("-0")),
            ("big", n("1E+5")),
            ("b", AttributeValue::B(blob.clone())),
            ("ss", AttributeValue::Ss(vec!["x".into(), "y".into()])),
            ("ns", AttributeValue::Ns(vec!["1.0".into(), "2".into()])),
            ("bs", AttributeValue::Bs(vec![blob.clone()])),
            ("bool", AttributeValue::Bool(true)),
            ("null", AttributeValue::Null(true)),
            (
                "m",
                AttributeValue::M(HashMap::from([("k".to_owned(), n("1"))])),
            ),
            ("l", AttributeValue::L(vec![s("a"), n("2")])),
        ],
    )
    .await;
    let item = get(&client, "types", "all").await.expect("item exists");
    assert_eq!(item["n"], n("10.5"));
    assert_eq!(item["neg_zero"], n("0"));
    assert_eq!(item["big"], n("100000"));
    assert_eq!(item["b"], AttributeValue::B(blob));
    assert_eq!(item["ns"], AttributeValue::Ns(vec!["1".into(), "2".into()]));
    assert_eq!(item["empty"], s(""));
    assert_eq!(item["null"], AttributeValue::Null(true));
    assert_eq!(item["l"], AttributeValue::L(vec![s("a"), n("2")]));
    assert_eq!(item.len(), 14);
}

#[tokio::test]
async fn invalid_values_and_keys_are_validation_errors() {
    let (_broker, client) = start().await;
    create_table(&client, "strict", None).await;
    let cases: Vec<(Vec<(&str, AttributeValue)>, &str)> = vec![
        (
            vec![("pk", n("1"))],
            "Type mismatch for key pk expected: S actual: N",
        ),
        (vec![("other", s("x"))], "Missing the key pk in the item"),
        (vec![("pk", s(""))], "cannot contain an empty string value"),
        (
            vec![("pk", s("a")), ("ss", AttributeValue::Ss(vec![]))],
            "may not be empty",
        ),
        (
            vec![
                ("pk", s("a")),
                ("ss", AttributeValue::Ss(vec!["d".into(), "d".into()])),
            ],
            "contains duplicates",
        ),
        (vec![("pk", s("a")), ("n", n("1e200"))], "Number overflow"),
        (
            vec![("pk", s("a")), ("n", n("not-a-number"))],
            "cannot be converted to a numeric value",
        ),
        (
            vec![("pk", s("a")), ("big", s(&"x".repeat(410 * 1024)))],
            "Item size has exceeded the maximum allowed size",
        ),
        (
            vec![("pk", s(&"k".repeat(2049)))],
            "Size of hashkey has exceeded the maximum size limit",
        ),
    ];
    for (item, expected) in cases {
        let mut request = client.put_item().table_name("strict");
        for (name, value) in item {
            request = request.item(name, value);
        }
        let err = request.send().await.expect_err(expected);
        assert_eq!(code(&err), "ValidationException", "{expected}");
        assert!(
            message(&err).contains(expected),
            "{} should contain {expected}",
            message(&err)
        );
    }
    let err = client
        .get_item()
        .table_name("strict")
        .key("pk", s("a"))
        .key("extra", s("b"))
        .send()
        .await
        .expect_err("wrong key");
    assert_eq!(
        message(&err),
        "The provided key element does not match the schema"
    );
}

#[tokio::test]
async fn condition_expressions_guard_writes() {
    let (_broker, client) = start().await;
    create_table(&client, "guarded", None).await;
    let create = || {
        client
            .put_item()
            .table_name("guarded")
            .item("pk", s("a"))
            .item("owner", s("w1"))
            .item("version", n("1"))
            .condition_expression("attribute_not_exists(pk)")
    };
    create().send().await.expect("first put succeeds");
    let err = create().send().await.expect_err("second put fails");
    assert_eq!(code(&err), "ConditionalCheckFailedException");
    assert_eq!(message(&err), "The conditional request failed");
    assert!(
        err.into_service_error()
            .is_conditional_check_failed_exception()
    );

    let err = client
        .delete_item()
        .table_name("guarded")
        .key("pk", s("a"))
        .condition_expression("#o = :o AND version > :v")
        .expression_attribute_names("#o", "owner")
        .expression_attribute_values(":o", s("w2"))
        .expression_attribute_values(":v", n("0"))
        .send()
        .await
        .expect_err("wrong owner");
    assert_eq!(code(&err), "ConditionalCheckFailedException");
    assert!(
        get(&client, "guarded", "a").await.is_some(),
        "a failed condition changes nothing"
    );

    let deleted = client
        .delete_item()
        .table_name("guarded")
        .key("pk", s("a"))
        .condition_expression(
            "(#o = :o OR #o = :other) AND NOT begins_with(#o, :x) AND version BETWEEN :lo AND :hi",
        )
        .expression_attribute_names("#o", "owner")
        .expression_attribute_values(":o", s("w1"))
        .expression_attribute_values(":other", s("w9"))
        .expression_attribute_values(":x", s("x"))
        .expression_attribute_values(":lo", n("1"))
        .expression_attribute_values(":hi", n("5"))
        .return_values(ReturnValue::AllOld)
        .send()
        .await
        .expect("matching delete succeeds");
    assert_eq!(deleted.attributes.expect("old item")["owner"], s("w1"));
    assert!(get(&client, "guarded", "a").await.is_none());
}

#[tokio::test]
async fn update_expressions_set_remove_add_delete_with_return_values() {
    let (_broker, client) = start().await;
    create_table(&client, "updates", None).await;
    let created = client
        .update_item()
        .table_name("updates")
        .key("pk", s("a"))
        .update_expression("SET c = if_not_exists(c, :zero) + :one, l = list_append(if_not_exists(l, :empty), :l), m = :m ADD tags :t")
        .expression_attribute_values(":zero", n("0"))
        .expression_attribute_values(":one", n("1"))
        .expression_attribute_values(":empty", AttributeValue::L(vec![]))
        .expression_attribute_values(":l", AttributeValue::L(vec![s("x")]))
        .expression_attribute_values(":m", AttributeValue::M(HashMap::from([("nested_n".to_owned(), n("7"))])))
        .expression_attribute_values(":t", AttributeValue::Ss(vec!["red".into(), "blue".into()]))
        .return_values(ReturnValue::AllNew)
        .send()
        .await
        .expect("UpdateItem creates the item")
        .attributes
        .expect("ALL_NEW");
    assert_eq!(created["c"], n("1"));
    assert_eq!(created["pk"], s("a"));

    let updated = client
        .update_item()
        .table_name("updates")
        .key("pk", s("a"))
        .update_expression(
            "SET c = c + :half, m.nested_n = m.nested_n - :one REMOVE l[0] DELETE tags :red",
        )
        .expression_attribute_values(":half", n("0.5"))
        .expression_attribute_values(":one", n("1"))
        .expression_attribute_values(":red", AttributeValue::Ss(vec!["red".into()]))
        .return_values(ReturnValue::UpdatedNew)
        .send()
        .await
        .expect("UpdateItem succeeds")
        .attributes
        .expect("UPDATED_NEW");
    assert_eq!(updated["c"], n("1.5"));
    assert_eq!(
        updated["m"],
        AttributeValue::M(HashMap::from([("nested_n".to_owned(), n("6"))]))
    );
    assert_eq!(updated["tags"], AttributeValue::Ss(vec!["blue".into()]));
    assert!(
        !updated.contains_key("l"),
        "a removed element has no new value"
    );

    let old = client
        .update_item()
        .table_name("updates")
        .key("pk", s("a"))
        .update_expression("REMOVE tags, m")
        .return_values(ReturnValue::UpdatedOld)
        .send()
        .await
        .expect("UpdateItem succeeds")
        .attributes
        .expect("UPDATED_OLD");
    assert_eq!(old.len(), 2);
    let item = get(&client, "updates", "a").await.expect("item");
    assert!(!item.contains_key("tags") && !item.contains_key("m"));

    // Taking attributes away from an item that does not exist does not create it, as DynamoDB
    // behaves (an update that sets anything does create it, above).
    client
        .update_item()
        .table_name("updates")
        .key("pk", s("missing"))
        .update_expression("REMOVE tags")
        .send()
        .await
        .expect("UpdateItem succeeds");
    assert_eq!(get(&client, "updates", "missing").await, None);

    let err = client
        .update_item()
        .table_name("updates")
        .key("pk", s("a"))
        .update_expression("SET pk = :v")
        .expression_attribute_values(":v", s("b"))
        .send()
        .await
        .expect_err("key attributes are immutable");
    assert!(
        message(&err).contains("Cannot update attribute pk. This attribute is part of the key")
    );
}

#[tokio::test]
async fn expression_errors_read_like_dynamodb() {
    let (_broker, client) = start().await;
    create_table(&client, "exprs", None).await;
    let update = |expression: &str| {
        client
            .update_item()
            .table_name("exprs")
            .key("pk", s("a"))
            .update_expression(expression)
    };
    let err = update("SET status = :v")
        .expression_attribute_values(":v", s("x"))
        .send()
        .await
        .expect_err("reserved word");
    assert_eq!(code(&err), "ValidationException");
    assert_eq!(
        message(&err),
        "Invalid UpdateExpression: Attribute name is a reserved keyword; reserved keyword: status"
    );
    let err = update("SET a = :v")
        .expression_attribute_values(":v", s("x"))
        .expression_attribute_values(":x", s("y"))
        .send()
        .await
        .expect_err("unused value");
    assert_eq!(
        message(&err),
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:x}"
    );
    let err = update("SET a = :y")
        .send()
        .await
        .expect_err("undefined value");
    assert_eq!(
        message(&err),
        "Invalid UpdateExpression: An expression attribute value used in expression is not defined; attribute value: :y"
    );
    let err = update("SET a = = :v")
        .expression_attribute_values(":v", s("x"))
        .send()
        .await
        .expect_err("syntax");
    assert!(message(&err).starts_with("Invalid UpdateExpression: Syntax error; token: \"=\""));
    let err = client
        .put_item()
        .table_name("exprs")
        .item("pk", s("a"))
        .condition_expression("attribute_not_exists(pk)")
        .expected(
            "pk",
            ExpectedAttributeValue::builder().exists(false).build(),
        )
        .send()
        .await
        .expect_err("mixed dialects");
    assert!(message(&err).starts_with("Can not use both expression and non-expression parameters"));
    let err = update("SET n = n + :one")
        .expression_attribute_values(":one", n("1"))
        .send()
        .await
        .expect_err("missing operand");
    assert_eq!(
        message(&err),
        "The provided expression refers to an attribute that does not exist in the item"
    );
}

#[tokio::test]
async fn legacy_expected_and_attribute_updates_work_like_expressions() {
    let (_broker, client) = start().await;
    create_table(&client, "legacy", None).await;
    client
        .put_item()
        .table_name("legacy")
        .item("pk", s("a"))
        .item("counter", n("1"))
        .expected(
            "pk",
            ExpectedAttributeValue::builder().exists(false).build(),
        )
        .send()
        .await
        .expect("Exists=false put succeeds");
    let err = client
        .put_item()
        .table_name("legacy")
        .item("pk", s("a"))
        .expected(
            "pk",
            ExpectedAttributeValue::builder().exists(false).build(),
        )
        .send()
        .await
        .expect_err("the item exists");
    assert_eq!(code(&err), "ConditionalCheckFailedException");

    let bump = |expected: &str| {
        client
            .update_item()
            .table_name("legacy")
            .key("pk", s("a"))
            .expected(
                "counter",
                ExpectedAttributeValue::builder()
                    .value(n(expected))
                    .exists(true)
                    .build(),
            )
            .attribute_updates(
                "counter",
                AttributeValueUpdate::builder()
                    .action(AttributeAction::Add)
                    .value(n("1"))
                    .build(),
            )
            .attribute_updates(
                "owner",
                AttributeValueUpdate::builder()
                    .action(AttributeAction::Put)
                    .value(s("w1"))
                    .build(),
            )
            .return_values(ReturnValue::AllNew)
            .send()
    };
    let item = bump("1")
        .await
        .expect("counter matches")
        .attributes
        .expect("ALL_NEW");
    assert_eq!(item["counter"], n("2"));
    assert_eq!(item["owner"], s("w1"));
    assert_eq!(
        code(&bump("1").await.expect_err("stale counter")),
        "ConditionalCheckFailedException"
    );

    let matched = client
        .update_item()
        .table_name("legacy")
        .key("pk", s("a"))
        .expected(
            "counter",
            ExpectedAttributeValue::builder()
                .comparison_operator(ComparisonOperator::Gt)
                .attribute_value_list(n("100"))
                .build(),
        )
        .expected(
            "owner",
            ExpectedAttributeValue::builder()
                .comparison_operator(ComparisonOperator::Eq)
                .attribute_value_list(s("w1"))
                .build(),
        )
        .conditional_operator(aws_sdk_dynamodb::types::ConditionalOperator::Or)
        .attribute_updates(
            "owner",
            AttributeValueUpdate::builder()
                .action(AttributeAction::Delete)
                .build(),
        )
        .send()
        .await;
    matched.expect("OR of a false and a true condition holds");
    assert!(
        !get(&client, "legacy", "a")
            .await
            .expect("item")
            .contains_key("owner")
    );

    let err = client
        .update_item()
        .table_name("legacy")
        .key("pk", s("a"))
        .attribute_updates(
            "counter",
            AttributeValueUpdate::builder()
                .action(AttributeAction::Add)
                .value(s("x"))
                .build(),
        )
        .send()
        .await
        .expect_err("ADD of a string");
    assert_eq!(code(&err), "ValidationException");
}

#[tokio::test]
async fn scan_pages_filters_counts_and_splits_into_segments() {
    let (_broker, client) = start().await;
    create_table(&client, "scanned", None).await;
    for i in 0..25 {
        put(
            &client,
            "scanned",
            &[("pk", s(&format!("item-{i:02}"))), ("n", n(&i.to_string()))],
        )
        .await;
    }
    let mut all = Vec::new();
    let mut start = None;
    let mut pages = 0;
    loop {
        let page = client
            .scan()
            .table_name("scanned")
            .limit(10)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("Scan succeeds");
        pages += 1;
        assert_eq!(page.scanned_count, page.count);
        all.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 25);

    let filtered = client
        .scan()
        .table_name("scanned")
        .filter_expression("n >= :ten")
        .projection_expression("pk")
        .expression_attribute_values(":ten", n("10"))
        .send()
        .await
        .expect("filtered Scan succeeds");
    assert_eq!(filtered.count, 15);
    assert_eq!(filtered.scanned_count, 25);
    assert!(
        filtered
            .items
            .unwrap_or_default()
            .iter()
            .all(|item| item.len() == 1)
    );

    let counted = client
        .scan()
        .table_name("scanned")
        .select(Select::Count)
        .scan_filter(
            "n",
            Condition::builder()
                .comparison_operator(ComparisonOperator::Lt)
                .attribute_value_list(n("5"))
                .build()
                .expect("condition"),
        )
        .send()
        .await
        .expect("COUNT Scan succeeds");
    assert_eq!(counted.count, 5);
    assert!(counted.items.is_none());

    let mut segmented = 0;
    for segment in 0..4 {
        let page = client
            .scan()
            .table_name("scanned")
            .segment(segment)
            .total_segments(4)
            .send()
            .await
            .expect("segment Scan succeeds");
        segmented += page.count;
    }
    assert_eq!(segmented, 25, "segments partition the table");

    let err = client
        .scan()
        .table_name("scanned")
        .segment(4)
        .total_segments(4)
        .send()
        .await
        .expect_err("segment out of range");
    assert_eq!(code(&err), "ValidationException");
}

#[tokio::test]
async fn query_uses_range_conditions_direction_and_paging() {
    let (_broker, client) = start().await;
    create_table(&client, "events", Some(ScalarAttributeType::N)).await;
    for i in 0..10 {
        put(
            &client,
            "events",
            &[
                ("pk", s("stream")),
                ("sk", n(&i.to_string())),
                ("odd", AttributeValue::Bool(i % 2 == 1)),
            ],
        )
        .await;
        put(
            &client,
            "events",
            &[("pk", s("other")), ("sk", n(&i.to_string()))],
        )
        .await;
    }
    let query = |condition: &str| {
        client
            .query()
            .table_name("events")
            .key_condition_expression(condition)
            .expression_attribute_values(":p", s("stream"))
    };
    let sort_keys = |items: Option<Vec<HashMap<String, AttributeValue>>>| -> Vec<String> {
        items
            .unwrap_or_default()
            .iter()
            .map(|item| item["sk"].as_n().expect("number").clone())
            .collect()
    };
    let between = query("pk = :p AND sk BETWEEN :lo AND :hi")
        .expression_attribute_values(":lo", n("3"))
        .expression_attribute_values(":hi", n("5"))
        .send()
        .await
        .expect("BETWEEN query");
    assert_eq!(sort_keys(between.items), ["3", "4", "5"]);

    let backwards = query("pk = :p AND sk < :v")
        .expression_attribute_values(":v", n("3"))
        .scan_index_forward(false)
        .send()
        .await
        .expect("reverse query");
    assert_eq!(sort_keys(backwards.items), ["2", "1", "0"]);

    let filtered = query("pk = :p AND sk >= :v")
        .expression_attribute_values(":v", n("5"))
        .filter_expression("odd = :t")
        .expression_attribute_values(":t", AttributeValue::Bool(true))
        .send()
        .await
        .expect("filtered query");
    assert_eq!(sort_keys(filtered.items), ["5", "7", "9"]);
    assert_eq!(filtered.scanned_count, 5);

    let mut collected = Vec::new();
    let mut start = None;
    loop {
        let page = query("pk = :p")
            .limit(4)
            .scan_index_forward(false)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("paged query");
        collected.extend(sort_keys(page.items));
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    assert_eq!(
        collected,
        ["9", "8", "7", "6", "5", "4", "3", "2", "1", "0"]
    );

    let legacy = client
        .query()
        .table_name("events")
        .key_conditions(
            "pk",
            Condition::builder()
                .comparison_operator(ComparisonOperator::Eq)
                .attribute_value_list(s("other"))
                .build()
                .expect("condition"),
        )
        .key_conditions(
            "sk",
            Condition::builder()
                .comparison_operator(ComparisonOperator::Ge)
                .attribute_value_list(n("8"))
                .build()
                .expect("condition"),
        )
        .send()
        .await
        .expect("KeyConditions query");
    assert_eq!(sort_keys(legacy.items), ["8", "9"]);

    let err = client
        .query()
        .table_name("events")
        .key_condition_expression("sk = :v")
        .expression_attribute_values(":v", n("1"))
        .send()
        .await
        .expect_err("no hash condition");
    assert!(message(&err).contains("Query condition missed key schema element: pk"));
    let err = query("pk = :p OR sk = :v")
        .expression_attribute_values(":v", n("1"))
        .send()
        .await
        .expect_err("OR in a key condition");
    assert!(message(&err).contains("Invalid operator used in KeyConditionExpression: OR"));
}

#[tokio::test]
async fn query_on_string_range_key_supports_begins_with() {
    let (_broker, client) = start().await;
    create_table(&client, "paths", Some(ScalarAttributeType::S)).await;
    for sk in ["a/1", "a/2", "ab", "b/1"] {
        put(&client, "paths", &[("pk", s("p")), ("sk", s(sk))]).await;
    }
    let page = client
        .query()
        .table_name("paths")
        .key_condition_expression("pk = :p AND begins_with(sk, :prefix)")
        .expression_attribute_values(":p", s("p"))
        .expression_attribute_values(":prefix", s("a/"))
        .send()
        .await
        .expect("begins_with query");
    assert_eq!(page.count, 2);
}

#[tokio::test]
async fn batch_get_and_write_apply_every_request() {
    let (_broker, client) = start().await;
    create_table(&client, "batch", None).await;
    let puts: Vec<WriteRequest> = (0..25)
        .map(|i| {
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .item("pk", s(&format!("k{i}")))
                        .item("v", n(&i.to_string()))
                        .build()
                        .expect("put request"),
                )
                .build()
        })
        .collect();
    let written = client
        .batch_write_item()
        .request_items("batch", puts)
        .send()
        .await
        .expect("BatchWriteItem succeeds");
    assert!(written.unprocessed_items.unwrap_or_default().is_empty());

    let keys = KeysAndAttributes::builder()
        .keys(HashMap::from([("pk".to_owned(), s("k1"))]))
        .keys(HashMap::from([("pk".to_owned(), s("k2"))]))
        .keys(HashMap::from([("pk".to_owned(), s("absent"))]))
        .projection_expression("v")
        .build()
        .expect("keys");
    let got = client
        .batch_get_item()
        .request_items("batch", keys)
        .send()
        .await
        .expect("BatchGetItem succeeds");
    let items = &got.responses.expect("responses")["batch"];
    assert_eq!(items.len(), 2);
    assert!(
        items
            .iter()
            .all(|item| item.len() == 1 && item.contains_key("v"))
    );
    assert!(got.unprocessed_keys.unwrap_or_default().is_empty());

    let delete = |key: &str| {
        WriteRequest::builder()
            .delete_request(
                DeleteRequest::builder()
                    .key("pk", s(key))
                    .build()
                    .expect("delete"),
            )
            .build()
    };
    let err = client
        .batch_write_item()
        .request_items("batch", vec![delete("k1"), delete("k1")])
        .send()
        .await
        .expect_err("duplicate keys");
    assert_eq!(
        message(&err),
        "Provided list of item keys contains duplicates"
    );
    assert!(
        get(&client, "batch", "k1").await.is_some(),
        "a refused batch writes nothing"
    );

    let too_many: Vec<WriteRequest> = (0..26).map(|i| delete(&format!("k{i}"))).collect();
    let err = client
        .batch_write_item()
        .request_items("batch", too_many)
        .send()
        .await
        .expect_err("26 writes");
    assert_eq!(code(&err), "ValidationException");

    client
        .batch_write_item()
        .request_items("batch", vec![delete("k1"), delete("k2")])
        .send()
        .await
        .expect("deletes succeed");
    assert!(get(&client, "batch", "k1").await.is_none());
}

#[tokio::test]
async fn time_to_live_and_continuous_backups_are_recorded() {
    let (_broker, client) = start().await;
    create_table(&client, "settings", None).await;
    let ttl = client
        .describe_time_to_live()
        .table_name("settings")
        .send()
        .await
        .expect("DescribeTimeToLive succeeds");
    assert_eq!(
        ttl.time_to_live_description
            .and_then(|d| d.time_to_live_status)
            .map(|s| s.as_str().to_owned()),
        Some("DISABLED".to_owned())
    );
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name("expiresAt")
        .build()
        .expect("spec");
    client
        .update_time_to_live()
        .table_name("settings")
        .time_to_live_specification(spec.clone())
        .send()
        .await
        .expect("enable TTL");
    let err = client
        .update_time_to_live()
        .table_name("settings")
        .time_to_live_specification(spec)
        .send()
        .await
        .expect_err("already enabled");
    assert_eq!(message(&err), "TimeToLive is already enabled");

    client
        .update_continuous_backups()
        .table_name("settings")
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .expect("spec"),
        )
        .send()
        .await
        .expect("enable PITR");
    let backups = client
        .describe_continuous_backups()
        .table_name("settings")
        .send()
        .await
        .expect("DescribeContinuousBackups succeeds")
        .continuous_backups_description
        .expect("description");
    let pitr = backups.point_in_time_recovery_description.expect("pitr");
    assert_eq!(
        pitr.point_in_time_recovery_status
            .map(|s| s.as_str().to_owned()),
        Some("ENABLED".to_owned())
    );
    let err = client
        .describe_continuous_backups()
        .table_name("nope-table")
        .send()
        .await
        .expect_err("missing table");
    assert_eq!(code(&err), "TableNotFoundException");
}

#[tokio::test]
async fn global_secondary_index_created_with_the_table_is_queryable() {
    let (_broker, client) = start().await;
    client
        .create_table()
        .table_name("people")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(definition("pk", ScalarAttributeType::S))
        .attribute_definitions(definition("city", ScalarAttributeType::S))
        .attribute_definitions(definition("age", ScalarAttributeType::N))
        .key_schema(key("pk", KeyType::Hash))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("byCity")
                .key_schema(key("city", KeyType::Hash))
                .key_schema(key("age", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .expect("gsi"),
        )
        .send()
        .await
        .expect("CreateTable with a GSI succeeds");
    for (pk, city, age) in [
        ("ann", "Oslo", "40"),
        ("bob", "Oslo", "31"),
        ("cid", "Rome", "22"),
    ] {
        put(
            &client,
            "people",
            &[
                ("pk", s(pk)),
                ("city", s(city)),
                ("age", n(age)),
                ("extra", s("x")),
            ],
        )
        .await;
    }
    put(
        &client,
        "people",
        &[("pk", s("dan")), ("extra", s("no index keys"))],
    )
    .await;
    let page = client
        .query()
        .table_name("people")
        .index_name("byCity")
        .key_condition_expression("city = :c")
        .expression_attribute_values(":c", s("Oslo"))
        .send()
        .await
        .expect("GSI query succeeds");
    let items = page.items.unwrap_or_default();
    assert_eq!(
        items
            .iter()
            .map(|i| i["pk"].as_s().expect("s").as_str())
            .collect::<Vec<_>>(),
        ["bob", "ann"]
    );
    assert!(
        items.iter().all(|i| !i.contains_key("extra")),
        "KEYS_ONLY projects keys only"
    );

    let scanned = client
        .scan()
        .table_name("people")
        .index_name("byCity")
        .send()
        .await
        .expect("GSI scan succeeds");
    assert_eq!(
        scanned.count, 3,
        "items without the index keys are not in the index"
    );

    let err = client
        .put_item()
        .table_name("people")
        .item("pk", s("eve"))
        .item("age", s("old"))
        .send()
        .await
        .expect_err("index key type mismatch");
    assert!(
        message(&err)
            .contains("Type mismatch for Index Key age Expected: N Actual: S IndexName: byCity")
    );
    let err = client
        .query()
        .table_name("people")
        .index_name("byCity")
        .key_condition_expression("city = :c")
        .expression_attribute_values(":c", s("Oslo"))
        .consistent_read(true)
        .send()
        .await
        .expect_err("consistent GSI read");
    assert_eq!(code(&err), "ValidationException");
}

#[tokio::test]
async fn indexes_added_by_update_table_backfill_and_activate_after_the_delay() {
    let clock = ShiftableClock::new();
    let broker = LocalBroker::builder()
        .state_transition_delay(Duration::from_secs(10))
        .clock(clock.clone())
        .start()
        .await
        .expect("broker starts");
    let client = dynamodb_client(&broker.endpoint());
    create_table(&client, "delayed", None).await;
    let status = |client: &Client| {
        let client = client.clone();
        async move {
            client
                .describe_table()
                .table_name("delayed")
                .send()
                .await
                .expect("DescribeTable succeeds")
                .table
                .expect("table")
        }
    };
    assert_eq!(
        status(&client).await.table_status,
        Some(TableStatus::Creating)
    );
    let err = client
        .put_item()
        .table_name("delayed")
        .item("pk", s("a"))
        .send()
        .await
        .expect_err("a CREATING table takes no writes");
    assert_eq!(code(&err), "ResourceNotFoundException");
    clock.advance(Duration::from_secs(11));
    assert_eq!(
        status(&client).await.table_status,
        Some(TableStatus::Active)
    );
    put(&client, "delayed", &[("pk", s("a")), ("owner", s("w1"))]).await;

    client
        .update_table()
        .table_name("delayed")
        .attribute_definitions(definition("owner", ScalarAttributeType::S))
        .attribute_definitions(definition("pk", ScalarAttributeType::S))
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder()
                .create(
                    CreateGlobalSecondaryIndexAction::builder()
                        .index_name("byOwner")
                        .key_schema(key("owner", KeyType::Hash))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .expect("create action"),
                )
                .build(),
        )
        .send()
        .await
        .expect("UpdateTable adds the index");
    let index = &status(&client)
        .await
        .global_secondary_indexes
        .expect("indexes")[0];
    assert_eq!(index.index_status, Some(IndexStatus::Creating));
    let err = client
        .query()
        .table_name("delayed")
        .index_name("byOwner")
        .key_condition_expression("#o = :o")
        .expression_attribute_names("#o", "owner")
        .expression_attribute_values(":o", s("w1"))
        .send()
        .await
        .expect_err("the index is backfilling");
    assert_eq!(code(&err), "ValidationException");

    clock.advance(Duration::from_secs(11));
    let index = &status(&client)
        .await
        .global_secondary_indexes
        .expect("indexes")[0];
    assert_eq!(index.index_status, Some(IndexStatus::Active));
    assert_eq!(index.item_count, Some(1), "existing items are backfilled");
    let page = client
        .query()
        .table_name("delayed")
        .index_name("byOwner")
        .key_condition_expression("#o = :o")
        .expression_attribute_names("#o", "owner")
        .expression_attribute_values(":o", s("w1"))
        .send()
        .await
        .expect("the index is queryable");
    assert_eq!(page.count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conditional_increments_never_lose_an_update() {
    let (_broker, client) = start().await;
    create_table(&client, "counter", None).await;
    put(&client, "counter", &[("pk", s("c")), ("c", n("0"))]).await;
    let successes = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = client.clone();
        let successes = successes.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..15 {
                loop {
                    let current = get(&client, "counter", "c").await.expect("item")["c"]
                        .as_n()
                        .expect("number")
                        .parse::<u64>()
                        .expect("integer");
                    let result = client
                        .update_item()
                        .table_name("counter")
                        .key("pk", s("c"))
                        .update_expression("SET c = :new")
                        .condition_expression("c = :old")
                        .expression_attribute_values(":new", n(&(current + 1).to_string()))
                        .expression_attribute_values(":old", n(&current.to_string()))
                        .send()
                        .await;
                    match result {
                        Ok(_) => {
                            successes.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        Err(err) if code(&err) == "ConditionalCheckFailedException" => continue,
                        Err(err) => panic!("unexpected error: {err:?}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task finishes");
    }
    let final_value = get(&client, "counter", "c").await.expect("item")["c"].clone();
    assert_eq!(successes.load(Ordering::SeqCst), 120);
    assert_eq!(final_value, n("120"));
}

#[tokio::test]
async fn failed_conditions_return_the_current_item_when_asked() {
    use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
    let (_broker, client) = start().await;
    create_table(&client, "leases", None).await;
    put(
        &client,
        "leases",
        &[("pk", s("shard-0")), ("leaseCounter", n("7"))],
    )
    .await;
    let err = client
        .put_item()
        .table_name("leases")
        .item("pk", s("shard-0"))
        .item("leaseCounter", n("8"))
        .condition_expression("leaseCounter = :expected")
        .expression_attribute_values(":expected", n("6"))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    let aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
        failed,
    ) = err
    else {
        panic!("expected ConditionalCheckFailedException, got {err:?}");
    };
    let item = failed
        .item
        .expect("ALL_OLD returns the item that failed the condition");
    assert_eq!(item.get("leaseCounter"), Some(&n("7")));
}
