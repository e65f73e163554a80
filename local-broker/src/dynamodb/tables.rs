//! Table operations: CreateTable, DescribeTable, UpdateTable, DeleteTable, ListTables,
//! Describe/UpdateContinuousBackups, Describe/UpdateTimeToLive, and tagging.
//!
//! This module validates requests and turns [`Table`] state into wire descriptions; item
//! storage is not its business.

use super::api::{
    AttributeDefinition, BillingModeSummary, ContinuousBackupsDescription, ContinuousBackupsOutput,
    CreateTableInput, DescribeTableOutput, DescribeTimeToLiveOutput, Empty, GlobalSecondaryIndex,
    IndexDescription, KeySchemaElement, ListTablesInput, ListTablesOutput, ListTagsOfResourceInput,
    ListTagsOfResourceOutput, PointInTimeRecoveryDescription, ProvisionedThroughput,
    ProvisionedThroughputDescription, SseDescription, TableClassSummary, TableDescription,
    TableDescriptionOutput, TableNameInput, Tag, TagResourceInput, TimeToLiveDescription,
    TimeToLiveSpecification, UntagResourceInput, UpdateContinuousBackupsInput, UpdateTableInput,
    UpdateTimeToLiveInput, UpdateTimeToLiveOutput,
};
use super::table::{
    Billing, Index, KeyAttribute, KeySchema, Projection, ScalarType, Table, Throughput, TimeToLive,
};
use super::{
    DynamoDb, SharedTable, checked_table_name, read, table_name, validate_table_name, write,
};
use crate::http::error::{ApiError, ApiResult};
use crate::http::protocol::Timestamp;
use crate::http::validation::Validator;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Most global secondary indexes per table.
const MAX_GLOBAL_INDEXES: usize = 20;
/// Most local secondary indexes per table.
const MAX_LOCAL_INDEXES: usize = 5;
/// Largest provisioned capacity DynamoDB accepts.
const MAX_CAPACITY: i64 = 1_000_000_000_000;
/// Most tags per resource.
const MAX_TAGS: usize = 50;

fn invalid(message: impl AsRef<str>) -> ApiError {
    ApiError::validation(format!(
        "One or more parameter values were invalid: {}",
        message.as_ref()
    ))
}

fn in_use(table: &Table, now: i64) -> ApiError {
    let doing = match table.status(now) {
        "CREATING" => "being created",
        "DELETING" => "being deleted",
        _ => "being updated",
    };
    ApiError::in_use(format!(
        "Attempt to change a resource which is still in use: Table is {doing}: {}",
        table.name
    ))
}

/// Validates the members of a key schema and returns `(name, key type)` pairs.
fn check_key_schema(
    validator: &mut Validator,
    schema: Option<&Vec<KeySchemaElement>>,
    member: &str,
) -> Vec<(String, String)> {
    let Some(schema) = schema else {
        return Vec::new();
    };
    validator.count(schema.len(), member, 1, 2);
    schema
        .iter()
        .enumerate()
        .filter_map(|(i, element)| {
            let prefix = format!("{member}.{}.member", i + 1);
            let name =
                validator.required(&element.attribute_name, &format!("{prefix}.attributeName"));
            if let Some(name) = name {
                validator.length(name, &format!("{prefix}.attributeName"), 1, 255);
            }
            let key_type = validator.required(&element.key_type, &format!("{prefix}.keyType"));
            if let Some(key_type) = key_type {
                validator.one_of(key_type, &format!("{prefix}.keyType"), &["HASH", "RANGE"]);
            }
            Some((name?.clone(), key_type?.clone()))
        })
        .collect()
}

fn check_throughput(
    validator: &mut Validator,
    throughput: Option<&ProvisionedThroughput>,
    member: &str,
) {
    let Some(throughput) = throughput else {
        return;
    };
    for (value, name) in [
        (&throughput.read_capacity_units, "readCapacityUnits"),
        (&throughput.write_capacity_units, "writeCapacityUnits"),
    ] {
        let field = format!("{member}.{name}");
        if let Some(value) = validator.required(value, &field) {
            validator.range(*value, &field, 1, i64::MAX);
        }
    }
}

fn throughput_of(throughput: &ProvisionedThroughput) -> ApiResult<Throughput> {
    let read = throughput.read_capacity_units.unwrap_or(0);
    let write = throughput.write_capacity_units.unwrap_or(0);
    for (value, name) in [(read, "ReadCapacityUnits"), (write, "WriteCapacityUnits")] {
        if value > MAX_CAPACITY {
            return Err(ApiError::validation(format!(
                "Given value {value} for {name} is out of bounds"
            )));
        }
    }
    Ok(Throughput { read, write })
}

fn check_index_members(validator: &mut Validator, index: &GlobalSecondaryIndex, member: &str) {
    if let Some(name) = validator.required(&index.index_name, &format!("{member}.indexName")) {
        validate_table_name(validator, name, &format!("{member}.indexName"));
    }
    validator.required(&index.key_schema, &format!("{member}.keySchema"));
    check_key_schema(
        validator,
        index.key_schema.as_ref(),
        &format!("{member}.keySchema"),
    );
    if let Some(projection) = validator.required(&index.projection, &format!("{member}.projection"))
        && let Some(kind) = &projection.projection_type
    {
        validator.one_of(
            kind,
            &format!("{member}.projection.projectionType"),
            &["ALL", "KEYS_ONLY", "INCLUDE"],
        );
    }
    check_throughput(
        validator,
        index.provisioned_throughput.as_ref(),
        &format!("{member}.provisionedThroughput"),
    );
}

/// Builds a key schema from validated `(name, key type)` pairs and the attribute definitions.
fn key_schema(
    keys: &[(String, String)],
    definitions: &[(String, ScalarType)],
) -> ApiResult<KeySchema> {
    let defined = |name: &str| definitions.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
    let names: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
    if names.iter().any(|n| defined(n).is_none()) {
        let defs: Vec<&str> = definitions.iter().map(|(n, _)| n.as_str()).collect();
        return Err(invalid(format!(
            "Some index key attributes are not defined in AttributeDefinitions. Keys: [{}], AttributeDefinitions: [{}]",
            names.join(", "),
            defs.join(", ")
        )));
    }
    if keys.len() == 2 && keys[0].0 == keys[1].0 {
        return Err(ApiError::validation(
            "Both the Hash Key and the Range Key element in the KeySchema have the same name",
        ));
    }
    let Some((hash_name, hash_type)) = keys.first() else {
        return Err(ApiError::validation(
            "Invalid KeySchema: The KeySchema is empty",
        ));
    };
    if hash_type != "HASH" {
        return Err(ApiError::validation(
            "Invalid KeySchema: The first KeySchemaElement is not a HASH key type",
        ));
    }
    let range = match keys.get(1) {
        Some((name, key_type)) if key_type == "RANGE" => Some(KeyAttribute {
            name: name.clone(),
            ty: defined(name).unwrap_or(ScalarType::S),
        }),
        Some(_) => {
            return Err(ApiError::validation(
                "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type",
            ));
        }
        None => None,
    };
    Ok(KeySchema {
        hash: KeyAttribute {
            name: hash_name.clone(),
            ty: defined(hash_name).unwrap_or(ScalarType::S),
        },
        range,
    })
}

fn projection_of(projection: Option<&super::api::Projection>) -> ApiResult<Projection> {
    let projection = projection.cloned().unwrap_or_default();
    let Some(kind) = projection.projection_type else {
        return Err(invalid("Unknown ProjectionType: null"));
    };
    if projection.non_key_attributes.is_some() && kind != "INCLUDE" {
        return Err(invalid(format!(
            "ProjectionType is {kind}, but NonKeyAttributes is specified"
        )));
    }
    Ok(match kind.as_str() {
        "ALL" => Projection::All,
        "KEYS_ONLY" => Projection::KeysOnly,
        _ => Projection::Include(projection.non_key_attributes.unwrap_or_default()),
    })
}

/// Validates and merges attribute definitions into `(name, type)` pairs.
fn definitions_of(
    validator: &mut Validator,
    definitions: Option<&Vec<AttributeDefinition>>,
) -> Vec<(String, ScalarType)> {
    definitions
        .map(|definitions| {
            definitions
                .iter()
                .enumerate()
                .filter_map(|(i, definition)| {
                    let prefix = format!("attributeDefinitions.{}.member", i + 1);
                    let name = validator.required(
                        &definition.attribute_name,
                        &format!("{prefix}.attributeName"),
                    );
                    if let Some(name) = name {
                        validator.length(name, &format!("{prefix}.attributeName"), 1, 255);
                    }
                    let ty = validator.required(
                        &definition.attribute_type,
                        &format!("{prefix}.attributeType"),
                    );
                    if let Some(ty) = ty {
                        validator.one_of(ty, &format!("{prefix}.attributeType"), &["S", "N", "B"]);
                    }
                    Some((name?.clone(), ScalarType::parse(ty?)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn check_tags(validator: &mut Validator, tags: &[Tag]) {
    for (i, tag) in tags.iter().enumerate() {
        let prefix = format!("tags.{}.member", i + 1);
        if let Some(key) = validator.required(&tag.key, &format!("{prefix}.key")) {
            validator.length(key, &format!("{prefix}.key"), 1, 128);
        }
        if let Some(value) = validator.required(&tag.value, &format!("{prefix}.value")) {
            validator.length(value, &format!("{prefix}.value"), 0, 256);
        }
    }
}

/// Adds or replaces tags, keeping first-seen order.
fn merge_tags(existing: &mut Vec<(String, String)>, tags: Vec<Tag>) -> ApiResult<()> {
    for tag in tags {
        let key = tag.key.unwrap_or_default();
        let value = tag.value.unwrap_or_default();
        match existing.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => existing.push((key, value)),
        }
    }
    if existing.len() > MAX_TAGS {
        return Err(ApiError::limit_exceeded(format!(
            "The number of tags exceeds the limit of {MAX_TAGS} for this resource"
        )));
    }
    Ok(())
}

fn schema_elements(schema: &KeySchema) -> Vec<KeySchemaElement> {
    schema
        .attributes()
        .enumerate()
        .map(|(i, attribute)| KeySchemaElement {
            attribute_name: Some(attribute.name.clone()),
            key_type: Some(if i == 0 { "HASH" } else { "RANGE" }.to_owned()),
        })
        .collect()
}

fn throughput_description(throughput: Option<Throughput>) -> ProvisionedThroughputDescription {
    let throughput = throughput.unwrap_or(Throughput { read: 0, write: 0 });
    ProvisionedThroughputDescription {
        number_of_decreases_today: 0,
        read_capacity_units: throughput.read,
        write_capacity_units: throughput.write,
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl DynamoDb {
    /// The wire description of `table` at `now`.
    fn describe(&self, table: &Table, now: i64) -> TableDescription {
        let table_throughput = match &table.billing {
            Billing::Provisioned(throughput) => Some(*throughput),
            Billing::PayPerRequest => None,
        };
        let index_description = |index: &Index| {
            let entries = table.index_entries(index);
            let size: usize = entries
                .iter()
                .map(|(_, _, item)| {
                    super::value::item_size(&index.project(&table.key_schema, item))
                })
                .sum();
            let status = index.status(now);
            IndexDescription {
                index_name: index.name.clone(),
                key_schema: schema_elements(&index.key_schema),
                projection: super::api::Projection {
                    projection_type: Some(index.projection.type_name().to_owned()),
                    non_key_attributes: match &index.projection {
                        Projection::Include(names) => Some(names.clone()),
                        _ => None,
                    },
                },
                index_status: (!index.local).then_some(status),
                backfilling: (!index.local && status == "CREATING").then_some(true),
                provisioned_throughput: (!index.local)
                    .then(|| throughput_description(index.throughput)),
                index_size_bytes: count(size),
                item_count: count(entries.len()),
                index_arn: format!("{}/index/{}", table.arn, index.name),
            }
        };
        let global: Vec<_> = table
            .indexes
            .iter()
            .filter(|i| !i.local)
            .map(index_description)
            .collect();
        let local: Vec<_> = table
            .indexes
            .iter()
            .filter(|i| i.local)
            .map(index_description)
            .collect();
        let stream_label = table
            .stream
            .as_ref()
            .filter(|(enabled, _)| *enabled)
            .map(|_| {
                // A stable label derived from the creation time, like AWS's ISO timestamp labels.
                format!("{}", table.created_at)
            });
        TableDescription {
            attribute_definitions: table
                .attribute_definitions
                .iter()
                .map(|(name, ty)| AttributeDefinition {
                    attribute_name: Some(name.clone()),
                    attribute_type: Some(ty.as_str().to_owned()),
                })
                .collect(),
            table_name: table.name.clone(),
            key_schema: schema_elements(&table.key_schema),
            table_status: table.status(now),
            creation_date_time: Timestamp(table.created_at),
            provisioned_throughput: throughput_description(table_throughput),
            table_size_bytes: count(table.size_bytes()),
            item_count: count(table.items.len()),
            table_arn: table.arn.clone(),
            table_id: table.id.clone(),
            billing_mode_summary: match (&table.billing, table.pay_per_request_since) {
                (Billing::PayPerRequest, since) => Some(BillingModeSummary {
                    billing_mode: "PAY_PER_REQUEST",
                    last_update_to_pay_per_request_date_time: Some(Timestamp(
                        since.unwrap_or(table.created_at),
                    )),
                }),
                (Billing::Provisioned(_), Some(since)) => Some(BillingModeSummary {
                    billing_mode: "PROVISIONED",
                    last_update_to_pay_per_request_date_time: Some(Timestamp(since)),
                }),
                (Billing::Provisioned(_), None) => None,
            },
            local_secondary_indexes: (!local.is_empty()).then_some(local),
            global_secondary_indexes: (!global.is_empty()).then_some(global),
            stream_specification: table.stream.as_ref().map(|(enabled, view)| {
                super::api::StreamSpecification {
                    stream_enabled: Some(*enabled),
                    stream_view_type: view.clone(),
                }
            }),
            latest_stream_arn: stream_label
                .as_ref()
                .map(|label| format!("{}/stream/{label}", table.arn)),
            latest_stream_label: stream_label,
            sse_description: table.sse_enabled.then_some(SseDescription {
                status: "ENABLED",
                sse_type: "KMS",
            }),
            table_class_summary: table
                .table_class
                .clone()
                .map(|table_class| TableClassSummary { table_class }),
            deletion_protection_enabled: table.deletion_protection,
        }
    }

    /// `CreateTable`.
    pub(super) fn create_table(
        &self,
        input: CreateTableInput,
    ) -> ApiResult<TableDescriptionOutput> {
        let mut validator = Validator::new();
        let name = checked_table_name(&mut validator, &input.table_name);
        validator.required(&input.attribute_definitions, "attributeDefinitions");
        validator.required(&input.key_schema, "keySchema");
        let definitions = definitions_of(&mut validator, input.attribute_definitions.as_ref());
        let keys = check_key_schema(&mut validator, input.key_schema.as_ref(), "keySchema");
        if let Some(mode) = &input.billing_mode {
            validator.one_of(mode, "billingMode", &["PROVISIONED", "PAY_PER_REQUEST"]);
        }
        check_throughput(
            &mut validator,
            input.provisioned_throughput.as_ref(),
            "provisionedThroughput",
        );
        for (i, index) in input.global_secondary_indexes.iter().flatten().enumerate() {
            check_index_members(
                &mut validator,
                index,
                &format!("globalSecondaryIndexes.{}.member", i + 1),
            );
        }
        for (i, index) in input.local_secondary_indexes.iter().flatten().enumerate() {
            check_index_members(
                &mut validator,
                index,
                &format!("localSecondaryIndexes.{}.member", i + 1),
            );
        }
        if let Some(tags) = &input.tags {
            check_tags(&mut validator, tags);
        }
        validator.finish()?;

        let pay_per_request = input.billing_mode.as_deref() == Some("PAY_PER_REQUEST");
        let billing = if pay_per_request {
            if input.provisioned_throughput.is_some() {
                return Err(invalid(
                    "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST",
                ));
            }
            Billing::PayPerRequest
        } else {
            let Some(throughput) = &input.provisioned_throughput else {
                return Err(invalid(
                    "ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED",
                ));
            };
            Billing::Provisioned(throughput_of(throughput)?)
        };
        let mut seen = Vec::new();
        for (defined, _) in &definitions {
            if seen.contains(&defined) {
                return Err(invalid(format!(
                    "Duplicate AttributeName in AttributeDefinitions: {defined}"
                )));
            }
            seen.push(defined);
        }
        let table_key = key_schema(&keys, &definitions)?;
        let now = self.now();
        let ready_at = now.saturating_add(self.transition_millis());
        let mut indexes: Vec<Index> = Vec::new();
        let mut used_attributes: Vec<&str> =
            table_key.attributes().map(|a| a.name.as_str()).collect();
        let groups = [
            (false, input.global_secondary_indexes.as_ref()),
            (true, input.local_secondary_indexes.as_ref()),
        ];
        for (local, list) in groups {
            let Some(list) = list else {
                continue;
            };
            let kind = if local {
                "LocalSecondaryIndexes"
            } else {
                "GlobalSecondaryIndexes"
            };
            if list.is_empty() {
                return Err(invalid(format!("List of {kind} is empty")));
            }
            for spec in list {
                let name = spec.index_name.clone().unwrap_or_default();
                let keys =
                    check_key_schema(&mut Validator::new(), spec.key_schema.as_ref(), "keySchema");
                let schema = key_schema(&keys, &definitions)?;
                if local {
                    if table_key.range.is_none() {
                        return Err(invalid(
                            "Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex",
                        ));
                    }
                    if schema.range.is_none() {
                        return Err(invalid(format!(
                            "Index KeySchema does not have a range key for index: {name}"
                        )));
                    }
                    if schema.hash.name != table_key.hash.name {
                        return Err(invalid(format!(
                            "Index KeySchema does not have the same leading hash key as table KeySchema for index: {name}. index hash key: {}, table hash key: {}",
                            schema.hash.name, table_key.hash.name
                        )));
                    }
                }
                let throughput = match (&billing, &spec.provisioned_throughput) {
                    (Billing::PayPerRequest, Some(_)) => {
                        return Err(invalid(format!(
                            "ProvisionedThroughput should not be specified for index: {name} when BillingMode is PAY_PER_REQUEST"
                        )));
                    }
                    (Billing::Provisioned(_), None) if !local => {
                        return Err(invalid(format!(
                            "ProvisionedThroughput must be specified for index: {name}"
                        )));
                    }
                    (_, Some(throughput)) => Some(throughput_of(throughput)?),
                    (_, None) => None,
                };
                if indexes.iter().any(|i| i.name == name) {
                    return Err(invalid(format!("Duplicate index name: {name}")));
                }
                let projection = projection_of(spec.projection.as_ref())?;
                indexes.push(Index {
                    name,
                    key_schema: schema,
                    projection,
                    local,
                    throughput,
                    ready_at,
                    deleting_until: None,
                });
            }
            let total = indexes.iter().filter(|i| i.local == local).count();
            if !local && total > MAX_GLOBAL_INDEXES {
                return Err(invalid(format!(
                    "GlobalSecondaryIndex count exceeds the per-table limit of {MAX_GLOBAL_INDEXES}"
                )));
            }
            if local && total > MAX_LOCAL_INDEXES {
                return Err(invalid(format!(
                    "Number of LocalSecondaryIndexes exceeds per-table limit of {MAX_LOCAL_INDEXES}"
                )));
            }
        }
        for index in &indexes {
            used_attributes.extend(index.key_schema.attributes().map(|a| a.name.as_str()));
        }
        if definitions
            .iter()
            .any(|(n, _)| !used_attributes.contains(&n.as_str()))
        {
            return Err(invalid(
                "Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions",
            ));
        }
        let mut tags = Vec::new();
        merge_tags(&mut tags, input.tags.unwrap_or_default())?;

        let mut tables = write(&self.tables);
        if let Some(existing) = tables.get(&name) {
            // A table whose deletion finished may still be in the map until looked up.
            let gone = read(existing)
                .deleting_until
                .is_some_and(|until| now >= until);
            if !gone {
                return Err(ApiError::in_use(format!("Table already exists: {name}")));
            }
        }
        let table = Table {
            arn: self.table_arn(&name),
            name: name.clone(),
            id: uuid::Uuid::new_v4().to_string(),
            created_at: now,
            ready_at,
            updating_until: now,
            deleting_until: None,
            attribute_definitions: definitions,
            key_schema: table_key,
            billing,
            pay_per_request_since: None,
            indexes,
            stream: input
                .stream_specification
                .map(|s| (s.stream_enabled.unwrap_or(false), s.stream_view_type)),
            sse_enabled: input
                .sse_specification
                .and_then(|s| s.enabled)
                .unwrap_or(false),
            deletion_protection: input.deletion_protection_enabled.unwrap_or(false),
            table_class: input.table_class,
            tags,
            time_to_live: None,
            point_in_time_recovery: None,
            items: BTreeMap::new(),
        };
        let description = self.describe(&table, now);
        tables.insert(name, Arc::new(RwLock::new(table)));
        Ok(TableDescriptionOutput {
            table_description: description,
        })
    }

    /// `DescribeTable`.
    pub(super) fn describe_table(&self, input: TableNameInput) -> ApiResult<DescribeTableOutput> {
        let name = table_name(&input.table_name)?;
        let table = self.existing_table(&name)?;
        let table = read(&table);
        Ok(DescribeTableOutput {
            table: self.describe(&table, self.now()),
        })
    }

    /// `UpdateTable`: billing mode and throughput, GSI create/update/delete, and settings.
    pub(super) fn update_table(
        &self,
        input: UpdateTableInput,
    ) -> ApiResult<TableDescriptionOutput> {
        let mut validator = Validator::new();
        let name = checked_table_name(&mut validator, &input.table_name);
        let new_definitions = definitions_of(&mut validator, input.attribute_definitions.as_ref());
        if let Some(mode) = &input.billing_mode {
            validator.one_of(mode, "billingMode", &["PROVISIONED", "PAY_PER_REQUEST"]);
        }
        check_throughput(
            &mut validator,
            input.provisioned_throughput.as_ref(),
            "provisionedThroughput",
        );
        for (i, update) in input
            .global_secondary_index_updates
            .iter()
            .flatten()
            .enumerate()
        {
            let member = format!("globalSecondaryIndexUpdates.{}.member", i + 1);
            if let Some(create) = &update.create {
                check_index_members(&mut validator, create, &format!("{member}.create"));
            }
            for (action, spec) in [("update", &update.update), ("delete", &update.delete)] {
                if let Some(spec) = spec
                    && let Some(index) = validator
                        .required(&spec.index_name, &format!("{member}.{action}.indexName"))
                {
                    validate_table_name(
                        &mut validator,
                        index,
                        &format!("{member}.{action}.indexName"),
                    );
                }
            }
        }
        validator.finish()?;
        let index_updates = input.global_secondary_index_updates.unwrap_or_default();
        if input.provisioned_throughput.is_none()
            && input.billing_mode.is_none()
            && index_updates.is_empty()
            && input.stream_specification.is_none()
            && input.sse_specification.is_none()
            && input.deletion_protection_enabled.is_none()
            && input.table_class.is_none()
        {
            return Err(ApiError::validation(
                "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, GlobalSecondaryIndexUpdates or SSESpecification or ReplicaUpdates is required",
            ));
        }
        let mut named = Vec::new();
        for update in &index_updates {
            let specs = [&update.create, &update.update, &update.delete];
            let given: Vec<&GlobalSecondaryIndex> =
                specs.iter().filter_map(|s| s.as_ref()).collect();
            let [spec] = given.as_slice() else {
                return Err(invalid(
                    "One of GlobalSecondaryIndexUpdate.Update, GlobalSecondaryIndexUpdate.Create, GlobalSecondaryIndexUpdate.Delete must not be null",
                ));
            };
            let index_name = spec.index_name.clone().unwrap_or_default();
            if named.contains(&index_name) {
                return Err(invalid(format!(
                    "Only one global secondary index update per index is allowed simultaneously. Index: {index_name}"
                )));
            }
            named.push(index_name);
        }

        let shared = self.existing_table(&name)?;
        let now = self.now();
        let mut table = write(&shared);
        if table.status(now) != "ACTIVE" {
            return Err(in_use(&table, now));
        }
        let until = now.saturating_add(self.transition_millis());

        // Attribute definitions: existing ones keep their type; new ones join for new indexes.
        let mut definitions = table.attribute_definitions.clone();
        for (defined, ty) in new_definitions {
            match definitions.iter().find(|(n, _)| *n == defined) {
                Some((_, existing)) if *existing != ty => {
                    return Err(invalid(format!(
                        "Cannot change the type of existing attribute {defined} from {existing} to {ty}"
                    )));
                }
                Some(_) => {}
                None => definitions.push((defined, ty)),
            }
        }

        let billing = match (
            input.billing_mode.as_deref(),
            &input.provisioned_throughput,
            &table.billing,
        ) {
            (Some("PAY_PER_REQUEST"), Some(_), _) | (None, Some(_), Billing::PayPerRequest) => {
                return Err(invalid(
                    "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST",
                ));
            }
            (Some("PROVISIONED"), None, Billing::PayPerRequest) => {
                return Err(invalid(
                    "ProvisionedThroughput must be specified when BillingMode is PROVISIONED",
                ));
            }
            (Some("PAY_PER_REQUEST"), None, _) => Billing::PayPerRequest,
            (_, Some(throughput), current) => {
                let throughput = throughput_of(throughput)?;
                if *current == Billing::Provisioned(throughput) && index_updates.is_empty() {
                    return Err(ApiError::validation(format!(
                        "The provisioned throughput for the table will not change. The requested value equals the current value. Current ReadCapacityUnits provisioned for the table: {}. Requested ReadCapacityUnits: {}. Current WriteCapacityUnits provisioned for the table: {}. Requested WriteCapacityUnits: {}. Refer to the Amazon DynamoDB Developer Guide for current limits and how to request higher limits.",
                        throughput.read, throughput.read, throughput.write, throughput.write
                    )));
                }
                Billing::Provisioned(throughput)
            }
            (_, None, current) => current.clone(),
        };

        let mut indexes = table.indexes.clone();
        for update in index_updates {
            if let Some(spec) = update.create {
                let index_name = spec.index_name.clone().unwrap_or_default();
                if indexes.iter().any(|i| i.name == index_name) {
                    return Err(invalid(format!(
                        "Index with name: {index_name} already exists"
                    )));
                }
                let keys =
                    check_key_schema(&mut Validator::new(), spec.key_schema.as_ref(), "keySchema");
                let schema = key_schema(&keys, &definitions)?;
                let throughput = match (&billing, &spec.provisioned_throughput) {
                    (Billing::PayPerRequest, Some(_)) => {
                        return Err(invalid(format!(
                            "ProvisionedThroughput should not be specified for index: {index_name} when BillingMode is PAY_PER_REQUEST"
                        )));
                    }
                    (Billing::Provisioned(_), None) => {
                        return Err(invalid(format!(
                            "ProvisionedThroughput must be specified for index: {index_name}"
                        )));
                    }
                    (_, Some(throughput)) => Some(throughput_of(throughput)?),
                    (_, None) => None,
                };
                let projection = projection_of(spec.projection.as_ref())?;
                indexes.push(Index {
                    name: index_name,
                    key_schema: schema,
                    projection,
                    local: false,
                    throughput,
                    ready_at: until,
                    deleting_until: None,
                });
                if indexes.iter().filter(|i| !i.local).count() > MAX_GLOBAL_INDEXES {
                    return Err(ApiError::limit_exceeded(format!(
                        "GlobalSecondaryIndex count exceeds the per-table limit of {MAX_GLOBAL_INDEXES}"
                    )));
                }
            } else if let Some(spec) = update.update {
                let index_name = spec.index_name.clone().unwrap_or_default();
                let Some(index) = indexes
                    .iter_mut()
                    .find(|i| i.name == index_name && !i.local)
                else {
                    return Err(ApiError::not_found(format!(
                        "Requested resource not found: Index: {index_name}"
                    )));
                };
                if let Some(throughput) = &spec.provisioned_throughput {
                    index.throughput = Some(throughput_of(throughput)?);
                }
            } else if let Some(spec) = update.delete {
                let index_name = spec.index_name.clone().unwrap_or_default();
                let Some(position) = indexes
                    .iter()
                    .position(|i| i.name == index_name && !i.local)
                else {
                    return Err(ApiError::not_found(format!(
                        "Requested resource not found: Index: {index_name}"
                    )));
                };
                if until > now {
                    indexes[position].deleting_until = Some(until);
                } else {
                    indexes.remove(position);
                }
            }
        }

        if billing == Billing::PayPerRequest && table.billing != Billing::PayPerRequest {
            table.pay_per_request_since = Some(now);
            for index in &mut indexes {
                index.throughput = None;
            }
        }
        // Attribute definitions only list attributes some key uses.
        definitions.retain(|(defined, _)| {
            table.key_schema.contains(defined)
                || indexes.iter().any(|i| i.key_schema.contains(defined))
        });
        table.attribute_definitions = definitions;
        table.billing = billing;
        table.indexes = indexes;
        if let Some(stream) = input.stream_specification {
            table.stream = Some((
                stream.stream_enabled.unwrap_or(false),
                stream.stream_view_type,
            ));
        }
        if let Some(sse) = input.sse_specification {
            table.sse_enabled = sse.enabled.unwrap_or(false);
        }
        if let Some(protection) = input.deletion_protection_enabled {
            table.deletion_protection = protection;
        }
        if let Some(table_class) = input.table_class {
            table.table_class = Some(table_class);
        }
        table.updating_until = until;
        Ok(TableDescriptionOutput {
            table_description: self.describe(&table, now),
        })
    }

    /// `DeleteTable`.
    pub(super) fn delete_table(&self, input: TableNameInput) -> ApiResult<TableDescriptionOutput> {
        let name = table_name(&input.table_name)?;
        let shared = self.existing_table(&name)?;
        let now = self.now();
        let mut table = write(&shared);
        match table.status(now) {
            "CREATING" | "DELETING" => return Err(in_use(&table, now)),
            _ => {}
        }
        if table.deletion_protection {
            return Err(ApiError::validation(
                "Resource cannot be deleted as it is currently protected against deletion. Disable deletion protection first.",
            ));
        }
        let until = now.saturating_add(self.transition_millis());
        table.deleting_until = Some(until);
        let description = self.describe(&table, now);
        drop(table);
        if until <= now {
            let mut tables = write(&self.tables);
            if tables.get(&name).is_some_and(|t| Arc::ptr_eq(t, &shared)) {
                tables.remove(&name);
            }
        }
        Ok(TableDescriptionOutput {
            table_description: description,
        })
    }

    /// `ListTables`, in name order, paged by `ExclusiveStartTableName`.
    pub(super) fn list_tables(&self, input: ListTablesInput) -> ApiResult<ListTablesOutput> {
        let mut validator = Validator::new();
        if let Some(limit) = input.limit {
            validator.range(limit, "limit", 1, 100);
        }
        if let Some(start) = &input.exclusive_start_table_name {
            validate_table_name(&mut validator, start, "exclusiveStartTableName");
        }
        validator.finish()?;
        let limit = usize::try_from(input.limit.unwrap_or(100)).unwrap_or(100);
        let names: Vec<String> = read(&self.tables).keys().cloned().collect();
        let mut live = names
            .into_iter()
            .filter(|n| {
                input
                    .exclusive_start_table_name
                    .as_ref()
                    .is_none_or(|start| n > start)
            })
            .filter(|n| self.any_table(n).is_some());
        let page: Vec<String> = live.by_ref().take(limit).collect();
        let more = live.next().is_some();
        Ok(ListTablesOutput {
            last_evaluated_table_name: if more { page.last().cloned() } else { None },
            table_names: page,
        })
    }

    /// `DescribeContinuousBackups`.
    pub(super) fn describe_continuous_backups(
        &self,
        input: TableNameInput,
    ) -> ApiResult<ContinuousBackupsOutput> {
        let name = table_name(&input.table_name)?;
        let table = self.any_table(&name).ok_or_else(|| {
            ApiError::new("TableNotFoundException", format!("Table not found: {name}"))
        })?;
        let table = read(&table);
        Ok(self.backups_description(&table))
    }

    fn backups_description(&self, table: &Table) -> ContinuousBackupsOutput {
        let now = self.now();
        let recovery = match table.point_in_time_recovery {
            Some((since, days)) => PointInTimeRecoveryDescription {
                point_in_time_recovery_status: "ENABLED",
                recovery_period_in_days: Some(days),
                earliest_restorable_date_time: Some(Timestamp(since)),
                latest_restorable_date_time: Some(Timestamp(now)),
            },
            None => PointInTimeRecoveryDescription {
                point_in_time_recovery_status: "DISABLED",
                recovery_period_in_days: None,
                earliest_restorable_date_time: None,
                latest_restorable_date_time: None,
            },
        };
        ContinuousBackupsOutput {
            continuous_backups_description: ContinuousBackupsDescription {
                continuous_backups_status: "ENABLED",
                point_in_time_recovery_description: recovery,
            },
        }
    }

    /// `UpdateContinuousBackups`: point-in-time recovery on or off (recorded only).
    pub(super) fn update_continuous_backups(
        &self,
        input: UpdateContinuousBackupsInput,
    ) -> ApiResult<ContinuousBackupsOutput> {
        let mut validator = Validator::new();
        let name = checked_table_name(&mut validator, &input.table_name);
        let spec = validator.required(
            &input.point_in_time_recovery_specification,
            "pointInTimeRecoverySpecification",
        );
        let enabled = spec.and_then(|spec| {
            if let Some(days) = spec.recovery_period_in_days {
                validator.range(
                    days,
                    "pointInTimeRecoverySpecification.recoveryPeriodInDays",
                    1,
                    35,
                );
            }
            validator
                .required(
                    &spec.point_in_time_recovery_enabled,
                    "pointInTimeRecoverySpecification.pointInTimeRecoveryEnabled",
                )
                .copied()
        });
        let days = spec.and_then(|s| s.recovery_period_in_days).unwrap_or(35);
        validator.finish()?;
        let shared = self.any_table(&name).ok_or_else(|| {
            ApiError::new("TableNotFoundException", format!("Table not found: {name}"))
        })?;
        let mut table = write(&shared);
        table.point_in_time_recovery = match (enabled, table.point_in_time_recovery) {
            (Some(true), Some((since, _))) => Some((since, days)),
            (Some(true), None) => Some((self.now(), days)),
            _ => None,
        };
        Ok(self.backups_description(&table))
    }

    /// `DescribeTimeToLive`.
    pub(super) fn describe_time_to_live(
        &self,
        input: TableNameInput,
    ) -> ApiResult<DescribeTimeToLiveOutput> {
        let name = table_name(&input.table_name)?;
        let table = self.existing_table(&name)?;
        let table = read(&table);
        let description = match &table.time_to_live {
            Some(ttl) if ttl.enabled => TimeToLiveDescription {
                time_to_live_status: "ENABLED",
                attribute_name: Some(ttl.attribute.clone()),
            },
            _ => TimeToLiveDescription {
                time_to_live_status: "DISABLED",
                attribute_name: None,
            },
        };
        Ok(DescribeTimeToLiveOutput {
            time_to_live_description: description,
        })
    }

    /// `UpdateTimeToLive` (recorded; items do not expire).
    pub(super) fn update_time_to_live(
        &self,
        input: UpdateTimeToLiveInput,
    ) -> ApiResult<UpdateTimeToLiveOutput> {
        let mut validator = Validator::new();
        let name = checked_table_name(&mut validator, &input.table_name);
        let spec = validator.required(&input.time_to_live_specification, "timeToLiveSpecification");
        if let Some(spec) = spec {
            validator.required(&spec.enabled, "timeToLiveSpecification.enabled");
            if let Some(attribute) = validator.required(
                &spec.attribute_name,
                "timeToLiveSpecification.attributeName",
            ) {
                validator.length(attribute, "timeToLiveSpecification.attributeName", 1, 255);
            }
        }
        validator.finish()?;
        let spec = input.time_to_live_specification.unwrap_or_default();
        let enabled = spec.enabled.unwrap_or(false);
        let attribute = spec.attribute_name.clone().unwrap_or_default();
        let shared = self.usable_table(&name)?;
        let mut table = write(&shared);
        let currently = table.time_to_live.as_ref().is_some_and(|t| t.enabled);
        if enabled && currently {
            return Err(ApiError::validation("TimeToLive is already enabled"));
        }
        if !enabled && !currently {
            return Err(ApiError::validation("TimeToLive is already disabled"));
        }
        table.time_to_live = Some(TimeToLive { attribute, enabled });
        Ok(UpdateTimeToLiveOutput {
            time_to_live_specification: TimeToLiveSpecification {
                enabled: Some(enabled),
                attribute_name: spec.attribute_name,
            },
        })
    }

    /// The table an ARN names.
    fn table_by_arn(
        &self,
        mut validator: Validator,
        arn: &Option<String>,
    ) -> ApiResult<SharedTable> {
        let arn = validator
            .required(arn, "resourceArn")
            .cloned()
            .unwrap_or_default();
        validator.length(&arn, "resourceArn", 1, 1283);
        validator.finish()?;
        let prefix = self.table_arn("");
        let Some(name) = arn.strip_prefix(&prefix) else {
            if arn.starts_with("arn:aws:dynamodb:") && arn.contains(":table/") {
                return Err(ApiError::not_found(format!(
                    "Requested resource not found: ResourcArn: {arn} not found"
                )));
            }
            return Err(ApiError::validation(format!(
                "Invalid TableArn: Invalid ResourceArn provided as input {arn}"
            )));
        };
        self.any_table(name).ok_or_else(|| {
            ApiError::not_found(format!(
                "Requested resource not found: ResourcArn: {arn} not found"
            ))
        })
    }

    /// `TagResource`.
    pub(super) fn tag_resource(&self, input: TagResourceInput) -> ApiResult<Empty> {
        let mut validator = Validator::new();
        if let Some(tags) = validator.required(&input.tags, "tags") {
            check_tags(&mut validator, tags);
        }
        let shared = self.table_by_arn(validator, &input.resource_arn)?;
        let mut table = write(&shared);
        let mut tags = table.tags.clone();
        merge_tags(&mut tags, input.tags.unwrap_or_default())?;
        table.tags = tags;
        Ok(Empty {})
    }

    /// `UntagResource`.
    pub(super) fn untag_resource(&self, input: UntagResourceInput) -> ApiResult<Empty> {
        let mut validator = Validator::new();
        validator.required(&input.tag_keys, "tagKeys");
        let shared = self.table_by_arn(validator, &input.resource_arn)?;
        let keys = input.tag_keys.unwrap_or_default();
        write(&shared).tags.retain(|(key, _)| !keys.contains(key));
        Ok(Empty {})
    }

    /// `ListTagsOfResource` (all tags in one page).
    pub(super) fn list_tags_of_resource(
        &self,
        input: ListTagsOfResourceInput,
    ) -> ApiResult<ListTagsOfResourceOutput> {
        let shared = self.table_by_arn(Validator::new(), &input.resource_arn)?;
        let table = read(&shared);
        Ok(ListTagsOfResourceOutput {
            tags: table
                .tags
                .iter()
                .map(|(key, value)| Tag {
                    key: Some(key.clone()),
                    value: Some(value.clone()),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;

    fn service() -> DynamoDb {
        DynamoDb::new(BrokerConfig::default())
    }

    fn create(service: &DynamoDb, json: &str) -> ApiResult<TableDescriptionOutput> {
        service.create_table(serde_json::from_str(json).unwrap())
    }

    const LEASES: &str = r#"{"TableName":"leases","AttributeDefinitions":[{"AttributeName":"leaseKey","AttributeType":"S"}],
        "KeySchema":[{"AttributeName":"leaseKey","KeyType":"HASH"}],"BillingMode":"PAY_PER_REQUEST"}"#;

    #[test]
    fn create_then_create_again_is_resource_in_use() {
        let service = service();
        let created = create(&service, LEASES).unwrap();
        assert_eq!(created.table_description.table_status, "ACTIVE");
        assert_eq!(
            created.table_description.table_arn,
            "arn:aws:dynamodb:us-east-1:000000000000:table/leases"
        );
        assert_eq!(
            create(&service, LEASES).unwrap_err().code,
            "ResourceInUseException"
        );
    }

    #[test]
    fn create_validates_schema_against_definitions() {
        let service = service();
        let err = create(
            &service,
            r#"{"TableName":"tbl","AttributeDefinitions":[{"AttributeName":"a","AttributeType":"S"}],
                "KeySchema":[{"AttributeName":"b","KeyType":"HASH"}],"BillingMode":"PAY_PER_REQUEST"}"#,
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("Some index key attributes are not defined"),
            "{}",
            err.message
        );
        let err = create(
            &service,
            r#"{"TableName":"tbl","AttributeDefinitions":[{"AttributeName":"a","AttributeType":"S"}],
                "KeySchema":[{"AttributeName":"a","KeyType":"HASH"}]}"#,
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("must both be specified when BillingMode is PROVISIONED")
        );
        let err = create(&service, r#"{"TableName":"x"}"#).unwrap_err();
        assert!(
            err.message.starts_with("3 validation errors detected"),
            "{}",
            err.message
        );
    }

    #[test]
    fn tables_stay_creating_for_the_transition_delay() {
        let clock = crate::ShiftableClock::new();
        let config = BrokerConfig {
            state_transition_delay: std::time::Duration::from_secs(5),
            clock: Arc::new(clock.clone()),
            ..BrokerConfig::default()
        };
        let service = DynamoDb::new(config);
        assert_eq!(
            create(&service, LEASES)
                .unwrap()
                .table_description
                .table_status,
            "CREATING"
        );
        assert_eq!(
            service.usable_table("leases").unwrap_err().code,
            "ResourceNotFoundException"
        );
        clock.advance(std::time::Duration::from_secs(6));
        assert!(service.usable_table("leases").is_ok());
    }

    #[test]
    fn list_tables_pages_by_name() {
        let service = service();
        for name in ["aaa", "bbb", "ccc"] {
            create(&service, &LEASES.replace("leases", name)).unwrap();
        }
        let page = service
            .list_tables(ListTablesInput {
                limit: Some(2),
                exclusive_start_table_name: None,
            })
            .unwrap();
        assert_eq!(page.table_names, ["aaa", "bbb"]);
        assert_eq!(page.last_evaluated_table_name.as_deref(), Some("bbb"));
        let rest = service
            .list_tables(ListTablesInput {
                limit: Some(2),
                exclusive_start_table_name: Some("bbb".into()),
            })
            .unwrap();
        assert_eq!(rest.table_names, ["ccc"]);
        assert!(rest.last_evaluated_table_name.is_none());
    }
}
