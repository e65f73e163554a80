//! The lease: one row of the lease table, in the Java KCL's vocabulary, and the conditional
//! updates that every lease store applies the same way.

use super::load::ThroughputKbps;
use crate::checkpoint::{ExtendedSequenceNumber, PendingCheckpoint};
use crate::stream::StreamIdentifier;

/// The hash key range a shard covers (`startingHashKey`/`endingHashKey`, decimal strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashKeyRange {
    /// First hash key of the shard, inclusive.
    pub starting_hash_key: u128,
    /// Last hash key of the shard, inclusive.
    pub ending_hash_key: u128,
}

/// One lease: the right to process one shard, and the shard's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lease key (`leaseKey`): the shard id, or in a multi-stream application
    /// `account:stream:creationEpoch:shardId`.
    pub key: String,
    /// Multi-stream applications: the shard's stream (`streamName`, written
    /// `account:stream:creationEpoch`). `None` in single-stream mode.
    pub stream: Option<StreamIdentifier>,
    /// The shard id (`shardId` in multi-stream mode; the key otherwise).
    pub shard_id: String,
    /// The worker holding the lease, or `None` when it is free (`leaseOwner`).
    pub owner: Option<String>,
    /// Bumped by every renewal and every write of the holder (`leaseCounter`).
    pub counter: u64,
    /// How often the lease changed hands since the last checkpoint
    /// (`ownerSwitchesSinceCheckpoint`).
    pub owner_switches_since_checkpoint: u64,
    /// Where processing resumes (`checkpoint` + `checkpointSubSequenceNumber`).
    pub checkpoint: ExtendedSequenceNumber,
    /// A prepared but uncommitted checkpoint (`pendingCheckpoint`,
    /// `pendingCheckpointSubSequenceNumber`, `pendingCheckpointState`).
    pub pending_checkpoint: Option<PendingCheckpoint>,
    /// Parents that must reach `SHARD_END` before this shard starts (`parentShardId`).
    pub parent_shard_ids: Vec<String>,
    /// Children created when this shard ended (`childShardIds`).
    pub child_shard_ids: Vec<String>,
    /// The shard's hash key range, when known.
    pub hash_key_range: Option<HashKeyRange>,
    /// During a graceful handoff: the previous owner, still finishing its work
    /// (`checkpointOwner`). `owner` is then the next owner, which waits until this is cleared.
    pub checkpoint_owner: Option<String>,
    /// The owner's moving average of the shard's throughput (`throughputKBps`, Java KCL 3.x),
    /// written at each renewal; `None` until first measured.
    pub throughput: Option<ThroughputKbps>,
}

impl Lease {
    /// A new, free lease for a shard of a single-stream application (the key is the shard id),
    /// starting at `checkpoint`.
    pub fn new(shard_id: impl Into<String>, checkpoint: ExtendedSequenceNumber) -> Self {
        Self::for_shard(None, shard_id, checkpoint)
    }

    /// A new, free lease for a shard of `stream` (`None`: of a single-stream application),
    /// starting at `checkpoint`.
    pub fn for_shard(
        stream: Option<&StreamIdentifier>,
        shard_id: impl Into<String>,
        checkpoint: ExtendedSequenceNumber,
    ) -> Self {
        let shard_id = shard_id.into();
        Self {
            key: crate::stream::lease_key(stream, &shard_id),
            stream: stream.cloned(),
            shard_id,
            owner: None,
            counter: 0,
            owner_switches_since_checkpoint: 0,
            checkpoint,
            pending_checkpoint: None,
            parent_shard_ids: Vec::new(),
            child_shard_ids: Vec::new(),
            hash_key_range: None,
            checkpoint_owner: None,
            throughput: None,
        }
    }

    /// The shard was processed to its end.
    pub fn is_finished(&self) -> bool {
        self.checkpoint == ExtendedSequenceNumber::ShardEnd
    }
}

/// What a conditional update expects of the stored lease. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectation {
    /// `leaseCounter` equals this.
    pub counter: Option<u64>,
    /// `leaseOwner` equals this.
    pub owner: Option<String>,
    /// `checkpointOwner` is absent.
    pub no_checkpoint_owner: bool,
}

impl Expectation {
    /// Whether `lease` satisfies the expectation.
    pub fn is_met_by(&self, lease: &Lease) -> bool {
        self.counter.is_none_or(|c| lease.counter == c)
            && self
                .owner
                .as_ref()
                .is_none_or(|o| lease.owner.as_ref() == Some(o))
            && (!self.no_checkpoint_owner || lease.checkpoint_owner.is_none())
    }
}

/// A new checkpoint, written together with its pending checkpoint and, at `SHARD_END`, the
/// children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointUpdate {
    /// The new checkpoint.
    pub checkpoint: ExtendedSequenceNumber,
    /// The new pending checkpoint; `None` removes it.
    pub pending: Option<PendingCheckpoint>,
    /// Children to record (left unchanged when empty).
    pub child_shard_ids: Vec<String>,
}

/// The changes of a conditional update. Unset fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseUpdate {
    /// Add one to `leaseCounter`.
    pub increment_counter: bool,
    /// Set (`Some(Some)`) or remove (`Some(None)`) `leaseOwner`.
    pub owner: Option<Option<String>>,
    /// Set or remove `checkpointOwner`.
    pub checkpoint_owner: Option<Option<String>>,
    /// Set `ownerSwitchesSinceCheckpoint`.
    pub owner_switches_since_checkpoint: Option<u64>,
    /// Write a checkpoint.
    pub checkpoint: Option<CheckpointUpdate>,
    /// Set `throughputKBps`.
    pub throughput: Option<ThroughputKbps>,
}

impl LeaseUpdate {
    /// Applies the changes to `lease` (what a store does once the expectation holds).
    pub fn apply_to(&self, lease: &mut Lease) {
        if self.increment_counter {
            lease.counter += 1;
        }
        if let Some(owner) = &self.owner {
            lease.owner.clone_from(owner);
        }
        if let Some(checkpoint_owner) = &self.checkpoint_owner {
            lease.checkpoint_owner.clone_from(checkpoint_owner);
        }
        if let Some(switches) = self.owner_switches_since_checkpoint {
            lease.owner_switches_since_checkpoint = switches;
        }
        if let Some(throughput) = self.throughput {
            lease.throughput = Some(throughput);
        }
        if let Some(update) = &self.checkpoint {
            lease.checkpoint = update.checkpoint.clone();
            lease.pending_checkpoint.clone_from(&update.pending);
            if !update.child_shard_ids.is_empty() {
                lease.child_shard_ids.clone_from(&update.child_shard_ids);
            }
        }
    }
}
