//! The DynamoDB [`LeaseStore`], with the Java KCL's lease table schema: table name = application
//! name, hash key `leaseKey` (S), billing PAY_PER_REQUEST, and the attribute names of the Java
//! `DynamoDBLeaseSerializer` (3.x: `throughputKBps`, `checkpointOwner`, and the
//! `LeaseOwnerToLeaseKeyIndex` index, hash `leaseOwner`, range `leaseKey`, keys only), so Java and
//! Rust workers can share one table. Attributes this crate does not know are left untouched:
//! leases are only created with `PutItem` and otherwise changed attribute by attribute with
//! `UpdateItem`. Leases of multi-stream applications also carry the Java `MultiStreamLease`
//! attributes `streamName` and `shardId`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CreateGlobalSecondaryIndexAction,
    GlobalSecondaryIndex, GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType, Projection,
    ProjectionType, ReturnValue, ScalarAttributeType, TableDescription, TableStatus,
};
use aws_smithy_types::Blob;

use super::load::ThroughputKbps;
use super::model::{Expectation, HashKeyRange, Lease, LeaseUpdate};
use super::store::{LeaseStore, LeaseStoreError};
use crate::checkpoint::{ExtendedSequenceNumber, PendingCheckpoint};

const LEASE_KEY: &str = "leaseKey";
const LEASE_OWNER: &str = "leaseOwner";
const LEASE_COUNTER: &str = "leaseCounter";
const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
const CHECKPOINT: &str = "checkpoint";
const CHECKPOINT_SUB: &str = "checkpointSubSequenceNumber";
const PENDING_CHECKPOINT: &str = "pendingCheckpoint";
const PENDING_CHECKPOINT_SUB: &str = "pendingCheckpointSubSequenceNumber";
const PENDING_CHECKPOINT_STATE: &str = "pendingCheckpointState";
const PARENT_SHARD_IDS: &str = "parentShardId";
const CHILD_SHARD_IDS: &str = "childShardIds";
const STARTING_HASH_KEY: &str = "startingHashKey";
const ENDING_HASH_KEY: &str = "endingHashKey";
const CHECKPOINT_OWNER: &str = "checkpointOwner";
const THROUGHPUT: &str = "throughputKBps";
/// The Java KCL 3.x index from owner to lease keys: workers list their own leases without a scan.
const LEASE_OWNER_INDEX: &str = "LeaseOwnerToLeaseKeyIndex";
/// Multi-stream leases only: `account:stream:creationEpoch` (named so in the Java KCL for legacy
/// reasons) and the bare shard id.
const STREAM_NAME: &str = "streamName";
const SHARD_ID: &str = "shardId";

/// How long a new table may take to become ACTIVE.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Leases in a DynamoDB table with the Java KCL schema.
#[derive(Debug, Clone)]
pub struct DynamoDbLeaseStore {
    client: Client,
    table: String,
}

impl DynamoDbLeaseStore {
    /// A store for `table` (the Java KCL names it after the application).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

/// A table this crate creates: a string hash key, an optional index with a string hash and range
/// key (projecting keys only), billing PAY_PER_REQUEST.
pub(crate) struct TableSpec<'a> {
    pub(crate) name: &'a str,
    pub(crate) hash_key: &'a str,
    /// (index name, hash key, range key).
    pub(crate) index: Option<(&'a str, &'a str, &'a str)>,
}

impl TableSpec<'_> {
    /// Creates the table unless it exists, waits until it is ACTIVE, and adds the index to a
    /// table created without it (by an older worker). Failing to add the index is only logged:
    /// readers fall back to scanning.
    pub(crate) async fn ensure(&self, client: &Client) -> Result<(), LeaseStoreError> {
        let status = match self.describe(client).await? {
            Some(table) => table,
            None => {
                self.create(client).await?;
                self.wait_active(client).await?
            }
        };
        let status = if status.table_status() == Some(&TableStatus::Active) {
            status
        } else {
            self.wait_active(client).await?
        };
        if let Some((index, hash, range)) = self.index {
            let has_index = status
                .global_secondary_indexes()
                .iter()
                .any(|i| i.index_name() == Some(index));
            if !has_index && let Err(err) = self.add_index(client, index, hash, range).await {
                tracing::warn!(table = %self.name, index, %err, "could not add the index; scanning instead");
            }
        }
        Ok(())
    }

    async fn describe(&self, client: &Client) -> Result<Option<TableDescription>, LeaseStoreError> {
        match client.describe_table().table_name(self.name).send().await {
            Ok(out) => Ok(out.table().cloned()),
            Err(err) => match classify(err, self.name) {
                LeaseStoreError::TableNotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn wait_active(&self, client: &Client) -> Result<TableDescription, LeaseStoreError> {
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
        let mut delay = Duration::from_millis(50);
        while tokio::time::Instant::now() < deadline {
            if let Some(table) = self.describe(client).await?
                && table.table_status() == Some(&TableStatus::Active)
            {
                return Ok(table);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        Err(LeaseStoreError::TableNotReady(self.name.to_owned()))
    }

    async fn create(&self, client: &Client) -> Result<(), LeaseStoreError> {
        let mut request = client
            .create_table()
            .table_name(self.name)
            .attribute_definitions(string_attribute(self.hash_key)?)
            .key_schema(key_element(self.hash_key, KeyType::Hash)?)
            .billing_mode(BillingMode::PayPerRequest);
        if let Some((index, hash, range)) = self.index {
            for attr in [hash, range] {
                if attr != self.hash_key {
                    request = request.attribute_definitions(string_attribute(attr)?);
                }
            }
            request = request.global_secondary_indexes(keys_only_index(index, hash, range)?);
        }
        match request.send().await {
            Ok(_) => {
                tracing::info!(table = %self.name, "created table");
                Ok(())
            }
            // Another worker created it first.
            Err(err) if err.code() == Some("ResourceInUseException") => Ok(()),
            Err(err) => Err(classify(err, self.name)),
        }
    }

    async fn add_index(
        &self,
        client: &Client,
        index: &str,
        hash: &str,
        range: &str,
    ) -> Result<(), LeaseStoreError> {
        let create = CreateGlobalSecondaryIndexAction::builder()
            .index_name(index)
            .set_key_schema(Some(index_key_schema(hash, range)?))
            .projection(keys_only())
            .build()
            .map_err(build_error)?;
        let updated = client
            .update_table()
            .table_name(self.name)
            .attribute_definitions(string_attribute(hash)?)
            .attribute_definitions(string_attribute(range)?)
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder().create(create).build(),
            )
            .send()
            .await;
        match updated {
            Ok(_) => {
                tracing::info!(table = %self.name, index, "added index");
                Ok(())
            }
            // Another worker added it first.
            Err(err) if err.code() == Some("ResourceInUseException") => Ok(()),
            Err(err) => Err(classify(err, self.name)),
        }
    }
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> LeaseStoreError {
    LeaseStoreError::Request(e.into())
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, LeaseStoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(build_error)
}

fn key_element(name: &str, key_type: KeyType) -> Result<KeySchemaElement, LeaseStoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(build_error)
}

fn keys_only_index(
    index: &str,
    hash: &str,
    range: &str,
) -> Result<GlobalSecondaryIndex, LeaseStoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(index)
        .set_key_schema(Some(index_key_schema(hash, range)?))
        .projection(keys_only())
        .build()
        .map_err(build_error)
}

fn index_key_schema(hash: &str, range: &str) -> Result<Vec<KeySchemaElement>, LeaseStoreError> {
    Ok(vec![
        key_element(hash, KeyType::Hash)?,
        key_element(range, KeyType::Range)?,
    ])
}

fn keys_only() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::KeysOnly)
        .build()
}

#[async_trait]
impl LeaseStore for DynamoDbLeaseStore {
    async fn initialize(&self) -> Result<(), LeaseStoreError> {
        TableSpec {
            name: &self.table,
            hash_key: LEASE_KEY,
            index: Some((LEASE_OWNER_INDEX, LEASE_OWNER, LEASE_KEY)),
        }
        .ensure(&self.client)
        .await
    }

    async fn list_leases(&self) -> Result<Vec<Lease>, LeaseStoreError> {
        let mut leases = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| classify(e, &self.table))?;
            for item in page.items() {
                match lease_from_item(item) {
                    Ok(lease) => leases.push(lease),
                    // One foreign item must not stop the fleet; say so and go on.
                    Err(err) => tracing::warn!(table = %self.table, %err, "skipping item"),
                }
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start_key = Some(key.clone()),
                _ => return Ok(leases),
            }
        }
    }

    async fn get_lease(&self, key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(LEASE_KEY, AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(e, &self.table))?;
        out.item().map(lease_from_item).transpose()
    }

    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(lease_to_item(lease)))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", LEASE_KEY)
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(err) => match classify(err, &self.table) {
                LeaseStoreError::ConditionFailed => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn update_lease(
        &self,
        key: &str,
        expect: &Expectation,
        update: &LeaseUpdate,
    ) -> Result<Lease, LeaseStoreError> {
        let request = UpdateRequest::new(expect, update);
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, AttributeValue::S(key.to_owned()))
            .condition_expression(request.condition)
            .update_expression(request.update)
            .set_expression_attribute_names(Some(request.names))
            .set_expression_attribute_values((!request.values.is_empty()).then_some(request.values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| classify(e, &self.table))?;
        let item = out.attributes().ok_or_else(|| {
            LeaseStoreError::Malformed(format!("UpdateItem on {key} returned no attributes"))
        })?;
        lease_from_item(item)
    }

    async fn list_lease_keys_owned_by(&self, owner: &str) -> Result<Vec<String>, LeaseStoreError> {
        let mut keys = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(LEASE_OWNER_INDEX)
                .key_condition_expression("#o = :o")
                .expression_attribute_names("#o", LEASE_OWNER)
                .expression_attribute_values(":o", string(owner))
                .set_exclusive_start_key(start_key)
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                // A table without the index (it could not be added): scan instead.
                Err(err) if err.code() == Some("ValidationException") => {
                    tracing::debug!(table = %self.table, "no {LEASE_OWNER_INDEX}; scanning");
                    let leases = self.list_leases().await?;
                    return Ok(leases
                        .into_iter()
                        .filter(|l| l.owner.as_deref() == Some(owner))
                        .map(|l| l.key)
                        .collect());
                }
                Err(err) => return Err(classify(err, &self.table)),
            };
            for item in page.items() {
                if let Some(key) = get_string(item, LEASE_KEY)? {
                    keys.push(key);
                }
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start_key = Some(key.clone()),
                _ => return Ok(keys),
            }
        }
    }

    async fn delete_finished_lease(&self, key: &str) -> Result<bool, LeaseStoreError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(LEASE_KEY, AttributeValue::S(key.to_owned()))
            .condition_expression("#c = :end")
            .expression_attribute_names("#c", CHECKPOINT)
            .expression_attribute_values(
                ":end",
                AttributeValue::S(ExtendedSequenceNumber::SHARD_END.to_owned()),
            )
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(true),
            Err(err) => match classify(err, &self.table) {
                LeaseStoreError::ConditionFailed => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn delete_lease(&self, key: &str) -> Result<bool, LeaseStoreError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(LEASE_KEY, AttributeValue::S(key.to_owned()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| classify(e, &self.table))?;
        Ok(deleted.attributes().is_some_and(|a| !a.is_empty()))
    }
}

/// An `UpdateItem` in expression form. Every attribute goes through a `#name` placeholder, so
/// reserved words never matter.
struct UpdateRequest {
    condition: String,
    update: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl UpdateRequest {
    fn new(expect: &Expectation, change: &LeaseUpdate) -> Self {
        let mut req = Self {
            condition: String::new(),
            update: String::new(),
            names: HashMap::new(),
            values: HashMap::new(),
        };
        let mut conditions = vec![format!("attribute_exists({})", req.name(LEASE_KEY))];
        if let Some(counter) = expect.counter {
            let (n, v) = (req.name(LEASE_COUNTER), req.value(number(counter)));
            conditions.push(format!("{n} = {v}"));
        }
        if let Some(owner) = &expect.owner {
            let (n, v) = (req.name(LEASE_OWNER), req.value(string(owner)));
            conditions.push(format!("{n} = {v}"));
        }
        if expect.no_checkpoint_owner {
            conditions.push(format!(
                "attribute_not_exists({})",
                req.name(CHECKPOINT_OWNER)
            ));
        }

        let mut set = Vec::new();
        let mut remove = Vec::new();
        if change.increment_counter {
            let (n, v) = (req.name(LEASE_COUNTER), req.value(number(1)));
            set.push(format!("{n} = {n} + {v}"));
        }
        let mut optional = |req: &mut Self, attr: &str, value: Option<AttributeValue>| match value {
            Some(value) => {
                let (n, v) = (req.name(attr), req.value(value));
                set.push(format!("{n} = {v}"));
            }
            None => remove.push(req.name(attr)),
        };
        if let Some(owner) = &change.owner {
            optional(&mut req, LEASE_OWNER, owner.as_deref().map(string));
        }
        if let Some(owner) = &change.checkpoint_owner {
            optional(&mut req, CHECKPOINT_OWNER, owner.as_deref().map(string));
        }
        if let Some(switches) = change.owner_switches_since_checkpoint {
            optional(&mut req, OWNER_SWITCHES, Some(number(switches)));
        }
        if let Some(throughput) = change.throughput {
            optional(&mut req, THROUGHPUT, Some(decimal(throughput)));
        }
        if let Some(cp) = &change.checkpoint {
            optional(
                &mut req,
                CHECKPOINT,
                Some(string(cp.checkpoint.stored_sequence())),
            );
            optional(
                &mut req,
                CHECKPOINT_SUB,
                Some(number(cp.checkpoint.stored_sub_sequence())),
            );
            let pending = cp.pending.as_ref();
            optional(
                &mut req,
                PENDING_CHECKPOINT,
                pending.map(|p| string(p.position.stored_sequence())),
            );
            optional(
                &mut req,
                PENDING_CHECKPOINT_SUB,
                pending.map(|p| number(p.position.stored_sub_sequence())),
            );
            optional(
                &mut req,
                PENDING_CHECKPOINT_STATE,
                pending
                    .and_then(|p| p.application_state.as_ref())
                    .map(|s| AttributeValue::B(Blob::new(s.to_vec()))),
            );
            if !cp.child_shard_ids.is_empty() {
                optional(
                    &mut req,
                    CHILD_SHARD_IDS,
                    Some(AttributeValue::Ss(cp.child_shard_ids.clone())),
                );
            }
        }

        req.condition = conditions.join(" AND ");
        let mut clauses = Vec::new();
        if !set.is_empty() {
            clauses.push(format!("SET {}", set.join(", ")));
        }
        if !remove.is_empty() {
            clauses.push(format!("REMOVE {}", remove.join(", ")));
        }
        req.update = clauses.join(" ");
        req
    }

    fn name(&mut self, attr: &str) -> String {
        let placeholder = format!("#a{}", self.names.len());
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }
}

fn string(s: &str) -> AttributeValue {
    AttributeValue::S(s.to_owned())
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// `throughputKBps` as the Java KCL writes it: a decimal number.
fn decimal(throughput: ThroughputKbps) -> AttributeValue {
    // Three decimals (bytes/s resolution) keep items small and the text stable.
    AttributeValue::N(format!("{:.3}", throughput.kbps()))
}

/// The item the Java KCL would write for `lease`.
pub(crate) fn lease_to_item(lease: &Lease) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::new();
    let mut put = |k: &str, v: AttributeValue| item.insert(k.to_owned(), v);
    put(LEASE_KEY, string(&lease.key));
    put(LEASE_COUNTER, number(lease.counter));
    if let Some(owner) = &lease.owner {
        put(LEASE_OWNER, string(owner));
    }
    put(
        OWNER_SWITCHES,
        number(lease.owner_switches_since_checkpoint),
    );
    put(CHECKPOINT, string(lease.checkpoint.stored_sequence()));
    put(
        CHECKPOINT_SUB,
        number(lease.checkpoint.stored_sub_sequence()),
    );
    if let Some(pending) = &lease.pending_checkpoint {
        put(
            PENDING_CHECKPOINT,
            string(pending.position.stored_sequence()),
        );
        put(
            PENDING_CHECKPOINT_SUB,
            number(pending.position.stored_sub_sequence()),
        );
        if let Some(state) = &pending.application_state {
            put(
                PENDING_CHECKPOINT_STATE,
                AttributeValue::B(Blob::new(state.to_vec())),
            );
        }
    }
    if !lease.parent_shard_ids.is_empty() {
        put(
            PARENT_SHARD_IDS,
            AttributeValue::Ss(lease.parent_shard_ids.clone()),
        );
    }
    if !lease.child_shard_ids.is_empty() {
        put(
            CHILD_SHARD_IDS,
            AttributeValue::Ss(lease.child_shard_ids.clone()),
        );
    }
    if let Some(range) = &lease.hash_key_range {
        put(
            STARTING_HASH_KEY,
            string(&range.starting_hash_key.to_string()),
        );
        put(ENDING_HASH_KEY, string(&range.ending_hash_key.to_string()));
    }
    if let Some(owner) = &lease.checkpoint_owner {
        put(CHECKPOINT_OWNER, string(owner));
    }
    if let Some(throughput) = lease.throughput {
        put(THROUGHPUT, decimal(throughput));
    }
    if let Some(stream) = &lease.stream {
        put(STREAM_NAME, string(&stream.to_string()));
        put(SHARD_ID, string(&lease.shard_id));
    }
    item
}

/// Reads an item written by this crate or by the Java KCL.
pub(crate) fn lease_from_item(
    item: &HashMap<String, AttributeValue>,
) -> Result<Lease, LeaseStoreError> {
    let key = get_string(item, LEASE_KEY)?
        .ok_or_else(|| LeaseStoreError::Malformed(format!("item without {LEASE_KEY}")))?;
    let malformed = |what: String| LeaseStoreError::Malformed(format!("lease {key}: {what}"));
    let checkpoint_text = get_string(item, CHECKPOINT)?
        .ok_or_else(|| malformed(format!("no {CHECKPOINT} attribute")))?;
    let checkpoint = ExtendedSequenceNumber::from_stored(
        &checkpoint_text,
        get_number(item, CHECKPOINT_SUB)?.unwrap_or(0),
    )
    .map_err(|e| malformed(e.to_string()))?;
    let pending_checkpoint = match get_string(item, PENDING_CHECKPOINT)? {
        Some(seq) if !seq.is_empty() => Some(PendingCheckpoint {
            position: ExtendedSequenceNumber::from_stored(
                &seq,
                get_number(item, PENDING_CHECKPOINT_SUB)?.unwrap_or(0),
            )
            .map_err(|e| malformed(e.to_string()))?,
            application_state: match item.get(PENDING_CHECKPOINT_STATE) {
                Some(AttributeValue::B(b)) => Some(bytes::Bytes::from(b.clone().into_inner())),
                _ => None,
            },
        }),
        _ => None,
    };
    let hash_key_range = match (
        get_string(item, STARTING_HASH_KEY)?,
        get_string(item, ENDING_HASH_KEY)?,
    ) {
        (Some(start), Some(end)) => Some(HashKeyRange {
            starting_hash_key: start
                .parse()
                .map_err(|_| malformed(format!("{STARTING_HASH_KEY} {start:?}")))?,
            ending_hash_key: end
                .parse()
                .map_err(|_| malformed(format!("{ENDING_HASH_KEY} {end:?}")))?,
        }),
        _ => None,
    };
    let (stream, shard_id) = match get_string(item, STREAM_NAME)? {
        Some(stream) => (
            Some(stream.parse().map_err(|e| malformed(format!("{e}")))?),
            get_string(item, SHARD_ID)?
                .ok_or_else(|| malformed(format!("{STREAM_NAME} without {SHARD_ID}")))?,
        ),
        None => (None, key.clone()),
    };
    Ok(Lease {
        stream,
        shard_id,
        owner: get_string(item, LEASE_OWNER)?,
        counter: get_number(item, LEASE_COUNTER)?.unwrap_or(0),
        owner_switches_since_checkpoint: get_number(item, OWNER_SWITCHES)?.unwrap_or(0),
        checkpoint,
        pending_checkpoint,
        parent_shard_ids: get_string_set(item, PARENT_SHARD_IDS),
        child_shard_ids: get_string_set(item, CHILD_SHARD_IDS),
        hash_key_range,
        checkpoint_owner: get_string(item, CHECKPOINT_OWNER)?,
        throughput: get_decimal(item, THROUGHPUT)?,
        key,
    })
}

fn get_string(
    item: &HashMap<String, AttributeValue>,
    attr: &str,
) -> Result<Option<String>, LeaseStoreError> {
    match item.get(attr) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
        Some(other) => Err(LeaseStoreError::Malformed(format!(
            "{attr} should be a string, found {other:?}"
        ))),
    }
}

fn get_number(
    item: &HashMap<String, AttributeValue>,
    attr: &str,
) -> Result<Option<u64>, LeaseStoreError> {
    match item.get(attr) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(n)) => n.parse().map(Some).map_err(|_| {
            LeaseStoreError::Malformed(format!("{attr} should be a whole number, found {n:?}"))
        }),
        Some(other) => Err(LeaseStoreError::Malformed(format!(
            "{attr} should be a number, found {other:?}"
        ))),
    }
}

fn get_decimal(
    item: &HashMap<String, AttributeValue>,
    attr: &str,
) -> Result<Option<ThroughputKbps>, LeaseStoreError> {
    match item.get(attr) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(n)) => {
            n.parse()
                .map(|v| Some(ThroughputKbps::new(v)))
                .map_err(|_| {
                    LeaseStoreError::Malformed(format!("{attr} should be a number, found {n:?}"))
                })
        }
        Some(other) => Err(LeaseStoreError::Malformed(format!(
            "{attr} should be a number, found {other:?}"
        ))),
    }
}

fn get_string_set(item: &HashMap<String, AttributeValue>, attr: &str) -> Vec<String> {
    match item.get(attr) {
        Some(AttributeValue::Ss(set)) => {
            let mut set = set.clone();
            set.sort();
            set
        }
        _ => Vec::new(),
    }
}

/// The one place that maps DynamoDB errors to lease store errors.
pub(crate) fn classify<E, R>(err: SdkError<E, R>, table: &str) -> LeaseStoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.code() {
        Some("ConditionalCheckFailedException") => LeaseStoreError::ConditionFailed,
        Some("ResourceNotFoundException") => LeaseStoreError::TableNotFound(table.to_owned()),
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded",
        ) => LeaseStoreError::Throttled(err.message().unwrap_or_default().to_owned()),
        _ => LeaseStoreError::Request(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SequenceNumber;
    use crate::lease::model::CheckpointUpdate;

    fn full_lease() -> Lease {
        let seq: SequenceNumber = "49590338271490256608559692538361571095921575989136588898"
            .parse()
            .expect("digits");
        Lease {
            key: "shardId-000000000002".into(),
            stream: None,
            shard_id: "shardId-000000000002".into(),
            owner: Some("worker-a".into()),
            counter: 42,
            owner_switches_since_checkpoint: 3,
            checkpoint: ExtendedSequenceNumber::record(seq.clone(), 7),
            pending_checkpoint: Some(PendingCheckpoint {
                position: ExtendedSequenceNumber::record(seq, 9),
                application_state: Some(bytes::Bytes::from_static(b"state")),
            }),
            parent_shard_ids: vec!["shardId-000000000000".into(), "shardId-000000000001".into()],
            child_shard_ids: vec!["shardId-000000000003".into()],
            hash_key_range: Some(HashKeyRange {
                starting_hash_key: 0,
                ending_hash_key: u128::MAX,
            }),
            checkpoint_owner: Some("worker-b".into()),
            throughput: Some(ThroughputKbps::new(1.5)),
        }
    }

    #[test]
    fn items_use_the_java_kcl_attribute_names_and_types() {
        let item = lease_to_item(&full_lease());
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let n = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).cloned();
        assert_eq!(s("leaseKey").as_deref(), Some("shardId-000000000002"));
        assert_eq!(s("leaseOwner").as_deref(), Some("worker-a"));
        assert_eq!(n("leaseCounter").as_deref(), Some("42"));
        assert_eq!(n("ownerSwitchesSinceCheckpoint").as_deref(), Some("3"));
        assert_eq!(n("checkpointSubSequenceNumber").as_deref(), Some("7"));
        assert_eq!(
            n("pendingCheckpointSubSequenceNumber").as_deref(),
            Some("9")
        );
        assert!(item["pendingCheckpointState"].is_b());
        assert_eq!(
            item["parentShardId"]
                .as_ss()
                .map(Vec::len)
                .unwrap_or_default(),
            2
        );
        assert!(item["childShardIds"].is_ss());
        assert_eq!(s("startingHashKey").as_deref(), Some("0"));
        assert_eq!(
            s("endingHashKey").as_deref(),
            Some("340282366920938463463374607431768211455")
        );
        assert_eq!(s("checkpointOwner").as_deref(), Some("worker-b"));
        assert_eq!(n("throughputKBps").as_deref(), Some("1.500"));
    }

    #[test]
    fn leases_round_trip_through_items() {
        let lease = full_lease();
        assert_eq!(lease_from_item(&lease_to_item(&lease)).ok(), Some(lease));
        let fresh = Lease::new("shardId-000000000000", ExtendedSequenceNumber::TrimHorizon);
        let item = lease_to_item(&fresh);
        assert_eq!(
            item["checkpoint"].as_s().map(String::as_str),
            Ok("TRIM_HORIZON")
        );
        assert!(!item.contains_key("leaseOwner"));
        assert_eq!(lease_from_item(&item).ok(), Some(fresh));
    }

    #[test]
    fn multi_stream_leases_carry_the_java_multi_stream_lease_attributes() {
        let stream: crate::stream::StreamIdentifier =
            "123456789012:orders:1700000000".parse().expect("valid");
        let lease = Lease::for_shard(
            Some(&stream),
            "shardId-000000000001",
            ExtendedSequenceNumber::Latest,
        );
        let item = lease_to_item(&lease);
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        assert_eq!(
            s("leaseKey").as_deref(),
            Some("123456789012:orders:1700000000:shardId-000000000001")
        );
        assert_eq!(
            s("streamName").as_deref(),
            Some("123456789012:orders:1700000000")
        );
        assert_eq!(s("shardId").as_deref(), Some("shardId-000000000001"));
        assert_eq!(lease_from_item(&item).ok(), Some(lease));
        // Single-stream leases have neither.
        let single = lease_to_item(&full_lease());
        assert!(!single.contains_key("streamName") && !single.contains_key("shardId"));
    }

    #[test]
    fn multi_stream_items_written_by_the_java_kcl_are_read() {
        let item = HashMap::from([
            (
                "leaseKey".to_owned(),
                string("123456789012:orders:1700000000:shardId-000000000004"),
            ),
            (
                "streamName".to_owned(),
                string("123456789012:orders:1700000000"),
            ),
            ("shardId".to_owned(), string("shardId-000000000004")),
            ("leaseOwner".to_owned(), string("java-worker")),
            ("leaseCounter".to_owned(), number(12)),
            ("checkpoint".to_owned(), string("TRIM_HORIZON")),
            (
                "parentShardId".to_owned(),
                AttributeValue::Ss(vec!["shardId-000000000001".into()]),
            ),
        ]);
        let lease = lease_from_item(&item).expect("a lease");
        assert_eq!(lease.shard_id, "shardId-000000000004");
        assert_eq!(lease.stream.as_ref().map(|s| s.name()), Some("orders"));
        assert_eq!(lease.parent_shard_ids, ["shardId-000000000001"]);
        let mut no_shard = item.clone();
        no_shard.remove("shardId");
        assert!(matches!(
            lease_from_item(&no_shard),
            Err(LeaseStoreError::Malformed(_))
        ));
    }

    #[test]
    fn items_written_by_the_java_kcl_without_optional_attributes_are_read() {
        let item = HashMap::from([
            ("leaseKey".to_owned(), string("shardId-000000000001")),
            ("leaseCounter".to_owned(), number(5)),
            ("checkpoint".to_owned(), string("SHARD_END")),
            ("throughputKBps".to_owned(), AttributeValue::N("1.5".into())),
        ]);
        let lease = lease_from_item(&item).expect("a lease");
        assert!(lease.is_finished());
        assert_eq!(lease.owner, None);
        assert_eq!(lease.counter, 5);
        assert_eq!(lease.throughput, Some(ThroughputKbps::new(1.5)));
    }

    #[test]
    fn update_requests_condition_on_the_counter_and_set_or_remove_each_field() {
        let expect = Expectation {
            counter: Some(7),
            owner: Some("me".into()),
            no_checkpoint_owner: true,
        };
        let update = LeaseUpdate {
            increment_counter: true,
            owner: Some(None),
            checkpoint_owner: Some(Some("me".into())),
            owner_switches_since_checkpoint: Some(0),
            checkpoint: Some(CheckpointUpdate {
                checkpoint: ExtendedSequenceNumber::ShardEnd,
                pending: None,
                child_shard_ids: vec!["c".into()],
            }),
            throughput: Some(ThroughputKbps::new(2.0)),
        };
        let req = UpdateRequest::new(&expect, &update);
        let resolve = |text: &str| {
            let mut text = text.to_owned();
            // Longest placeholders first so `#a1` does not eat the prefix of `#a10`.
            let mut names: Vec<_> = req.names.iter().collect();
            names.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
            for (k, v) in names {
                text = text.replace(k.as_str(), v);
            }
            text
        };
        assert_eq!(
            resolve(&req.condition),
            "attribute_exists(leaseKey) AND leaseCounter = :v0 AND leaseOwner = :v1 \
             AND attribute_not_exists(checkpointOwner)"
        );
        let update = resolve(&req.update);
        assert!(update.starts_with("SET leaseCounter = leaseCounter + :v2, checkpointOwner = "));
        assert!(update.contains("checkpoint = :v"));
        assert!(update.contains("childShardIds = :v"));
        assert!(update.contains("throughputKBps = :v"));
        assert!(update.contains(
            "REMOVE leaseOwner, pendingCheckpoint, pendingCheckpointSubSequenceNumber, \
             pendingCheckpointState"
        ));
        assert_eq!(req.values[":v0"], number(7));
    }
}
