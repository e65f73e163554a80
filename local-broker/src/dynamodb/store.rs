//! Persistence of the DynamoDB service: tables (schema, indexes, settings, tags) and items as
//! metadata values in [`crate::storage`], and their recovery.
//!
//! A table's description is rewritten after each table operation that changed it; each item
//! write is journaled under the table's write lock before it is applied, so the journal holds
//! every table's writes in the order they were applied, and a failed write changes nothing.

use super::table::{
    Billing, Index, KeySchema, KeyValue, PrimaryKey, ScalarType, Table, TimeToLive,
};
use super::value::{Item, RawValue, validate_item};
use crate::storage::{Change, Storage, StorageError};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

const TABLE_PREFIX: &str = "dynamodb/table/";
const ITEM_PREFIX: &str = "dynamodb/item/";

#[derive(Serialize, Deserialize)]
struct TableRecord {
    name: String,
    arn: String,
    id: String,
    created_at: i64,
    ready_at: i64,
    updating_until: i64,
    attribute_definitions: Vec<(String, ScalarType)>,
    key_schema: KeySchema,
    billing: Billing,
    pay_per_request_since: Option<i64>,
    indexes: Vec<Index>,
    stream: Option<(bool, Option<String>)>,
    sse_enabled: bool,
    deletion_protection: bool,
    table_class: Option<String>,
    tags: Vec<(String, String)>,
    time_to_live: Option<TimeToLive>,
    point_in_time_recovery: Option<(i64, i64)>,
}

fn record_of(t: &Table) -> TableRecord {
    TableRecord {
        name: t.name.clone(),
        arn: t.arn.clone(),
        id: t.id.clone(),
        created_at: t.created_at,
        ready_at: t.ready_at,
        updating_until: t.updating_until,
        attribute_definitions: t.attribute_definitions.clone(),
        key_schema: t.key_schema.clone(),
        billing: t.billing.clone(),
        pay_per_request_since: t.pay_per_request_since,
        indexes: t.indexes.clone(),
        stream: t.stream.clone(),
        sse_enabled: t.sse_enabled,
        deletion_protection: t.deletion_protection,
        table_class: t.table_class.clone(),
        tags: t.tags.clone(),
        time_to_live: t.time_to_live.clone(),
        point_in_time_recovery: t.point_in_time_recovery,
    }
}

fn table_of(r: TableRecord) -> Table {
    Table {
        name: r.name,
        arn: r.arn,
        id: r.id,
        created_at: r.created_at,
        ready_at: r.ready_at,
        updating_until: r.updating_until,
        deleting_until: None,
        attribute_definitions: r.attribute_definitions,
        key_schema: r.key_schema,
        billing: r.billing,
        pay_per_request_since: r.pay_per_request_since,
        indexes: r.indexes,
        stream: r.stream,
        sse_enabled: r.sse_enabled,
        deletion_protection: r.deletion_protection,
        table_class: r.table_class,
        tags: r.tags,
        time_to_live: r.time_to_live,
        point_in_time_recovery: r.point_in_time_recovery,
        items: BTreeMap::new(),
    }
}

/// The metadata key of an item: table name, then the key values spelled unambiguously.
fn item_key(table: &str, key: &PrimaryKey) -> String {
    fn spell(value: &KeyValue) -> String {
        match value {
            KeyValue::S(s) => format!("S{s}"),
            KeyValue::N(n) => format!("N{n}"),
            KeyValue::B(b) => format!("B{}", base64::engine::general_purpose::STANDARD.encode(b)),
        }
    }
    let range = key.1.as_ref().map(spell);
    // JSON quoting keeps a separator inside a value from being read as the boundary.
    let parts = serde_json::json!([spell(&key.0), range]);
    format!("{ITEM_PREFIX}{table}/{parts}")
}

fn items_prefix(table: &str) -> String {
    format!("{ITEM_PREFIX}{table}/")
}

/// Rebuilds every table and its items.
pub fn restore(
    meta: &BTreeMap<String, Vec<u8>>,
) -> Result<BTreeMap<String, Arc<RwLock<Table>>>, StorageError> {
    let corrupt = |key: &str, why: String| StorageError::Corrupt(format!("{key}: {why}"));
    let mut tables = BTreeMap::new();
    for (key, value) in meta.range(TABLE_PREFIX.to_owned()..) {
        if !key.starts_with(TABLE_PREFIX) {
            break;
        }
        let record: TableRecord =
            serde_json::from_slice(value).map_err(|e| corrupt(key, e.to_string()))?;
        let mut table = table_of(record);
        let prefix = items_prefix(&table.name);
        for (item_key, value) in meta.range(prefix.clone()..) {
            if !item_key.starts_with(&prefix) {
                break;
            }
            let raw: BTreeMap<String, RawValue> =
                serde_json::from_slice(value).map_err(|e| corrupt(item_key, e.to_string()))?;
            let item = validate_item(raw).map_err(|e| corrupt(item_key, e.message))?;
            let primary = table
                .key_schema
                .key_of_item(&item)
                .map_err(|e| corrupt(item_key, e.message))?;
            table.items.insert(primary, item);
        }
        tables.insert(table.name.clone(), Arc::new(RwLock::new(table)));
    }
    Ok(tables)
}

/// Writes table descriptions when they change, and item writes as they happen.
#[derive(Default)]
pub struct TableStore {
    storage: Storage,
    /// The description last written per table.
    written: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl TableStore {
    /// A store over `storage`, which already holds `meta`.
    pub fn new(storage: Storage, meta: &BTreeMap<String, Vec<u8>>) -> Self {
        let written = meta
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(TABLE_PREFIX)?.to_owned(), v.clone())))
            .collect();
        Self {
            storage,
            written: Mutex::new(written),
        }
    }

    /// Journals item writes to `table` (`None` deletes). Call it holding the table's write lock,
    /// before applying them.
    pub fn write_items(
        &self,
        table: &str,
        writes: &[(&PrimaryKey, Option<&Item>)],
    ) -> Result<(), StorageError> {
        if !self.storage.is_durable() {
            return Ok(());
        }
        let encoded: Vec<(String, Option<Vec<u8>>)> = writes
            .iter()
            .map(|(key, item)| {
                let value = item
                    .map(serde_json::to_vec)
                    .transpose()
                    .map_err(|e| StorageError::Corrupt(format!("unencodable item: {e}")))?;
                Ok((item_key(table, key), value))
            })
            .collect::<Result<_, StorageError>>()?;
        let changes: Vec<Change<'_>> = encoded
            .iter()
            .map(|(key, value)| match value {
                Some(value) => Change::Put(key, value),
                None => Change::Delete(key),
            })
            .collect();
        self.storage.write_meta(&changes)
    }

    /// Persists every table whose description differs from what was last written; tables that
    /// are gone or being deleted are removed with their items.
    pub fn persist(
        &self,
        tables: &RwLock<BTreeMap<String, Arc<RwLock<Table>>>>,
    ) -> Result<(), StorageError> {
        if !self.storage.is_durable() {
            return Ok(());
        }
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let mut current = BTreeMap::new();
        for shared in tables.read().unwrap_or_else(|p| p.into_inner()).values() {
            let table = shared.read().unwrap_or_else(|p| p.into_inner());
            if table.deleting_until.is_some() {
                continue;
            }
            let json = serde_json::to_vec(&record_of(&table))
                .map_err(|e| StorageError::Corrupt(format!("unencodable table: {e}")))?;
            current.insert(table.name.clone(), json);
        }
        let removed: Vec<String> = written
            .keys()
            .filter(|name| !current.contains_key(*name))
            .cloned()
            .collect();
        let keys: Vec<(String, String)> = removed
            .iter()
            .map(|name| (format!("{TABLE_PREFIX}{name}"), items_prefix(name)))
            .collect();
        let puts: Vec<(String, &Vec<u8>)> = current
            .iter()
            .filter(|(name, json)| written.get(*name) != Some(*json))
            .map(|(name, json)| (format!("{TABLE_PREFIX}{name}"), json))
            .collect();
        let mut changes = Vec::new();
        for (table_key, items) in &keys {
            changes.push(Change::Delete(table_key));
            changes.push(Change::DeletePrefix(items));
        }
        for (key, json) in &puts {
            changes.push(Change::Put(key, json));
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.storage.write_meta(&changes)?;
        drop(changes);
        drop(puts);
        *written = current;
        Ok(())
    }
}
