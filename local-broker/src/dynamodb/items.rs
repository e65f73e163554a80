//! Item operations: GetItem, PutItem, UpdateItem, DeleteItem, BatchGetItem, BatchWriteItem.
//!
//! Each request is fully validated and its expressions parsed before the table lock is taken;
//! under the lock the condition is evaluated against the current item and the write either
//! happens completely or not at all.

use super::api::{
    BatchGetItemInput, BatchGetItemOutput, BatchWriteItemInput, BatchWriteItemOutput,
    ConditionMembers, ConsumedCapacity, DeleteItemInput, Empty, GetItemInput, GetItemOutput,
    NameMap, PutItemInput, UpdateItemInput, WriteItemOutput,
};
use super::expression::ast::{Condition, Path, Update};
use super::expression::eval::{evaluate, project};
use super::expression::update::{UpdateError, apply};
use super::expression::{self, Dialect, Placeholders};
use super::legacy::{self, check_conditional_operator};
use super::table::PrimaryKey;
use super::value::{Item, RawItem, item_size, validate_item};
use super::{DynamoDb, checked_table_name, read, validate_table_name, write};
use crate::http::error::{ApiError, ApiResult};
use crate::http::validation::Validator;
use std::collections::{BTreeMap, HashSet};

/// Most keys one BatchGetItem may ask for.
const MAX_BATCH_GET_KEYS: usize = 100;
/// Most writes one BatchWriteItem may carry.
const MAX_BATCH_WRITES: usize = 25;

const RETURN_VALUES: [&str; 5] = ["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"];

/// Validates the enum members every item operation may carry.
pub(super) fn check_common_enums(
    validator: &mut Validator,
    return_consumed_capacity: &Option<String>,
    return_item_collection_metrics: &Option<String>,
) {
    if let Some(value) = return_consumed_capacity {
        validator.one_of(
            value,
            "returnConsumedCapacity",
            &["INDEXES", "TOTAL", "NONE"],
        );
    }
    if let Some(value) = return_item_collection_metrics {
        validator.one_of(value, "returnItemCollectionMetrics", &["SIZE", "NONE"]);
    }
}

fn check_write_enums(
    validator: &mut Validator,
    return_values: &Option<String>,
    on_condition_failure: &Option<String>,
    condition: &ConditionMembers,
) {
    if let Some(value) = return_values {
        validator.one_of(value, "returnValues", &RETURN_VALUES);
    }
    if let Some(value) = on_condition_failure {
        validator.one_of(
            value,
            "returnValuesOnConditionCheckFailure",
            &["ALL_OLD", "NONE"],
        );
    }
    check_conditional_operator(condition.conditional_operator.as_deref(), validator);
}

/// `PutItem` and `DeleteItem` return at most the old item.
fn check_old_only(return_values: &Option<String>) -> ApiResult<()> {
    match return_values.as_deref() {
        None | Some("NONE") | Some("ALL_OLD") => Ok(()),
        Some(_) => Err(ApiError::validation(
            "ReturnValues can only be ALL_OLD or NONE",
        )),
    }
}

/// A write's condition and update, parsed from whichever dialect the request speaks.
struct WritePlan {
    condition: Option<Condition>,
    update: Option<Update>,
    /// The update came from `AttributeUpdates`, which words type errors differently.
    legacy_update: bool,
}

impl WritePlan {
    fn parse(
        members: ConditionMembers,
        update_expression: Option<String>,
        attribute_updates: Option<BTreeMap<String, legacy::RawAttributeUpdate>>,
    ) -> ApiResult<Self> {
        let is_update = update_expression.is_some() || attribute_updates.is_some();
        let mut expressions = Vec::new();
        if update_expression.is_some() {
            expressions.push("UpdateExpression");
        }
        if members.condition_expression.is_some() {
            expressions.push("ConditionExpression");
        }
        let mut legacy_members = Vec::new();
        if attribute_updates.is_some() {
            legacy_members.push("AttributeUpdates");
        }
        if members.expected.is_some() {
            legacy_members.push("Expected");
        }
        if members.conditional_operator.is_some() {
            legacy_members.push("ConditionalOperator");
        }
        let value_users: &[&str] = if is_update {
            &["UpdateExpression", "ConditionExpression"]
        } else {
            &["ConditionExpression"]
        };
        Dialect {
            no_value_users: expressions.is_empty(),
            expressions,
            legacy: legacy_members,
            value_users,
            has_names: members.expression_attribute_names.is_some(),
            has_values: members.expression_attribute_values.is_some(),
        }
        .check()?;

        let mut placeholders = Placeholders::from_request(
            members.expression_attribute_names,
            members.expression_attribute_values,
        )?;
        let mut plan = WritePlan {
            condition: None,
            update: None,
            legacy_update: attribute_updates.is_some(),
        };
        if let Some(source) = &update_expression {
            plan.update = Some(expression::update(source, &mut placeholders)?);
        }
        if let Some(source) = &members.condition_expression {
            plan.condition = Some(expression::condition(
                "ConditionExpression",
                source,
                &mut placeholders,
            )?);
        }
        placeholders.check_all_used()?;
        if let Some(updates) = attribute_updates {
            plan.update = Some(legacy::attribute_updates(updates)?);
        }
        if let Some(expected) = members.expected {
            plan.condition = legacy::expected(expected, members.conditional_operator.as_deref())?;
        }
        Ok(plan)
    }

    /// `ConditionalCheckFailedException` unless the condition holds for `current`; with
    /// `ReturnValuesOnConditionCheckFailure: ALL_OLD` the error carries the current item.
    fn check(&self, current: Option<&Item>, return_on_failure: &Option<String>) -> ApiResult<()> {
        let Some(condition) = &self.condition else {
            return Ok(());
        };
        let empty = Item::new();
        if evaluate(condition, current.unwrap_or(&empty)) {
            return Ok(());
        }
        let err = ApiError::new(
            "ConditionalCheckFailedException",
            "The conditional request failed",
        );
        match current {
            Some(item) if return_on_failure.as_deref() == Some("ALL_OLD") => {
                let item = serde_json::to_value(item)
                    .map_err(|e| ApiError::internal(format!("item encoding failed: {e}")))?;
                Err(err.with_detail("Item", item))
            }
            _ => Err(err),
        }
    }

    /// The paths the update writes, for `UPDATED_OLD`/`UPDATED_NEW`.
    fn updated_paths(&self) -> Vec<Path> {
        self.update
            .iter()
            .flat_map(|u| u.actions.iter().map(|a| a.path().clone()))
            .collect()
    }
}

/// Consumed capacity when the client asked for it: writes cost a unit per KB, reads a unit per
/// 4 KB, halved for eventually consistent reads.
pub(super) fn consumed(
    requested: &Option<String>,
    table: &str,
    bytes: usize,
    read: Option<bool>,
) -> Option<ConsumedCapacity> {
    let wanted = matches!(requested.as_deref(), Some("TOTAL") | Some("INDEXES"));
    wanted.then(|| {
        let units = match read {
            Some(consistent) => {
                let units = bytes.div_ceil(4096).max(1) as f64;
                if consistent { units } else { units / 2.0 }
            }
            None => bytes.div_ceil(1024).max(1) as f64,
        };
        ConsumedCapacity {
            table_name: table.to_owned(),
            capacity_units: units,
        }
    })
}

/// The projection of a `GetItem`/`BatchGetItem`: `ProjectionExpression` or `AttributesToGet`.
pub(super) fn read_projection(
    projection_expression: Option<&str>,
    attributes_to_get: Option<&Vec<String>>,
    names: Option<NameMap>,
    values: Option<RawItem>,
) -> ApiResult<Option<Vec<Path>>> {
    if let Some(attributes) = attributes_to_get {
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
    let paths = match (projection_expression, attributes_to_get) {
        (Some(source), _) => Some(expression::projection(source, &mut placeholders)?),
        (None, Some(attributes)) => Some(attributes.iter().map(Path::attribute).collect()),
        (None, None) => None,
    };
    placeholders.check_all_used()?;
    Ok(paths)
}

fn key_item(raw: Option<RawItem>) -> ApiResult<Item> {
    validate_item(raw.unwrap_or_default())
}

fn check_key_updates(update: &Update, table: &super::table::Table) -> ApiResult<()> {
    for action in &update.actions {
        let path = action.path();
        if table.key_schema.contains(path.head()) {
            if path.is_top_level() {
                return Err(ApiError::validation(format!(
                    "One or more parameter values were invalid: Cannot update attribute {}. This attribute is part of the key",
                    path.head()
                )));
            }
            return Err(ApiError::validation(format!(
                "Key attributes must be scalars; list random access '[]' and map lookup '.' are not allowed: Key: {}",
                path.head()
            )));
        }
        if !path.is_top_level()
            && table
                .indexes
                .iter()
                .any(|i| i.key_schema.contains(path.head()))
        {
            return Err(ApiError::validation(format!(
                "Key attributes must be scalars; list random access '[]' and map lookup '.' are not allowed: IndexKey: {}",
                path.head()
            )));
        }
    }
    Ok(())
}

fn update_error(error: UpdateError, legacy: bool) -> ApiError {
    match error {
        UpdateError::OperandType if legacy => {
            ApiError::validation("Type mismatch for attribute to update")
        }
        other => ApiError::validation(other.to_string()),
    }
}

fn non_empty(item: Item) -> Option<Item> {
    (!item.is_empty()).then_some(item)
}

impl DynamoDb {
    /// `GetItem`.
    pub(super) fn get_item(&self, input: GetItemInput) -> ApiResult<GetItemOutput> {
        let mut validator = Validator::new();
        let name = checked_table_name(&mut validator, &input.table_name);
        validator.required(&input.key, "key");
        if let Some(attributes) = &input.attributes_to_get {
            validator.count(attributes.len(), "attributesToGet", 1, usize::MAX);
        }
        check_common_enums(&mut validator, &input.return_consumed_capacity, &None);
        validator.finish()?;
        let mut expressions = Vec::new();
        if input.projection_expression.is_some() {
            expressions.push("ProjectionExpression");
        }
        let legacy_members = if input.attributes_to_get.is_some() {
            vec!["AttributesToGet"]
        } else {
            vec![]
        };
        Dialect {
            expressions,
            legacy: legacy_members,
            value_users: &[],
            no_value_users: true,
            has_names: input.expression_attribute_names.is_some(),
            has_values: false,
        }
        .check()?;
        let key = key_item(input.key)?;
        let projection = read_projection(
            input.projection_expression.as_deref(),
            input.attributes_to_get.as_ref(),
            input.expression_attribute_names,
            None,
        )?;
        let shared = self.usable_table(&name)?;
        let table = read(&shared);
        let primary = table.key_schema.key_of_request(&key)?;
        let found = table.items.get(&primary);
        let bytes = found.map_or(0, item_size);
        let item = found.map(|item| match &projection {
            Some(paths) => project(item, paths),
            None => item.clone(),
        });
        Ok(GetItemOutput {
            item,
            consumed_capacity: consumed(
                &input.return_consumed_capacity,
                &table.name,
                bytes,
                Some(input.consistent_read.unwrap_or(false)),
            ),
        })
    }

    /// `PutItem`.
    pub(super) fn put_item(&self, input: PutItemInput) -> ApiResult<WriteItemOutput> {
        let mut validator = Validator::new();
        let name = checked_table_name(&mut validator, &input.table_name);
        validator.required(&input.item, "item");
        check_write_enums(
            &mut validator,
            &input.return_values,
            &input.return_values_on_condition_check_failure,
            &input.condition,
        );
        check_common_enums(
            &mut validator,
            &input.return_consumed_capacity,
            &input.return_item_collection_metrics,
        );
        validator.finish()?;
        check_old_only(&input.return_values)?;
        let item = validate_item(input.item.unwrap_or_default())?;
        let plan = WritePlan::parse(input.condition, None, None)?;
        let shared = self.usable_table(&name)?;
        let mut table = write(&shared);
        let key = table.check_item(&item, "Item size has exceeded the maximum allowed size")?;
        plan.check(
            table.items.get(&key),
            &input.return_values_on_condition_check_failure,
        )?;
        let bytes = item_size(&item);
        self.store
            .write_items(&table.name, &[(&key, Some(&item))])
            .map_err(super::storage_failure)?;
        let old = table.items.insert(key, item);
        Ok(WriteItemOutput {
            consumed_capacity: consumed(&input.return_consumed_capacity, &table.name, bytes, None),
            attributes: old.filter(|_| input.return_values.as_deref() == Some("ALL_OLD")),
        })
    }

    /// `UpdateItem`: creates the item when missing.
    pub(super) fn update_item(&self, input: UpdateItemInput) -> ApiResult<WriteItemOutput> {
        let mut validator = Validator::new();
        let name = checked_table_name(&mut validator, &input.table_name);
        validator.required(&input.key, "key");
        check_write_enums(
            &mut validator,
            &input.return_values,
            &input.return_values_on_condition_check_failure,
            &input.condition,
        );
        check_common_enums(
            &mut validator,
            &input.return_consumed_capacity,
            &input.return_item_collection_metrics,
        );
        validator.finish()?;
        let key = key_item(input.key)?;
        let plan = WritePlan::parse(
            input.condition,
            input.update_expression,
            input.attribute_updates,
        )?;
        let shared = self.usable_table(&name)?;
        let mut table = write(&shared);
        let primary = table.key_schema.key_of_request(&key)?;
        if let Some(update) = &plan.update {
            check_key_updates(update, &table)?;
        }
        let old = table.items.get(&primary);
        plan.check(old, &input.return_values_on_condition_check_failure)?;
        if old.is_none() && plan.update.as_ref().is_some_and(Update::only_removes) {
            return Ok(WriteItemOutput {
                attributes: None,
                consumed_capacity: consumed(&input.return_consumed_capacity, &table.name, 0, None),
            });
        }
        let mut new = old.cloned().unwrap_or_else(|| key.clone());
        if let Some(update) = &plan.update {
            apply(update, &mut new).map_err(|e| update_error(e, plan.legacy_update))?;
        }
        table.check_item(
            &new,
            "Item size to update has exceeded the maximum allowed size",
        )?;
        let paths = plan.updated_paths();
        let attributes = match input.return_values.as_deref() {
            Some("ALL_OLD") => old.cloned(),
            Some("UPDATED_OLD") => old.map(|old| project(old, &paths)).and_then(non_empty),
            Some("ALL_NEW") => Some(new.clone()),
            Some("UPDATED_NEW") => non_empty(project(&new, &paths)),
            _ => None,
        };
        let bytes = item_size(&new).max(old.map_or(0, item_size));
        let capacity = consumed(&input.return_consumed_capacity, &table.name, bytes, None);
        self.store
            .write_items(&table.name, &[(&primary, Some(&new))])
            .map_err(super::storage_failure)?;
        table.items.insert(primary, new);
        Ok(WriteItemOutput {
            attributes,
            consumed_capacity: capacity,
        })
    }

    /// `DeleteItem`.
    pub(super) fn delete_item(&self, input: DeleteItemInput) -> ApiResult<WriteItemOutput> {
        let mut validator = Validator::new();
        let name = checked_table_name(&mut validator, &input.table_name);
        validator.required(&input.key, "key");
        check_write_enums(
            &mut validator,
            &input.return_values,
            &input.return_values_on_condition_check_failure,
            &input.condition,
        );
        check_common_enums(
            &mut validator,
            &input.return_consumed_capacity,
            &input.return_item_collection_metrics,
        );
        validator.finish()?;
        check_old_only(&input.return_values)?;
        let key = key_item(input.key)?;
        let plan = WritePlan::parse(input.condition, None, None)?;
        let shared = self.usable_table(&name)?;
        let mut table = write(&shared);
        let primary = table.key_schema.key_of_request(&key)?;
        plan.check(
            table.items.get(&primary),
            &input.return_values_on_condition_check_failure,
        )?;
        self.store
            .write_items(&table.name, &[(&primary, None)])
            .map_err(super::storage_failure)?;
        let old = table.items.remove(&primary);
        Ok(WriteItemOutput {
            consumed_capacity: consumed(
                &input.return_consumed_capacity,
                &table.name,
                old.as_ref().map_or(0, item_size),
                None,
            ),
            attributes: old.filter(|_| input.return_values.as_deref() == Some("ALL_OLD")),
        })
    }

    /// `BatchGetItem`: every key is processed, so `UnprocessedKeys` is always empty.
    pub(super) fn batch_get_item(&self, input: BatchGetItemInput) -> ApiResult<BatchGetItemOutput> {
        let mut validator = Validator::new();
        if let Some(requests) = validator.required(&input.request_items, "requestItems") {
            validator.count(requests.len(), "requestItems", 1, 100);
            for (table, request) in requests {
                let member = format!("requestItems.{table}.member");
                validate_table_name(&mut validator, table, "requestItems");
                if let Some(keys) = validator.required(&request.keys, &format!("{member}.keys")) {
                    validator.count(keys.len(), &format!("{member}.keys"), 1, 100);
                }
            }
        }
        check_common_enums(&mut validator, &input.return_consumed_capacity, &None);
        validator.finish()?;

        let mut plans = Vec::new();
        let mut total = 0;
        for (table_name, request) in input.request_items.unwrap_or_default() {
            Dialect {
                expressions: request
                    .projection_expression
                    .iter()
                    .map(|_| "ProjectionExpression")
                    .collect(),
                legacy: request
                    .attributes_to_get
                    .iter()
                    .map(|_| "AttributesToGet")
                    .collect(),
                value_users: &[],
                no_value_users: true,
                has_names: request.expression_attribute_names.is_some(),
                has_values: false,
            }
            .check()?;
            let projection = read_projection(
                request.projection_expression.as_deref(),
                request.attributes_to_get.as_ref(),
                request.expression_attribute_names,
                None,
            )?;
            let mut keys = Vec::new();
            for raw in request.keys.unwrap_or_default() {
                keys.push(validate_item(raw)?);
                total += 1;
                if total > MAX_BATCH_GET_KEYS {
                    return Err(ApiError::validation(
                        "Too many items requested for the BatchGetItem call",
                    ));
                }
            }
            plans.push((
                table_name,
                keys,
                projection,
                request.consistent_read.unwrap_or(false),
            ));
        }

        let mut responses = BTreeMap::new();
        let mut capacity = Vec::new();
        for (table_name, keys, projection, consistent) in plans {
            let shared = self.usable_table(&table_name)?;
            let table = read(&shared);
            let mut primaries: Vec<PrimaryKey> = Vec::new();
            for key in &keys {
                let primary = table.key_schema.key_of_request(key)?;
                if primaries.contains(&primary) {
                    return Err(ApiError::validation(
                        "Provided list of item keys contains duplicates",
                    ));
                }
                primaries.push(primary);
            }
            let mut bytes = 0;
            let items: Vec<Item> = primaries
                .iter()
                .filter_map(|primary| table.items.get(primary))
                .map(|item| {
                    bytes += item_size(item);
                    match &projection {
                        Some(paths) => project(item, paths),
                        None => item.clone(),
                    }
                })
                .collect();
            capacity.extend(consumed(
                &input.return_consumed_capacity,
                &table.name,
                bytes,
                Some(consistent),
            ));
            responses.insert(table_name, items);
        }
        Ok(BatchGetItemOutput {
            responses,
            unprocessed_keys: BTreeMap::new(),
            consumed_capacity: (!capacity.is_empty()).then_some(capacity),
        })
    }

    /// `BatchWriteItem`: validated as a whole first, then every write is applied, so
    /// `UnprocessedItems` is always empty.
    pub(super) fn batch_write_item(
        &self,
        input: BatchWriteItemInput,
    ) -> ApiResult<BatchWriteItemOutput> {
        let mut validator = Validator::new();
        if let Some(requests) = validator.required(&input.request_items, "requestItems") {
            validator.count(requests.len(), "requestItems", 1, MAX_BATCH_WRITES);
            for (table, writes) in requests {
                validate_table_name(&mut validator, table, "requestItems");
                validator.count(
                    writes.len(),
                    &format!("requestItems.{table}.member"),
                    1,
                    MAX_BATCH_WRITES,
                );
            }
        }
        check_common_enums(
            &mut validator,
            &input.return_consumed_capacity,
            &input.return_item_collection_metrics,
        );
        validator.finish()?;

        enum Write {
            Put(Item),
            Delete(Item),
        }
        let mut batches = Vec::new();
        let mut total = 0;
        for (table_name, requests) in input.request_items.unwrap_or_default() {
            let mut writes = Vec::new();
            for request in requests {
                total += 1;
                match (request.put_request, request.delete_request) {
                    (Some(put), None) => {
                        writes.push(Write::Put(validate_item(put.item.unwrap_or_default())?))
                    }
                    (None, Some(delete)) => writes.push(Write::Delete(key_item(delete.key)?)),
                    _ => {
                        return Err(ApiError::validation(
                            "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
                        ));
                    }
                }
            }
            batches.push((table_name, writes));
        }
        if total > MAX_BATCH_WRITES {
            return Err(ApiError::validation(
                "Too many items requested for the BatchWriteItem call",
            ));
        }

        // Check every table and key before writing anything.
        let mut prepared = Vec::new();
        for (table_name, writes) in batches {
            let shared = self.usable_table(&table_name)?;
            let mut keyed: Vec<(PrimaryKey, Option<Item>)> = Vec::new();
            {
                let table = read(&shared);
                for write in writes {
                    let (key, item) = match write {
                        Write::Put(item) => (
                            table.check_item(
                                &item,
                                "Item size has exceeded the maximum allowed size",
                            )?,
                            Some(item),
                        ),
                        Write::Delete(key) => (table.key_schema.key_of_request(&key)?, None),
                    };
                    if keyed.iter().any(|(k, _)| *k == key) {
                        return Err(ApiError::validation(
                            "Provided list of item keys contains duplicates",
                        ));
                    }
                    keyed.push((key, item));
                }
            }
            prepared.push((shared, keyed));
        }
        let mut capacity = Vec::new();
        for (shared, keyed) in prepared {
            let mut table = write(&shared);
            let journal: Vec<_> = keyed
                .iter()
                .map(|(key, item)| (key, item.as_ref()))
                .collect();
            self.store
                .write_items(&table.name, &journal)
                .map_err(super::storage_failure)?;
            let mut bytes = 0;
            for (key, item) in keyed {
                match item {
                    Some(item) => {
                        bytes += item_size(&item);
                        table.items.insert(key, item);
                    }
                    None => {
                        bytes += table.items.remove(&key).as_ref().map_or(0, item_size);
                    }
                }
            }
            capacity.extend(consumed(
                &input.return_consumed_capacity,
                &table.name,
                bytes,
                None,
            ));
        }
        Ok(BatchWriteItemOutput {
            unprocessed_items: BTreeMap::<String, Empty>::new(),
            consumed_capacity: (!capacity.is_empty()).then_some(capacity),
        })
    }
}
