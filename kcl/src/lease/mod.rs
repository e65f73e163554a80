//! Leases: the lease model, the [`LeaseStore`] trait with its DynamoDB and in-memory stores, the
//! renewer and taker that keep this worker's share of leases, and — for load-aware assignment —
//! per-lease and per-worker [`load`], the [`CoordinatorStore`] where workers publish it and elect
//! a [`leader`], and the leader's [`assignment`] loop.

pub mod assignment;
mod coordination;
mod dynamodb;
pub mod leader;
pub mod load;
mod memory;
mod model;
pub(crate) mod renewer;
mod store;
pub(crate) mod taker;

pub use assignment::{LeaseAssignment, LoadAwareConfig, LoadMetric};
pub use coordination::{
    Assignments, CoordinatorStore, DynamoDbCoordinatorStore, InMemoryCoordinatorStore, LockRecord,
};
pub use dynamodb::DynamoDbLeaseStore;
pub use load::{ThroughputKbps, WorkerLoad};
pub use memory::InMemoryLeaseStore;
pub use model::{CheckpointUpdate, Expectation, HashKeyRange, Lease, LeaseUpdate};
pub(crate) use renewer::HeldLease;
pub use store::{LeaseStore, LeaseStoreError};
