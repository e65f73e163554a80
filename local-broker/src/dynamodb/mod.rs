//! The DynamoDB slice that KCL lease tables need (AWS JSON 1.0, `DynamoDB_20120810.*`).
//!
//! | module | owns |
//! |---|---|
//! | [`api`] | wire shapes of every operation |
//! | [`tables`] | table operations: Create/Describe/Update/Delete/ListTables, backups, TTL, tags |
//! | [`items`] | item operations: Get/Put/Update/DeleteItem, BatchGetItem, BatchWriteItem |
//! | [`reads`] | Scan and Query, paging, parallel segments |
//! | [`table`] | the table domain: schema, keys and their order, indexes, lifecycle |
//! | [`store`] | what of the service is persisted, and its recovery |
//! | [`value`] | attribute values, their validation, equality and size |
//! | [`number`] | DynamoDB's exact 38-digit decimal numbers |
//! | [`expression`] | condition/update/projection expressions: parser and evaluator |
//! | [`legacy`] | `Expected`, `AttributeUpdates`, `ScanFilter`/`QueryFilter`/`KeyConditions` |
//!
//! Every item write is atomic and linearizable: each table sits behind one `RwLock`, writes take
//! it exclusively, and a write whose condition fails changes nothing.
//!
//! # Deliberate differences from DynamoDB (and from dynalite)
//! - Global secondary indexes added by `UpdateTable` are built (backfilled) and become ACTIVE
//!   after the broker's state transition delay; dynalite never builds them, which stalls KCL 3.
//! - With a zero state transition delay, `CreateTable` answers ACTIVE; AWS and dynalite answer
//!   CREATING and switch a moment later.
//! - Scans return items in primary-key order, not in hash order; any stable order satisfies the
//!   API, and paging by `ExclusiveStartKey` resumes exactly. Parallel-scan segments partition
//!   by a hash of the partition key.
//! - `ItemCount` and `TableSizeBytes` are live; AWS refreshes them about every six hours.
//! - ConditionalOperator OR is a real disjunction (dynalite gives up at the first false
//!   condition).
//! - Time to live is recorded and reported but items do not expire; point-in-time recovery,
//!   streams and encryption settings are recorded only.
//! - Capacity is never exhausted: no throttling, `UnprocessedKeys`/`UnprocessedItems` are
//!   always empty, and `ConsumedCapacity` is a size-based estimate.
//! - `size()` of a string counts UTF-8 bytes (dynalite counts UTF-16 code units).
//! - Tables and items are in memory; with a data directory they are also persisted ([`store`])
//!   and survive restarts.

pub mod api;
pub mod expression;
pub mod items;
pub mod legacy;
pub mod number;
pub mod reads;
pub mod store;
pub mod table;
pub mod tables;
pub mod value;

use crate::config::BrokerConfig;
use crate::http::error::{ApiError, ApiResult};
use crate::http::protocol::Wire;
use crate::http::validation::Validator;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use table::Table;

/// One table behind its lock.
type SharedTable = Arc<RwLock<Table>>;

/// The DynamoDB service state: every table of this broker.
pub struct DynamoDb {
    config: BrokerConfig,
    tables: RwLock<BTreeMap<String, SharedTable>>,
    store: store::TableStore,
}

/// Table operations whose changes are persisted after them.
const TABLE_WRITES: [&str; 7] = [
    "CreateTable",
    "UpdateTable",
    "DeleteTable",
    "UpdateContinuousBackups",
    "UpdateTimeToLive",
    "TagResource",
    "UntagResource",
];

/// An item or table write could not be stored: it was not applied (items) or is not durable
/// (tables); the client may retry.
fn storage_failure(err: crate::storage::StorageError) -> ApiError {
    tracing::error!(%err, "cannot write DynamoDB state to the data directory");
    ApiError::internal("The change could not be stored.")
}

/// Reads through a lock. A panic while holding it cannot leave a table half-written (writes
/// build the new item first and then insert it), so a poisoned lock is still usable.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Writes through a lock; see [`read`] for why poisoning is ignored.
fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// The message DynamoDB gives for a table that does not exist (or is not ready).
fn table_not_found() -> ApiError {
    ApiError::not_found("Requested resource not found")
}

/// Checks a `TableName` member (a name or a table ARN) and returns the table name; empty when
/// the member is missing, which the validator has then recorded.
fn checked_table_name(validator: &mut Validator, value: &Option<String>) -> String {
    let Some(value) = validator.required(value, "tableName") else {
        return String::new();
    };
    let name = match value.strip_prefix("arn:") {
        Some(_) => value
            .rsplit_once(":table/")
            .map_or(value.as_str(), |(_, name)| name),
        None => value.as_str(),
    };
    validate_table_name(validator, name, "tableName");
    name.to_owned()
}

/// A `TableName` member on its own.
fn table_name(value: &Option<String>) -> ApiResult<String> {
    let mut validator = Validator::new();
    let name = checked_table_name(&mut validator, value);
    validator.finish()?;
    Ok(name)
}

/// Table and index names: 3–255 characters of `[a-zA-Z0-9_.-]`.
fn validate_table_name(validator: &mut Validator, name: &str, member: &str) {
    validator.length(name, member, 3, 255);
    validator.chars(name, member, "[a-zA-Z0-9_.-]+", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
    });
}

impl DynamoDb {
    /// Every table, in name order (for the status page and metrics).
    pub fn tables(&self) -> Vec<Arc<RwLock<Table>>> {
        read(&self.tables).values().cloned().collect()
    }

    /// An empty service.
    pub fn new(config: BrokerConfig) -> Self {
        Self {
            config,
            tables: RwLock::new(BTreeMap::new()),
            store: store::TableStore::default(),
        }
    }

    /// The service as a data directory left it.
    pub fn restore(
        config: BrokerConfig,
        storage: crate::storage::Storage,
        recovered: &crate::storage::Recovered,
    ) -> Result<Self, crate::storage::StorageError> {
        Ok(Self {
            config,
            tables: RwLock::new(store::restore(&recovered.meta)?),
            store: store::TableStore::new(storage, &recovered.meta),
        })
    }

    /// Runs one operation; table operations persist the table state they changed.
    pub fn dispatch(&self, operation: &str, wire: &Wire) -> ApiResult<Bytes> {
        let reply = self.run(operation, wire)?;
        if TABLE_WRITES.contains(&operation) {
            self.store.persist(&self.tables).map_err(storage_failure)?;
        }
        Ok(reply)
    }

    fn run(&self, operation: &str, wire: &Wire) -> ApiResult<Bytes> {
        match operation {
            "CreateTable" => wire.encode(&self.create_table(wire.decode()?)?),
            "DescribeTable" => wire.encode(&self.describe_table(wire.decode()?)?),
            "UpdateTable" => wire.encode(&self.update_table(wire.decode()?)?),
            "DeleteTable" => wire.encode(&self.delete_table(wire.decode()?)?),
            "ListTables" => wire.encode(&self.list_tables(wire.decode()?)?),
            "DescribeContinuousBackups" => {
                wire.encode(&self.describe_continuous_backups(wire.decode()?)?)
            }
            "UpdateContinuousBackups" => {
                wire.encode(&self.update_continuous_backups(wire.decode()?)?)
            }
            "DescribeTimeToLive" => wire.encode(&self.describe_time_to_live(wire.decode()?)?),
            "UpdateTimeToLive" => wire.encode(&self.update_time_to_live(wire.decode()?)?),
            "TagResource" => wire.encode(&self.tag_resource(wire.decode()?)?),
            "UntagResource" => wire.encode(&self.untag_resource(wire.decode()?)?),
            "ListTagsOfResource" => wire.encode(&self.list_tags_of_resource(wire.decode()?)?),
            "GetItem" => wire.encode(&self.get_item(wire.decode()?)?),
            "PutItem" => wire.encode(&self.put_item(wire.decode()?)?),
            "UpdateItem" => wire.encode(&self.update_item(wire.decode()?)?),
            "DeleteItem" => wire.encode(&self.delete_item(wire.decode()?)?),
            "BatchGetItem" => wire.encode(&self.batch_get_item(wire.decode()?)?),
            "BatchWriteItem" => wire.encode(&self.batch_write_item(wire.decode()?)?),
            "Scan" => wire.encode(&self.scan(wire.decode()?)?),
            "Query" => wire.encode(&self.query(wire.decode()?)?),
            _ => Err(ApiError::unknown_operation(operation)),
        }
    }

    /// Now, by the broker's clock.
    fn now(&self) -> i64 {
        self.config.clock.now_millis()
    }

    /// The state transition delay in milliseconds.
    fn transition_millis(&self) -> i64 {
        i64::try_from(self.config.state_transition_delay.as_millis()).unwrap_or(i64::MAX)
    }

    /// The ARN of table `name`.
    fn table_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:dynamodb:{}:{}:table/{name}",
            self.config.region, self.config.account_id
        )
    }

    /// The table called `name` in any state (including CREATING and DELETING); tables whose
    /// deletion has finished are dropped on the way.
    fn any_table(&self, name: &str) -> Option<SharedTable> {
        let now = self.now();
        let found = read(&self.tables).get(name).cloned()?;
        let gone = read(&found)
            .deleting_until
            .is_some_and(|until| now >= until);
        if gone {
            let mut tables = write(&self.tables);
            if tables.get(name).is_some_and(|t| Arc::ptr_eq(t, &found)) {
                tables.remove(name);
            }
            return None;
        }
        let settling = read(&found)
            .indexes
            .iter()
            .any(|index| index.deleting_until.is_some_and(|until| now >= until));
        if settling {
            write(&found).settle(now);
        }
        Some(found)
    }

    /// The table for control-plane operations: any state, `ResourceNotFoundException` naming
    /// the table if none (as DynamoDB words it for table operations).
    fn existing_table(&self, name: &str) -> ApiResult<SharedTable> {
        self.any_table(name).ok_or_else(|| {
            ApiError::not_found(format!(
                "Requested resource not found: Table: {name} not found"
            ))
        })
    }

    /// The table for item operations: it must be ACTIVE or UPDATING.
    fn usable_table(&self, name: &str) -> ApiResult<SharedTable> {
        let table = self.any_table(name).ok_or_else(table_not_found)?;
        let status = read(&table).status(self.now());
        if status == "CREATING" || status == "DELETING" {
            return Err(table_not_found());
        }
        Ok(table)
    }
}
