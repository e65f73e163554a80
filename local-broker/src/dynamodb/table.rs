//! A table: its schema, settings, lifecycle and items, and the secondary indexes over them.
//!
//! Items live in a `BTreeMap` keyed by the primary key, ordered as DynamoDB orders keys (numbers
//! numerically, strings and binaries by their bytes), so scans have a stable order and paging by
//! `ExclusiveStartKey` resumes exactly where it stopped. Secondary indexes are not stored: an
//! index read selects and sorts the items that carry the index's key attributes. That makes a
//! new GSI "backfilled" the moment it exists, and no write can leave an index stale. Lease
//! tables hold hundreds or thousands of items, so the linear pass costs little.
//!
//! Statuses (CREATING, UPDATING, DELETING, ACTIVE) are derived from timestamps and the
//! broker's clock rather than driven by timers, so a test clock moves them.

use super::number::Number;
use super::value::{AttributeValue, Item, MAX_ITEM_BYTES, item_size};
use crate::http::error::{ApiError, ApiResult};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fmt;

/// Largest hash key value in bytes.
const MAX_HASH_KEY_BYTES: usize = 2048;
/// Largest range key value in bytes.
const MAX_RANGE_KEY_BYTES: usize = 1024;

/// The type of a key attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ScalarType {
    S,
    N,
    B,
}

impl ScalarType {
    /// Parses `S`, `N` or `B`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "S" => Some(ScalarType::S),
            "N" => Some(ScalarType::N),
            "B" => Some(ScalarType::B),
            _ => None,
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ScalarType::S => "S",
            ScalarType::N => "N",
            ScalarType::B => "B",
        }
    }
}

impl fmt::Display for ScalarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key attribute value, ordered the way DynamoDB orders keys. Within one schema all values of
/// an attribute share a type, so the order across types never matters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyValue {
    N(Number),
    S(String),
    B(Bytes),
}

impl KeyValue {
    /// The key value of `value` if it has scalar type `ty`.
    pub fn of(value: &AttributeValue, ty: ScalarType) -> Option<Self> {
        match (value, ty) {
            (AttributeValue::S(s), ScalarType::S) => Some(KeyValue::S(s.clone())),
            (AttributeValue::N(n), ScalarType::N) => Some(KeyValue::N(n.clone())),
            (AttributeValue::B(b), ScalarType::B) => Some(KeyValue::B(b.clone())),
            _ => None,
        }
    }

    /// Bytes counted against the key size limits (numbers are always small enough).
    fn size(&self) -> usize {
        match self {
            KeyValue::S(s) => s.len(),
            KeyValue::B(b) => b.len(),
            KeyValue::N(_) => 0,
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            KeyValue::S(s) => s.is_empty(),
            KeyValue::B(b) => b.is_empty(),
            KeyValue::N(_) => false,
        }
    }

    /// A stable hash for parallel-scan segments (FNV-1a; independent of the process).
    fn segment_hash(&self) -> u64 {
        let text;
        let bytes: &[u8] = match self {
            KeyValue::S(s) => s.as_bytes(),
            KeyValue::B(b) => b,
            KeyValue::N(n) => {
                text = n.to_string();
                text.as_bytes()
            }
        };
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
            (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

/// A primary key (or index key): hash value and optional range value.
pub type PrimaryKey = (KeyValue, Option<KeyValue>);

/// One key attribute of a schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyAttribute {
    pub name: String,
    pub ty: ScalarType,
}

/// A table's or index's key schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeySchema {
    pub hash: KeyAttribute,
    pub range: Option<KeyAttribute>,
}

fn mismatch() -> ApiError {
    ApiError::validation("The provided key element does not match the schema")
}

impl KeySchema {
    /// The key attributes, hash first.
    pub fn attributes(&self) -> impl Iterator<Item = &KeyAttribute> {
        std::iter::once(&self.hash).chain(self.range.as_ref())
    }

    /// True when `name` is one of the key attributes.
    pub fn contains(&self, name: &str) -> bool {
        self.attributes().any(|a| a.name == name)
    }

    fn check_size(&self, key: &PrimaryKey) -> ApiResult<()> {
        if key.0.size() > MAX_HASH_KEY_BYTES {
            return Err(ApiError::validation(
                "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes",
            ));
        }
        if key
            .1
            .as_ref()
            .is_some_and(|r| r.size() > MAX_RANGE_KEY_BYTES)
        {
            return Err(ApiError::validation(
                "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size limit of 1024 bytes",
            ));
        }
        Ok(())
    }

    /// The key named by a request's `Key` member, which must hold exactly the key attributes.
    pub fn key_of_request(&self, key: &Item) -> ApiResult<PrimaryKey> {
        if key.len() != self.attributes().count() {
            return Err(mismatch());
        }
        let part = |attribute: &KeyAttribute| -> ApiResult<KeyValue> {
            let value = key
                .get(&attribute.name)
                .and_then(|v| KeyValue::of(v, attribute.ty))
                .ok_or_else(mismatch)?;
            if value.is_empty() {
                return Err(ApiError::validation(format!(
                    "One or more parameter values were invalid: The AttributeValue for a key attribute cannot contain an empty {} value. Key: {}",
                    empty_kind(attribute.ty),
                    attribute.name
                )));
            }
            Ok(value)
        };
        let primary = (
            part(&self.hash)?,
            self.range.as_ref().map(part).transpose()?,
        );
        self.check_size(&primary)?;
        Ok(primary)
    }

    /// The key of an item about to be written.
    pub fn key_of_item(&self, item: &Item) -> ApiResult<PrimaryKey> {
        let part = |attribute: &KeyAttribute| -> ApiResult<KeyValue> {
            let value = item.get(&attribute.name).ok_or_else(|| {
                ApiError::validation(format!(
                    "One or more parameter values were invalid: Missing the key {} in the item",
                    attribute.name
                ))
            })?;
            let key = KeyValue::of(value, attribute.ty).ok_or_else(|| {
                ApiError::validation(format!(
                    "One or more parameter values were invalid: Type mismatch for key {} expected: {} actual: {}",
                    attribute.name,
                    attribute.ty,
                    value.type_tag()
                ))
            })?;
            if key.is_empty() {
                return Err(ApiError::validation(format!(
                    "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty {} value. Key: {}",
                    empty_kind(attribute.ty),
                    attribute.name
                )));
            }
            Ok(key)
        };
        let primary = (
            part(&self.hash)?,
            self.range.as_ref().map(part).transpose()?,
        );
        self.check_size(&primary)?;
        Ok(primary)
    }

    /// The item's key under this schema, or `None` when the item lacks a key attribute (or has
    /// it with another type) and so is not in an index with this schema.
    pub fn key_if_present(&self, item: &Item) -> Option<PrimaryKey> {
        let part = |a: &KeyAttribute| item.get(&a.name).and_then(|v| KeyValue::of(v, a.ty));
        let hash = part(&self.hash)?;
        let range = match &self.range {
            Some(range) => Some(part(range)?),
            None => None,
        };
        Some((hash, range))
    }

    /// Just the key attributes of `item`.
    pub fn key_item(&self, item: &Item) -> Item {
        self.attributes()
            .filter_map(|a| item.get(&a.name).map(|v| (a.name.clone(), v.clone())))
            .collect()
    }
}

fn empty_kind(ty: ScalarType) -> &'static str {
    if ty == ScalarType::B {
        "binary"
    } else {
        "string"
    }
}

/// Which attributes an index copies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Projection {
    All,
    KeysOnly,
    Include(Vec<String>),
}

impl Projection {
    /// The wire `ProjectionType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Projection::All => "ALL",
            Projection::KeysOnly => "KEYS_ONLY",
            Projection::Include(_) => "INCLUDE",
        }
    }
}

/// Provisioned read and write capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Throughput {
    pub read: i64,
    pub write: i64,
}

/// A global or local secondary index.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Index {
    pub name: String,
    pub key_schema: KeySchema,
    pub projection: Projection,
    /// Local indexes share the table's hash key and allow consistent reads.
    pub local: bool,
    pub throughput: Option<Throughput>,
    /// CREATING (backfilling) until this instant.
    pub ready_at: i64,
    /// DELETING since an `UpdateTable` asked; gone at this instant.
    pub deleting_until: Option<i64>,
}

impl Index {
    /// `CREATING`, `DELETING` or `ACTIVE` at `now`.
    pub fn status(&self, now: i64) -> &'static str {
        if self.deleting_until.is_some() {
            "DELETING"
        } else if now < self.ready_at {
            "CREATING"
        } else {
            "ACTIVE"
        }
    }

    /// The copy of `item` this index holds.
    pub fn project(&self, table_key: &KeySchema, item: &Item) -> Item {
        match &self.projection {
            Projection::All => item.clone(),
            Projection::KeysOnly | Projection::Include(_) => item
                .iter()
                .filter(|(name, _)| {
                    table_key.contains(name)
                        || self.key_schema.contains(name)
                        || matches!(&self.projection, Projection::Include(extra) if extra.contains(name))
                })
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        }
    }
}

/// How the table is billed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Billing {
    PayPerRequest,
    Provisioned(Throughput),
}

/// Time-to-live settings (recorded and reported; items do not expire).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeToLive {
    pub attribute: String,
    pub enabled: bool,
}

/// One table.
#[derive(Debug)]
pub struct Table {
    pub name: String,
    pub arn: String,
    pub id: String,
    pub created_at: i64,
    /// CREATING until this instant.
    pub ready_at: i64,
    /// UPDATING until this instant (after an `UpdateTable`).
    pub updating_until: i64,
    /// DELETING until this instant, then gone.
    pub deleting_until: Option<i64>,
    pub attribute_definitions: Vec<(String, ScalarType)>,
    pub key_schema: KeySchema,
    pub billing: Billing,
    /// When the table last switched to on-demand billing.
    pub pay_per_request_since: Option<i64>,
    pub indexes: Vec<Index>,
    pub stream: Option<(bool, Option<String>)>,
    pub sse_enabled: bool,
    pub deletion_protection: bool,
    pub table_class: Option<String>,
    pub tags: Vec<(String, String)>,
    pub time_to_live: Option<TimeToLive>,
    /// Point-in-time recovery: enabled since, and the recovery period in days.
    pub point_in_time_recovery: Option<(i64, i64)>,
    pub items: BTreeMap<PrimaryKey, Item>,
}

impl Table {
    /// `CREATING`, `UPDATING`, `DELETING` or `ACTIVE` at `now`.
    pub fn status(&self, now: i64) -> &'static str {
        if self.deleting_until.is_some() {
            "DELETING"
        } else if now < self.ready_at {
            "CREATING"
        } else if now < self.updating_until {
            "UPDATING"
        } else {
            "ACTIVE"
        }
    }

    /// Drops indexes whose deletion has finished.
    pub fn settle(&mut self, now: i64) {
        self.indexes
            .retain(|index| index.deleting_until.is_none_or(|until| now < until));
    }

    /// The index called `name`.
    pub fn index(&self, name: &str) -> Option<&Index> {
        self.indexes.iter().find(|i| i.name == name)
    }

    /// Total bytes of all items.
    pub fn size_bytes(&self) -> usize {
        self.items.values().map(item_size).sum()
    }

    /// Checks an item about to be stored against the size limit and the index key types, and
    /// returns its primary key.
    pub fn check_item(&self, item: &Item, too_big: &str) -> ApiResult<PrimaryKey> {
        let key = self.key_schema.key_of_item(item)?;
        if item_size(item) > MAX_ITEM_BYTES {
            return Err(ApiError::validation(too_big));
        }
        for index in &self.indexes {
            for attribute in index.key_schema.attributes() {
                let Some(value) = item.get(&attribute.name) else {
                    continue;
                };
                match KeyValue::of(value, attribute.ty) {
                    None => {
                        return Err(ApiError::validation(format!(
                            "One or more parameter values were invalid: Type mismatch for Index Key {} Expected: {} Actual: {} IndexName: {}",
                            attribute.name,
                            attribute.ty,
                            value.type_tag(),
                            index.name
                        )));
                    }
                    Some(key) if key.is_empty() => {
                        return Err(ApiError::validation(format!(
                            "One or more parameter values are not valid. A value specified for a secondary index key is not supported. The AttributeValue for a key attribute cannot contain an empty {} value. IndexName: {}, IndexKey: {}",
                            empty_kind(attribute.ty),
                            index.name,
                            attribute.name
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(key)
    }

    /// The items of `index` in index order: `(index key, table key, item)`.
    pub fn index_entries<'a>(
        &'a self,
        index: &Index,
    ) -> Vec<(PrimaryKey, &'a PrimaryKey, &'a Item)> {
        let mut entries: Vec<_> = self
            .items
            .iter()
            .filter_map(|(key, item)| Some((index.key_schema.key_if_present(item)?, key, item)))
            .collect();
        entries.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        entries
    }
}

/// Which parallel-scan segment a hash key value belongs to.
pub fn segment_of(hash: &KeyValue, total_segments: u64) -> u64 {
    if total_segments <= 1 {
        0
    } else {
        hash.segment_hash() % total_segments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> KeyValue {
        KeyValue::N(Number::parse(text).unwrap())
    }

    #[test]
    fn keys_order_numbers_numerically_and_strings_bytewise() {
        assert!(n("9") < n("10"));
        assert!(n("-10") < n("-9"));
        assert!(KeyValue::S("B".into()) < KeyValue::S("a".into()));
        assert!(KeyValue::S("a".into()) < KeyValue::S("ab".into()));
        assert!(
            KeyValue::B(Bytes::from_static(&[0x7f])) < KeyValue::B(Bytes::from_static(&[0x80]))
        );
    }

    #[test]
    fn segments_are_stable_and_in_range() {
        let key = KeyValue::S("shardId-000000000001".into());
        assert_eq!(segment_of(&key, 4), segment_of(&key, 4));
        assert!(segment_of(&key, 3) < 3);
        assert_eq!(segment_of(&key, 1), 0);
    }
}
