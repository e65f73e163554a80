//! Shards: discovery and lease creation (sync), the parent/child hierarchy, and the consumer that
//! drives one processor through one shard.

pub(crate) mod consumer;
pub(crate) mod hierarchy;
pub(crate) mod sync;

pub use sync::ShardSyncError;
