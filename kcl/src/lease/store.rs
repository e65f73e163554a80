//! The [`LeaseStore`] trait: where leases live. The KCL's lease logic (renewing, taking,
//! checkpointing) is written once on top of it; a store only persists leases and applies
//! conditional updates atomically.

use async_trait::async_trait;

use super::model::{Expectation, Lease, LeaseUpdate};

/// What a lease store reported.
#[derive(Debug, thiserror::Error)]
pub enum LeaseStoreError {
    /// The lease did not meet the expectation (or does not exist): another worker changed it.
    #[error("the lease changed since this worker last saw it (conditional check failed)")]
    ConditionFailed,
    /// The store is throttling requests; retry later.
    #[error("the lease table is throttling requests: {0}")]
    Throttled(String),
    /// The lease table does not exist (deleted while running?).
    #[error("lease table {0} does not exist")]
    TableNotFound(String),
    /// The table did not become usable in time.
    #[error("lease table {0} did not become ACTIVE in time")]
    TableNotReady(String),
    /// An item could not be read as a lease.
    #[error("lease item is malformed: {0}")]
    Malformed(String),
    /// Any other failure (network, permissions, ...).
    #[error("lease table request failed: {0}")]
    Request(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Persistent lease storage with per-lease atomic conditional updates.
///
/// [`DynamoDbLeaseStore`](super::DynamoDbLeaseStore) uses the Java KCL's table schema, so Java and
/// Rust workers can share a table; [`InMemoryLeaseStore`](super::InMemoryLeaseStore) serves tests.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Creates the lease table if it does not exist and waits until it is usable.
    async fn initialize(&self) -> Result<(), LeaseStoreError>;

    /// Every lease in the table (a strongly consistent scan).
    async fn list_leases(&self) -> Result<Vec<Lease>, LeaseStoreError>;

    /// One lease, strongly consistent; `None` if absent.
    async fn get_lease(&self, key: &str) -> Result<Option<Lease>, LeaseStoreError>;

    /// Creates `lease` unless a lease with its key exists; returns whether it was created.
    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool, LeaseStoreError>;

    /// Applies `update` to the lease if it exists and meets `expect`, atomically, and returns the
    /// lease as stored afterwards. Otherwise fails with [`LeaseStoreError::ConditionFailed`].
    async fn update_lease(
        &self,
        key: &str,
        expect: &Expectation,
        update: &LeaseUpdate,
    ) -> Result<Lease, LeaseStoreError>;

    /// Keys of the leases whose `leaseOwner` is `owner`. May lag behind writes (DynamoDB answers
    /// from the `LeaseOwnerToLeaseKeyIndex` index, eventually consistent): read a lease with
    /// [`get_lease`](Self::get_lease) before acting on it. The default scans the table.
    async fn list_lease_keys_owned_by(&self, owner: &str) -> Result<Vec<String>, LeaseStoreError> {
        Ok(self
            .list_leases()
            .await?
            .into_iter()
            .filter(|l| l.owner.as_deref() == Some(owner))
            .map(|l| l.key)
            .collect())
    }

    /// Deletes the lease if its checkpoint is `SHARD_END`; returns whether it was deleted.
    async fn delete_finished_lease(&self, key: &str) -> Result<bool, LeaseStoreError>;

    /// Deletes the lease whatever its state (the leases of a stream no longer consumed); returns
    /// whether it existed.
    async fn delete_lease(&self, key: &str) -> Result<bool, LeaseStoreError>;
}
