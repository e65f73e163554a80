//! The [`CoordinatorStore`]: where workers publish their [`WorkerLoad`] and where the leader's
//! lock lives, next to the lease table. Load-aware assignment needs it; the lease-count strategy
//! does not touch it.
//!
//! In DynamoDB ([`DynamoDbCoordinatorStore`]) these are the two tables the Java KCL 3.x keeps
//! beside the lease table, with the same names and keys: `<application>-WorkerMetricStats`
//! (hash key `wid`) and `<application>-CoordinatorState` (hash key `key`; the leader lock is the
//! item `key = "Leader"`, with the attributes of the Amazon DynamoDB Lock Client: `ownerName`,
//! `recordVersionNumber`, `leaseDuration`; ours add `assignmentEpoch` and `assignedWorkers`, the
//! leader's [`Assignments`] announcement, which a Java leader's writes simply leave out). Worker items hold `wid`, `seq` (bumped by every
//! report), `cpu` (percent of the worker's CPU limit), `tput` (KB/s of its leases), `leases`,
//! `draining`, and `lut` (last update, epoch seconds, informational only: liveness is observed
//! through `seq`, never through another host's clock). The Java 3.x worker items carry richer
//! metric histories under other attribute names; the two kinds of worker can share the lease
//! table, but each leader reads only its own kind of worker report.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use super::dynamodb::{TableSpec, classify};
use super::load::{ThroughputKbps, WorkerLoad};
use super::store::LeaseStoreError;

/// A lease-based lock record (the Java KCL's `CoordinatorState` leader lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecord {
    /// The holder (`ownerName`).
    pub owner: String,
    /// A fresh random value per write (`recordVersionNumber`): others see the holder alive while
    /// it changes.
    pub version: String,
    /// How long others wait after the version last changed before taking the lock
    /// (`leaseDuration`).
    pub lease_duration: Duration,
    /// What the leader announces with the lock; `None` from leaders that announce nothing (the
    /// Java KCL's), whose followers must look for new leases every round.
    pub assignments: Option<Assignments>,
}

/// The leader's announcement of its latest assignments, carried on every lock write so followers
/// look for new leases (a `LeaseOwnerToLeaseKeyIndex` query) only when some were named for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignments {
    /// Bumped by every leader round that named leases for workers, and by a new leader's first
    /// write (`assignmentEpoch`).
    pub epoch: u64,
    /// The workers named in the round that set `epoch` (`assignedWorkers`; none after a new
    /// leader's first write).
    pub workers: Vec<String>,
}

/// Storage for worker load reports and the leader lock, with atomic conditional lock writes.
#[async_trait]
pub trait CoordinatorStore: Send + Sync + 'static {
    /// Creates the storage if needed.
    async fn initialize(&self) -> Result<(), LeaseStoreError>;

    /// Writes (replaces) this worker's report.
    async fn publish_worker_load(&self, load: &WorkerLoad) -> Result<(), LeaseStoreError>;

    /// Removes a worker's report (a worker that stopped).
    async fn remove_worker_load(&self, worker_id: &str) -> Result<(), LeaseStoreError>;

    /// Every worker's last report.
    async fn list_worker_loads(&self) -> Result<Vec<WorkerLoad>, LeaseStoreError>;

    /// The lock called `name`, if held.
    async fn read_lock(&self, name: &str) -> Result<Option<LockRecord>, LeaseStoreError>;

    /// Writes the lock if its current version is `expected_version` (`None`: if it does not
    /// exist); otherwise fails with [`LeaseStoreError::ConditionFailed`].
    async fn write_lock(
        &self,
        name: &str,
        record: &LockRecord,
        expected_version: Option<&str>,
    ) -> Result<(), LeaseStoreError>;
}

/// Worker reports and locks in memory, for tests and single-process fleets.
#[derive(Debug, Default)]
pub struct InMemoryCoordinatorStore {
    workers: Mutex<BTreeMap<String, WorkerLoad>>,
    locks: Mutex<HashMap<String, LockRecord>>,
}

impl InMemoryCoordinatorStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl CoordinatorStore for InMemoryCoordinatorStore {
    async fn initialize(&self) -> Result<(), LeaseStoreError> {
        Ok(())
    }

    async fn publish_worker_load(&self, load: &WorkerLoad) -> Result<(), LeaseStoreError> {
        locked(&self.workers).insert(load.worker_id.clone(), load.clone());
        Ok(())
    }

    async fn remove_worker_load(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        locked(&self.workers).remove(worker_id);
        Ok(())
    }

    async fn list_worker_loads(&self) -> Result<Vec<WorkerLoad>, LeaseStoreError> {
        Ok(locked(&self.workers).values().cloned().collect())
    }

    async fn read_lock(&self, name: &str) -> Result<Option<LockRecord>, LeaseStoreError> {
        Ok(locked(&self.locks).get(name).cloned())
    }

    async fn write_lock(
        &self,
        name: &str,
        record: &LockRecord,
        expected_version: Option<&str>,
    ) -> Result<(), LeaseStoreError> {
        let mut locks = locked(&self.locks);
        let current = locks.get(name).map(|l| l.version.as_str());
        if current != expected_version {
            return Err(LeaseStoreError::ConditionFailed);
        }
        locks.insert(name.to_owned(), record.clone());
        Ok(())
    }
}

const WORKER_ID: &str = "wid";
const SEQUENCE: &str = "seq";
const CPU: &str = "cpu";
const THROUGHPUT: &str = "tput";
const LEASES: &str = "leases";
const DRAINING: &str = "draining";
const LAST_UPDATE: &str = "lut";
const LOCK_KEY: &str = "key";
const LOCK_OWNER: &str = "ownerName";
const LOCK_VERSION: &str = "recordVersionNumber";
const LOCK_DURATION: &str = "leaseDuration";
const ASSIGNMENT_EPOCH: &str = "assignmentEpoch";
const ASSIGNED_WORKERS: &str = "assignedWorkers";

/// Worker reports and the leader lock in the Java KCL 3.x side tables (see the module docs).
#[derive(Debug, Clone)]
pub struct DynamoDbCoordinatorStore {
    client: Client,
    workers_table: String,
    state_table: String,
}

impl DynamoDbCoordinatorStore {
    /// The tables of `application`: `<application>-WorkerMetricStats` and
    /// `<application>-CoordinatorState`.
    pub fn new(client: Client, application: &str) -> Self {
        Self {
            client,
            workers_table: format!("{application}-WorkerMetricStats"),
            state_table: format!("{application}-CoordinatorState"),
        }
    }
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn get_n<T: std::str::FromStr>(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<T> {
    item.get(attr)?.as_n().ok()?.parse().ok()
}

fn get_s(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<String> {
    item.get(attr)?.as_s().ok().cloned()
}

fn load_from_item(item: &HashMap<String, AttributeValue>) -> Option<WorkerLoad> {
    Some(WorkerLoad {
        worker_id: get_s(item, WORKER_ID)?,
        // Without `seq` the report is not ours (a Java 3.x worker's): not read as a worker.
        sequence: get_n(item, SEQUENCE)?,
        cpu_percent: get_n::<f64>(item, CPU).filter(|c| c.is_finite()),
        throughput: ThroughputKbps::new(get_n(item, THROUGHPUT).unwrap_or(0.0)),
        leases: get_n(item, LEASES).unwrap_or(0),
        draining: item
            .get(DRAINING)
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
    })
}

#[async_trait]
impl CoordinatorStore for DynamoDbCoordinatorStore {
    async fn initialize(&self) -> Result<(), LeaseStoreError> {
        for (name, hash_key) in [
            (&self.workers_table, WORKER_ID),
            (&self.state_table, LOCK_KEY),
        ] {
            TableSpec {
                name,
                hash_key,
                index: None,
            }
            .ensure(&self.client)
            .await?;
        }
        Ok(())
    }

    async fn publish_worker_load(&self, load: &WorkerLoad) -> Result<(), LeaseStoreError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut item = HashMap::from([
            (
                WORKER_ID.to_owned(),
                AttributeValue::S(load.worker_id.clone()),
            ),
            (SEQUENCE.to_owned(), n(load.sequence)),
            (
                THROUGHPUT.to_owned(),
                AttributeValue::N(format!("{:.3}", load.throughput.kbps())),
            ),
            (LEASES.to_owned(), n(load.leases)),
            (DRAINING.to_owned(), AttributeValue::Bool(load.draining)),
            (LAST_UPDATE.to_owned(), n(now)),
        ]);
        if let Some(cpu) = load.cpu_percent {
            item.insert(CPU.to_owned(), AttributeValue::N(format!("{cpu:.2}")));
        }
        self.client
            .put_item()
            .table_name(&self.workers_table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify(e, &self.workers_table))?;
        Ok(())
    }

    async fn remove_worker_load(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        self.client
            .delete_item()
            .table_name(&self.workers_table)
            .key(WORKER_ID, AttributeValue::S(worker_id.to_owned()))
            .send()
            .await
            .map_err(|e| classify(e, &self.workers_table))?;
        Ok(())
    }

    async fn list_worker_loads(&self) -> Result<Vec<WorkerLoad>, LeaseStoreError> {
        let mut loads = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.workers_table)
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| classify(e, &self.workers_table))?;
            loads.extend(page.items().iter().filter_map(load_from_item));
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start_key = Some(key.clone()),
                _ => return Ok(loads),
            }
        }
    }

    async fn read_lock(&self, name: &str) -> Result<Option<LockRecord>, LeaseStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.state_table)
            .key(LOCK_KEY, AttributeValue::S(name.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(e, &self.state_table))?;
        Ok(out.item().and_then(|item| {
            Some(LockRecord {
                owner: get_s(item, LOCK_OWNER)?,
                version: get_s(item, LOCK_VERSION)?,
                lease_duration: Duration::from_millis(get_n(item, LOCK_DURATION)?),
                assignments: get_n(item, ASSIGNMENT_EPOCH).map(|epoch| Assignments {
                    epoch,
                    workers: item
                        .get(ASSIGNED_WORKERS)
                        .and_then(|v| v.as_l().ok())
                        .map(|l| l.iter().filter_map(|w| w.as_s().ok().cloned()).collect())
                        .unwrap_or_default(),
                }),
            })
        }))
    }

    async fn write_lock(
        &self,
        name: &str,
        record: &LockRecord,
        expected_version: Option<&str>,
    ) -> Result<(), LeaseStoreError> {
        let millis = u64::try_from(record.lease_duration.as_millis()).unwrap_or(u64::MAX);
        let request = self
            .client
            .put_item()
            .table_name(&self.state_table)
            .item(LOCK_KEY, AttributeValue::S(name.to_owned()))
            .item(LOCK_OWNER, AttributeValue::S(record.owner.clone()))
            .item(LOCK_VERSION, AttributeValue::S(record.version.clone()))
            .item(LOCK_DURATION, n(millis));
        let request = match &record.assignments {
            None => request,
            Some(a) => request.item(ASSIGNMENT_EPOCH, n(a.epoch)).item(
                ASSIGNED_WORKERS,
                AttributeValue::L(a.workers.iter().cloned().map(AttributeValue::S).collect()),
            ),
        };
        let request = match expected_version {
            None => request
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", LOCK_KEY),
            Some(version) => request
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", LOCK_VERSION)
                .expression_attribute_values(":v", AttributeValue::S(version.to_owned())),
        };
        request
            .send()
            .await
            .map_err(|e| classify(e, &self.state_table))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lock_is_written_only_over_the_expected_version() {
        let store = InMemoryCoordinatorStore::new();
        let record = |owner: &str, version: &str| LockRecord {
            owner: owner.into(),
            version: version.into(),
            lease_duration: Duration::from_secs(20),
            assignments: None,
        };
        store
            .write_lock("Leader", &record("a", "1"), None)
            .await
            .expect("created");
        assert!(matches!(
            store.write_lock("Leader", &record("b", "2"), None).await,
            Err(LeaseStoreError::ConditionFailed)
        ));
        assert!(matches!(
            store
                .write_lock("Leader", &record("b", "2"), Some("0"))
                .await,
            Err(LeaseStoreError::ConditionFailed)
        ));
        store
            .write_lock("Leader", &record("b", "2"), Some("1"))
            .await
            .expect("taken over");
        assert_eq!(
            store.read_lock("Leader").await.ok().flatten(),
            Some(record("b", "2"))
        );
    }

    #[test]
    fn worker_items_without_a_sequence_are_not_ours() {
        let java = HashMap::from([(WORKER_ID.to_owned(), AttributeValue::S("java-1".into()))]);
        assert_eq!(load_from_item(&java), None);
        let ours = HashMap::from([
            (WORKER_ID.to_owned(), AttributeValue::S("rust-1".into())),
            (SEQUENCE.to_owned(), n(3)),
            (CPU.to_owned(), AttributeValue::N("12.5".into())),
            (THROUGHPUT.to_owned(), AttributeValue::N("40.000".into())),
            (LEASES.to_owned(), n(4)),
            (DRAINING.to_owned(), AttributeValue::Bool(true)),
        ]);
        let load = load_from_item(&ours).expect("a report");
        assert_eq!(load.sequence, 3);
        assert_eq!(load.cpu_percent, Some(12.5));
        assert_eq!(load.throughput, ThroughputKbps::new(40.0));
        assert!(load.draining);
    }
}
