//! Leases: the lease model, the [`LeaseStore`] trait with its DynamoDB and in-memory stores, and
//! the renewer and taker that keep this worker's share of leases.

mod dynamodb;
mod memory;
mod model;
pub(crate) mod renewer;
mod store;
pub(crate) mod taker;

pub use dynamodb::DynamoDbLeaseStore;
pub use memory::InMemoryLeaseStore;
pub use model::{CheckpointUpdate, Expectation, HashKeyRange, Lease, LeaseUpdate};
pub(crate) use renewer::HeldLease;
pub use store::{LeaseStore, LeaseStoreError};
