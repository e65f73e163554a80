//! Scan and Query over a table or one of its secondary indexes: key conditions, filters,
//! projections, `Select`, paging (`Limit`, 1 MB pages, `ExclusiveStartKey`/`LastEvaluatedKey`)
//! and parallel-scan segments.

use super::api::{QueryInput, ReadManyOutput, ScanInput};
use super::expression::ast::{Condition, Operand, Path};
use super::expression::eval::{evaluate, project};
use super::expression::{self, Dialect, KeyPredicate, Placeholders};
use super::items::{check_common_enums, consumed};
use super::legacy::{self, RawCondition, check_conditional_operator};
use super::table::{Index, KeySchema, KeyValue, PrimaryKey, Table, segment_of};
use super::value::{AttributeValue, Item, RawItem, item_size, validate_item};
use super::{DynamoDb, checked_table_name, read, validate_table_name};
use crate::http::error::{ApiError, ApiResult};
use crate::http::validation::Validator;
use std::collections::{BTreeMap, HashSet};

/// Most bytes of items one page evaluates.
const MAX_PAGE_BYTES: usize = 1024 * 1024;

const SELECT_VALUES: [&str; 4] = [
    "ALL_ATTRIBUTES",
    "ALL_PROJECTED_ATTRIBUTES",
    "SPECIFIC_ATTRIBUTES",
    "COUNT",
];

/// The members Scan and Query share, after validation.
struct ReadRequest {
    table_name: String,
    index_name: Option<String>,
    select: Option<String>,
    attributes_to_get: Option<Vec<String>>,
    limit: Option<usize>,
    consistent_read: bool,
    exclusive_start_key: Option<RawItem>,
    projection_expression: Option<String>,
    filter_expression: Option<String>,
    legacy_filter: Option<BTreeMap<String, RawCondition>>,
    conditional_operator: Option<String>,
    return_consumed_capacity: Option<String>,
}

/// What a read does once parsed.
struct ReadPlan {
    filter: Option<Condition>,
    projection: Option<Vec<Path>>,
    count_only: bool,
    start: Option<Item>,
}

/// Which part of the key space a read walks.
struct Range<'a> {
    /// The query's partition value and sort-key predicate; `None` for scans.
    query: Option<(AttributeValue, Option<(String, KeyPredicate)>)>,
    forward: bool,
    segment: Option<(u64, u64)>,
    index: Option<&'a Index>,
}

fn check_read_members(validator: &mut Validator, request: &ReadRequest, limit: Option<i64>) {
    if let Some(index) = &request.index_name {
        validate_table_name(validator, index, "indexName");
    }
    if let Some(limit) = limit {
        validator.range(limit, "limit", 1, i64::from(i32::MAX));
    }
    if let Some(select) = &request.select {
        validator.one_of(select, "select", &SELECT_VALUES);
    }
    if let Some(attributes) = &request.attributes_to_get {
        validator.count(attributes.len(), "attributesToGet", 1, usize::MAX);
    }
    check_conditional_operator(request.conditional_operator.as_deref(), validator);
    check_common_enums(validator, &request.return_consumed_capacity, &None);
}

fn paths_in(condition: &Condition, out: &mut Vec<String>) {
    let mut operand = |operand: &Operand| match operand {
        Operand::Path(path) | Operand::Size(path) => out.push(path.head().to_owned()),
        Operand::Value(_) => {}
    };
    match condition {
        Condition::Compare(a, _, b) | Condition::BeginsWith(a, b) | Condition::Contains(a, b) => {
            operand(a);
            operand(b);
        }
        Condition::Between(a, b, c) => {
            operand(a);
            operand(b);
            operand(c);
        }
        Condition::In(a, options) => {
            operand(a);
            options.iter().for_each(operand);
        }
        Condition::AttributeExists(path) | Condition::AttributeNotExists(path) => {
            out.push(path.head().to_owned())
        }
        Condition::AttributeType(path, _) => out.push(path.head().to_owned()),
        Condition::And(a, b) | Condition::Or(a, b) => {
            paths_in(a, out);
            paths_in(b, out);
        }
        Condition::Not(inner) => paths_in(inner, out),
    }
}

impl ReadRequest {
    /// Parses projection, filter and (for Query) the key condition, checking the dialect rules.
    /// `key_condition` is Query's `KeyConditionExpression`; `extra_legacy` names its
    /// `KeyConditions` member when present.
    fn plan(
        &mut self,
        names: Option<BTreeMap<String, String>>,
        values: Option<RawItem>,
        key_condition: Option<&str>,
        extra_legacy: Option<&str>,
    ) -> ApiResult<(ReadPlan, Option<Condition>)> {
        let mut expressions = Vec::new();
        if self.projection_expression.is_some() {
            expressions.push("ProjectionExpression");
        }
        if self.filter_expression.is_some() {
            expressions.push("FilterExpression");
        }
        if key_condition.is_some() {
            expressions.push("KeyConditionExpression");
        }
        let mut legacy_members = Vec::new();
        if self.attributes_to_get.is_some() {
            legacy_members.push("AttributesToGet");
        }
        let filter_member = if extra_legacy.is_some() || key_condition.is_some() {
            "QueryFilter"
        } else {
            "ScanFilter"
        };
        if self.legacy_filter.is_some() {
            legacy_members.push(filter_member);
        }
        if self.conditional_operator.is_some() {
            legacy_members.push("ConditionalOperator");
        }
        // KeyConditions may accompany expressions as long as KeyConditionExpression is absent.
        if let Some(member) = extra_legacy
            && key_condition.is_some()
        {
            legacy_members.push(member);
        }
        let value_users: &[&str] = if filter_member == "QueryFilter" {
            &["FilterExpression", "KeyConditionExpression"]
        } else {
            &["FilterExpression"]
        };
        Dialect {
            no_value_users: self.filter_expression.is_none() && key_condition.is_none(),
            expressions,
            legacy: legacy_members,
            value_users,
            has_names: names.is_some(),
            has_values: values.is_some(),
        }
        .check()?;
        if let Some(attributes) = &self.attributes_to_get {
            let mut seen = HashSet::new();
            for name in attributes {
                if !seen.insert(name) {
                    return Err(ApiError::validation(format!(
                        "One or more parameter values were invalid: Duplicate value in attribute name: {name}"
                    )));
                }
            }
        }

        let mut placeholders = Placeholders::from_request(names, values)?;
        let key = match key_condition {
            Some(source) => Some(expression::condition(
                "KeyConditionExpression",
                source,
                &mut placeholders,
            )?),
            None => None,
        };
        let mut filter = match &self.filter_expression {
            Some(source) => Some(expression::condition(
                "FilterExpression",
                source,
                &mut placeholders,
            )?),
            None => None,
        };
        let mut projection = match &self.projection_expression {
            Some(source) => Some(expression::projection(source, &mut placeholders)?),
            None => None,
        };
        placeholders.check_all_used()?;
        if let Some(conditions) = self.legacy_filter.take() {
            let member = if filter_member == "QueryFilter" {
                "queryFilter"
            } else {
                "scanFilter"
            };
            filter = legacy::filter(conditions, member, self.conditional_operator.as_deref())?;
        }
        if let Some(attributes) = &self.attributes_to_get {
            projection = Some(attributes.iter().map(Path::attribute).collect());
        }
        match (self.select.as_deref(), &projection) {
            (Some("SPECIFIC_ATTRIBUTES"), None) => {
                return Err(ApiError::validation(
                    "One or more parameter values were invalid: Must specify the AttributesToGet or ProjectionExpression when choosing to get SPECIFIC_ATTRIBUTES",
                ));
            }
            (Some(select), Some(_)) if select != "SPECIFIC_ATTRIBUTES" => {
                let member = if self.attributes_to_get.is_some() {
                    "AttributesToGet"
                } else {
                    "ProjectionExpression"
                };
                return Err(ApiError::validation(format!(
                    "One or more parameter values were invalid: Cannot specify the {member} when choosing to get {select}"
                )));
            }
            _ => {}
        }
        if self.select.as_deref() == Some("ALL_PROJECTED_ATTRIBUTES") && self.index_name.is_none() {
            return Err(ApiError::validation(
                "One or more parameter values were invalid: Select type ALL_PROJECTED_ATTRIBUTES is not supported for a table without an index",
            ));
        }
        let start = self
            .exclusive_start_key
            .take()
            .map(validate_item)
            .transpose()?;
        Ok((
            ReadPlan {
                filter,
                projection,
                count_only: self.select.as_deref() == Some("COUNT"),
                start,
            },
            key,
        ))
    }

    /// The index the read targets, checked for readability.
    fn index<'t>(&self, table: &'t Table, now: i64) -> ApiResult<Option<&'t Index>> {
        let Some(name) = &self.index_name else {
            return Ok(None);
        };
        let index = table.index(name).ok_or_else(|| {
            ApiError::validation(format!(
                "The table does not have the specified index: {name}"
            ))
        })?;
        if !index.local && index.status(now) != "ACTIVE" {
            return Err(ApiError::validation(format!(
                "Cannot read from backfilling global secondary index: {name}"
            )));
        }
        if !index.local && self.consistent_read {
            return Err(ApiError::validation(
                "Consistent reads are not supported on global secondary indexes",
            ));
        }
        if self.select.as_deref() == Some("ALL_ATTRIBUTES")
            && !index.local
            && index.projection != super::table::Projection::All
        {
            return Err(ApiError::validation(format!(
                "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not supported for global secondary index {name} because its projection type is not ALL"
            )));
        }
        Ok(Some(index))
    }
}

/// The position an `ExclusiveStartKey` names: its key in the read's order, then the table key.
fn start_position(
    table: &Table,
    index: Option<&Index>,
    start: &Item,
) -> ApiResult<(PrimaryKey, PrimaryKey)> {
    let invalid = |detail: &str| {
        ApiError::validation(format!("The provided starting key is invalid{detail}"))
    };
    let Some(index) = index else {
        let key = table
            .key_schema
            .key_of_request(start)
            .map_err(|e| invalid(&format!(": {}", e.message)))?;
        return Ok((key.clone(), key));
    };
    let expected: Vec<&str> = table
        .key_schema
        .attributes()
        .chain(index.key_schema.attributes())
        .map(|a| a.name.as_str())
        .collect();
    if start.keys().any(|k| !expected.contains(&k.as_str())) {
        return Err(invalid(""));
    }
    let table_key = table
        .key_schema
        .key_of_request(&table.key_schema.key_item(start))
        .map_err(|e| invalid(&format!(": {}", e.message)))?;
    let index_key = index
        .key_schema
        .key_if_present(start)
        .ok_or_else(|| invalid(""))?;
    Ok((index_key, table_key))
}

/// The attributes `LastEvaluatedKey` carries for an item: the table key plus the index key.
fn last_key(table: &Table, index: Option<&Index>, item: &Item) -> Item {
    let mut key = table.key_schema.key_item(item);
    if let Some(index) = index {
        key.extend(index.key_schema.key_item(item));
    }
    key
}

fn execute(
    table: &Table,
    range: Range<'_>,
    plan: ReadPlan,
    request: &ReadRequest,
) -> ApiResult<ReadManyOutput> {
    let limit = request.limit;
    let entries: Vec<(PrimaryKey, &PrimaryKey, &Item)> = match range.index {
        Some(index) => table.index_entries(index),
        None => table
            .items
            .iter()
            .map(|(key, item)| (key.clone(), key, item))
            .collect(),
    };
    let start = plan
        .start
        .as_ref()
        .map(|start| start_position(table, range.index, start))
        .transpose()?;
    let key_schema: &KeySchema = range.index.map_or(&table.key_schema, |i| &i.key_schema);
    if let (Some((start_key, _)), Some((segment, total))) = (&start, range.segment)
        && segment_of(&start_key.0, total) != segment
    {
        return Err(ApiError::validation(format!(
            "The provided starting key is invalid: Invalid ExclusiveStartKey. Please use ExclusiveStartKey with correct Segment. TotalSegments: {total} Segment: {segment}"
        )));
    }
    if let (Some((start_key, _)), Some((hash, _))) = (&start, &range.query)
        && KeyValue::of(hash, key_schema.hash.ty).as_ref() != Some(&start_key.0)
    {
        return Err(ApiError::validation(
            "The provided starting key is outside query boundaries based on provided conditions",
        ));
    }

    let in_range = |entry: &&(PrimaryKey, &PrimaryKey, &Item)| {
        let (position, table_key, item) = entry;
        if let Some((segment, total)) = range.segment
            && segment_of(&position.0, total) != segment
        {
            return false;
        }
        if let Some((hash, predicate)) = &range.query {
            if item.get(&key_schema.hash.name) != Some(hash) {
                return false;
            }
            if let Some((name, predicate)) = predicate
                && !item.get(name).is_some_and(|value| predicate.matches(value))
            {
                return false;
            }
        }
        match &start {
            None => true,
            Some(start) if range.forward => (position, *table_key) > (&start.0, &start.1),
            Some(start) => (position, *table_key) < (&start.0, &start.1),
        }
    };
    let ordered: Box<dyn Iterator<Item = &(PrimaryKey, &PrimaryKey, &Item)>> = if range.forward {
        Box::new(entries.iter())
    } else {
        Box::new(entries.iter().rev())
    };

    let mut scanned = 0;
    let mut matched = 0;
    let mut bytes = 0;
    let mut items = Vec::new();
    let mut last: Option<&Item> = None;
    let mut stopped = false;
    for (_, _, item) in ordered.filter(in_range) {
        if limit.is_some_and(|limit| scanned >= limit) || bytes >= MAX_PAGE_BYTES {
            stopped = true;
            break;
        }
        scanned += 1;
        bytes += item_size(item);
        last = Some(item);
        let visible = match range.index {
            Some(index) => index.project(&table.key_schema, item),
            None => (*item).clone(),
        };
        if plan
            .filter
            .as_ref()
            .is_some_and(|filter| !evaluate(filter, &visible))
        {
            continue;
        }
        matched += 1;
        if !plan.count_only {
            items.push(match &plan.projection {
                Some(paths) => project(&visible, paths),
                None => visible,
            });
        }
    }
    // A page that ended at its limit or size says where to resume even when nothing follows.
    let full = limit.is_some_and(|limit| scanned >= limit) || bytes >= MAX_PAGE_BYTES;
    let last_evaluated_key = (stopped || full)
        .then(|| last.map(|item| last_key(table, range.index, item)))
        .flatten();
    Ok(ReadManyOutput {
        count: matched,
        scanned_count: scanned,
        items: (!plan.count_only).then_some(items),
        last_evaluated_key,
        consumed_capacity: consumed(
            &request.return_consumed_capacity,
            &table.name,
            bytes,
            Some(request.consistent_read),
        ),
    })
}

fn limit_of(limit: Option<i64>) -> Option<usize> {
    limit.and_then(|l| usize::try_from(l).ok())
}

impl DynamoDb {
    /// `Scan`.
    pub(super) fn scan(&self, input: ScanInput) -> ApiResult<ReadManyOutput> {
        let mut validator = Validator::new();
        let table_name = checked_table_name(&mut validator, &input.table_name);
        let mut request = ReadRequest {
            table_name,
            index_name: input.index_name,
            select: input.select,
            attributes_to_get: input.attributes_to_get,
            limit: limit_of(input.limit),
            consistent_read: input.consistent_read.unwrap_or(false),
            exclusive_start_key: input.exclusive_start_key,
            projection_expression: input.projection_expression,
            filter_expression: input.filter_expression,
            legacy_filter: input.scan_filter,
            conditional_operator: input.conditional_operator,
            return_consumed_capacity: input.return_consumed_capacity,
        };
        check_read_members(&mut validator, &request, input.limit);
        if let Some(segment) = input.segment {
            validator.range(segment, "segment", 0, 999_999);
        }
        if let Some(total) = input.total_segments {
            validator.range(total, "totalSegments", 1, 1_000_000);
        }
        validator.finish()?;
        let segment = match (input.segment, input.total_segments) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ApiError::validation(
                    "The TotalSegments parameter is required but was not present in the request when Segment parameter is present",
                ));
            }
            (None, Some(_)) => {
                return Err(ApiError::validation(
                    "The Segment parameter is required but was not present in the request when parameter TotalSegments is present",
                ));
            }
            (Some(segment), Some(total)) if segment >= total => {
                return Err(ApiError::validation(format!(
                    "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: {segment} is not less than TotalSegments: {total}"
                )));
            }
            (Some(segment), Some(total)) => Some((segment.unsigned_abs(), total.unsigned_abs())),
        };
        let (plan, _) = request.plan(
            input.expression_attribute_names,
            input.expression_attribute_values,
            None,
            None,
        )?;
        let shared = self.usable_table(&request.table_name)?;
        let table = read(&shared);
        let index = request.index(&table, self.now())?;
        let range = Range {
            query: None,
            forward: true,
            segment,
            index,
        };
        execute(&table, range, plan, &request)
    }

    /// `Query`.
    pub(super) fn query(&self, input: QueryInput) -> ApiResult<ReadManyOutput> {
        let mut validator = Validator::new();
        let table_name = checked_table_name(&mut validator, &input.table_name);
        let mut request = ReadRequest {
            table_name,
            index_name: input.index_name,
            select: input.select,
            attributes_to_get: input.attributes_to_get,
            limit: limit_of(input.limit),
            consistent_read: input.consistent_read.unwrap_or(false),
            exclusive_start_key: input.exclusive_start_key,
            projection_expression: input.projection_expression,
            filter_expression: input.filter_expression,
            legacy_filter: input.query_filter,
            conditional_operator: input.conditional_operator,
            return_consumed_capacity: input.return_consumed_capacity,
        };
        check_read_members(&mut validator, &request, input.limit);
        validator.finish()?;
        if input.key_conditions.is_none() && input.key_condition_expression.is_none() {
            return Err(ApiError::validation(
                "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.",
            ));
        }
        let (plan, key_condition) = request.plan(
            input.expression_attribute_names,
            input.expression_attribute_values,
            input.key_condition_expression.as_deref(),
            input.key_conditions.as_ref().map(|_| "KeyConditions"),
        )?;
        let predicates = match (key_condition, input.key_conditions) {
            (Some(condition), _) => expression::key_predicates(&condition)?,
            (None, Some(conditions)) => legacy::key_conditions(conditions)?,
            (None, None) => Vec::new(),
        };

        let shared = self.usable_table(&request.table_name)?;
        let table = read(&shared);
        let index = request.index(&table, self.now())?;
        let schema = index.map_or(&table.key_schema, |i| &i.key_schema);

        let mut hash = None;
        let mut range_predicate = None;
        for (name, predicate) in predicates {
            let attribute = schema.attributes().find(|a| a.name == name);
            let Some(attribute) = attribute else {
                let missing = if schema.range.is_none() || name == schema.hash.name {
                    "Query key condition not supported".to_owned()
                } else {
                    format!(
                        "Query condition missed key schema element: {}",
                        schema.range.as_ref().map_or(&schema.hash.name, |r| &r.name)
                    )
                };
                return Err(ApiError::validation(missing));
            };
            if predicate
                .values()
                .iter()
                .any(|v| v.type_tag() != attribute.ty.as_str())
            {
                return Err(ApiError::validation(
                    "One or more parameter values were invalid: Condition parameter type does not match schema type",
                ));
            }
            if name == schema.hash.name {
                match predicate {
                    KeyPredicate::Compare(super::expression::ast::Comparator::Eq, value) => {
                        hash = Some(value)
                    }
                    _ => return Err(ApiError::validation("Query key condition not supported")),
                }
            } else {
                range_predicate = Some((name, predicate));
            }
        }
        let Some(hash) = hash else {
            return Err(ApiError::validation(format!(
                "Query condition missed key schema element: {}",
                schema.hash.name
            )));
        };
        if let Some(filter) = &plan.filter {
            let mut heads = Vec::new();
            paths_in(filter, &mut heads);
            if let Some(key) = heads.iter().find(|h| schema.contains(h)) {
                let member = if request.filter_expression.is_some() {
                    "Filter Expression"
                } else {
                    "QueryFilter"
                };
                return Err(ApiError::validation(format!(
                    "{member} can only contain non-primary key attributes: Primary key attribute: {key}"
                )));
            }
        }
        let range = Range {
            query: Some((hash, range_predicate)),
            forward: input.scan_index_forward.unwrap_or(true),
            segment: None,
            index,
        };
        execute(&table, range, plan, &request)
    }
}
