//! An in-memory [`LeaseStore`] for tests and single-process use. Nothing survives the process.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::model::{Expectation, Lease, LeaseUpdate};
use super::store::{LeaseStore, LeaseStoreError};

/// Leases in a map behind a mutex: every update is atomic, like a conditional DynamoDB write.
#[derive(Debug, Default)]
pub struct InMemoryLeaseStore {
    leases: Mutex<BTreeMap<String, Lease>>,
}

impl InMemoryLeaseStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn leases(&self) -> MutexGuard<'_, BTreeMap<String, Lease>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl LeaseStore for InMemoryLeaseStore {
    async fn initialize(&self) -> Result<(), LeaseStoreError> {
        Ok(())
    }

    async fn list_leases(&self) -> Result<Vec<Lease>, LeaseStoreError> {
        Ok(self.leases().values().cloned().collect())
    }

    async fn get_lease(&self, key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        Ok(self.leases().get(key).cloned())
    }

    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        let mut leases = self.leases();
        if leases.contains_key(&lease.key) {
            return Ok(false);
        }
        leases.insert(lease.key.clone(), lease.clone());
        Ok(true)
    }

    async fn update_lease(
        &self,
        key: &str,
        expect: &Expectation,
        update: &LeaseUpdate,
    ) -> Result<Lease, LeaseStoreError> {
        let mut leases = self.leases();
        match leases.get_mut(key) {
            Some(lease) if expect.is_met_by(lease) => {
                update.apply_to(lease);
                Ok(lease.clone())
            }
            _ => Err(LeaseStoreError::ConditionFailed),
        }
    }

    async fn delete_finished_lease(&self, key: &str) -> Result<bool, LeaseStoreError> {
        let mut leases = self.leases();
        if leases.get(key).is_some_and(Lease::is_finished) {
            leases.remove(key);
            return Ok(true);
        }
        Ok(false)
    }

    async fn delete_lease(&self, key: &str) -> Result<bool, LeaseStoreError> {
        Ok(self.leases().remove(key).is_some())
    }
}
