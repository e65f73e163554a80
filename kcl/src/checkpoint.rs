//! Checkpoints: positions in a shard, and the [`Checkpointer`] a processor uses to record progress.
//!
//! A checkpoint is written to the shard's lease with a write conditioned on the lease counter this
//! worker holds, so a worker that lost the lease can never move another worker's checkpoint.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::lease::{HeldLease, LeaseStoreError};
use crate::processor::Record;

/// A Kinesis sequence number: a decimal string of up to 128 digits, ordered by numeric value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

impl SequenceNumber {
    /// The decimal digits, as Kinesis returned them.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn significant_digits(&self) -> &str {
        let trimmed = self.0.trim_start_matches('0');
        if trimmed.is_empty() { "0" } else { trimmed }
    }
}

/// The string is not a Kinesis sequence number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a sequence number: expected 1 to 128 decimal digits")]
pub struct InvalidSequenceNumber(pub String);

impl FromStr for SequenceNumber {
    type Err = InvalidSequenceNumber;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidSequenceNumber(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.significant_digits(), other.significant_digits());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A position in a shard as the KCL stores it: a record (sequence number plus the sub-sequence
/// number of a KPL sub-record), or one of the sentinels the Java KCL writes in the `checkpoint`
/// attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExtendedSequenceNumber {
    /// Start at the oldest record still retained (`TRIM_HORIZON`).
    TrimHorizon,
    /// Start after the newest record (`LATEST`).
    Latest,
    /// Start at the configured timestamp (`AT_TIMESTAMP`).
    AtTimestamp,
    /// The shard was read to its end and its children may start (`SHARD_END`).
    ShardEnd,
    /// Everything up to and including this record was processed.
    Record {
        /// The record's sequence number.
        sequence_number: SequenceNumber,
        /// The sub-record within a KPL aggregate (0 for plain records).
        sub_sequence_number: u64,
    },
}

impl ExtendedSequenceNumber {
    pub(crate) const TRIM_HORIZON: &'static str = "TRIM_HORIZON";
    pub(crate) const LATEST: &'static str = "LATEST";
    pub(crate) const AT_TIMESTAMP: &'static str = "AT_TIMESTAMP";
    pub(crate) const SHARD_END: &'static str = "SHARD_END";

    /// The position of one record.
    pub fn record(sequence_number: SequenceNumber, sub_sequence_number: u64) -> Self {
        Self::Record {
            sequence_number,
            sub_sequence_number,
        }
    }

    /// Parses the lease table's `checkpoint` and `checkpointSubSequenceNumber` pair.
    pub(crate) fn from_stored(
        checkpoint: &str,
        sub_sequence_number: u64,
    ) -> Result<Self, InvalidSequenceNumber> {
        Ok(match checkpoint {
            Self::TRIM_HORIZON => Self::TrimHorizon,
            Self::LATEST => Self::Latest,
            Self::AT_TIMESTAMP => Self::AtTimestamp,
            Self::SHARD_END => Self::ShardEnd,
            digits => Self::record(digits.parse()?, sub_sequence_number),
        })
    }

    /// The `checkpoint` attribute value: the sequence number or the sentinel name.
    pub(crate) fn stored_sequence(&self) -> &str {
        match self {
            Self::TrimHorizon => Self::TRIM_HORIZON,
            Self::Latest => Self::LATEST,
            Self::AtTimestamp => Self::AT_TIMESTAMP,
            Self::ShardEnd => Self::SHARD_END,
            Self::Record {
                sequence_number, ..
            } => sequence_number.as_str(),
        }
    }

    /// The `checkpointSubSequenceNumber` attribute value (0 for sentinels).
    pub(crate) fn stored_sub_sequence(&self) -> u64 {
        match self {
            Self::Record {
                sub_sequence_number,
                ..
            } => *sub_sequence_number,
            _ => 0,
        }
    }

    /// The record position, if this is not a sentinel.
    pub(crate) fn as_record(&self) -> Option<(&SequenceNumber, u64)> {
        match self {
            Self::Record {
                sequence_number,
                sub_sequence_number,
            } => Some((sequence_number, *sub_sequence_number)),
            _ => None,
        }
    }
}

impl fmt::Display for ExtendedSequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_record() {
            Some((seq, sub)) => write!(f, "{seq}/{sub}"),
            None => f.write_str(self.stored_sequence()),
        }
    }
}

/// Why a checkpoint was refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// This worker no longer holds the shard's lease (it was lost, stolen, handed off or released).
    /// Stop processing the shard: another worker owns it now.
    #[error("the lease for {shard_id} is no longer held by this worker; stop processing the shard")]
    LeaseLost {
        /// The shard whose lease was lost.
        shard_id: String,
    },
    /// The checkpoint would move before the current checkpoint.
    #[error("checkpoint {requested} for {shard_id} is before the current checkpoint {current}")]
    Backwards {
        /// The shard.
        shard_id: String,
        /// The position asked for.
        requested: ExtendedSequenceNumber,
        /// The checkpoint already stored.
        current: ExtendedSequenceNumber,
    },
    /// The checkpoint would move past the last record delivered to the processor.
    #[error(
        "checkpoint {requested} for {shard_id} is past the last delivered record {last_delivered}"
    )]
    BeyondDelivered {
        /// The shard.
        shard_id: String,
        /// The position asked for.
        requested: ExtendedSequenceNumber,
        /// The newest record handed to `process_records` (or the start position if none).
        last_delivered: ExtendedSequenceNumber,
    },
    /// The lease table could not be written; the checkpoint may be retried.
    #[error("could not write the checkpoint for {shard_id}: {source}")]
    Store {
        /// The shard.
        shard_id: String,
        /// What the lease store reported.
        #[source]
        source: LeaseStoreError,
    },
}

/// Records progress in one shard. Handed to the processor in every call that may checkpoint;
/// cheap to clone and usable after the call returns (for asynchronous checkpointing).
#[derive(Clone)]
pub struct Checkpointer {
    inner: Arc<CheckpointerState>,
}

struct CheckpointerState {
    lease: Arc<HeldLease>,
    /// The newest position a checkpoint may reach: the last delivered record, or `SHARD_END`
    /// once the shard has been read to its end.
    largest_permitted: Mutex<ExtendedSequenceNumber>,
    child_shard_ids: Mutex<Vec<String>>,
    /// Held from validation to write, so concurrent checkpoints (a processor that checkpoints
    /// from several tasks) cannot pass validation together and then land out of order.
    writing: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpointer")
            .field("lease_key", &self.inner.lease.key())
            .field("largest_permitted", &self.largest_permitted())
            .finish()
    }
}

impl Checkpointer {
    pub(crate) fn new(lease: Arc<HeldLease>, start: ExtendedSequenceNumber) -> Self {
        Self {
            inner: Arc::new(CheckpointerState {
                lease,
                largest_permitted: Mutex::new(start),
                child_shard_ids: Mutex::new(Vec::new()),
                writing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The shard this checkpointer writes to.
    pub fn shard_id(&self) -> &str {
        self.inner.lease.shard_id()
    }

    /// Checkpoints at the last record delivered to `process_records` (at `SHARD_END` inside
    /// `shard_ended`). A no-op when the stored checkpoint is already there.
    pub async fn checkpoint(&self) -> Result<(), CheckpointError> {
        let target = self.largest_permitted();
        if target.as_record().is_none() && target != ExtendedSequenceNumber::ShardEnd {
            // Nothing delivered yet: the start sentinel stays.
            return Ok(());
        }
        if self.inner.lease.checkpoint().await == target {
            return Ok(());
        }
        self.write(target, None).await
    }

    /// Checkpoints at a delivered record: it and every record before it are done.
    pub async fn checkpoint_at(&self, record: &Record) -> Result<(), CheckpointError> {
        self.write(record.position(), None).await
    }

    /// Checkpoints at a sequence number and sub-sequence number (0 for plain records).
    pub async fn checkpoint_at_sequence(
        &self,
        sequence_number: SequenceNumber,
        sub_sequence_number: u64,
    ) -> Result<(), CheckpointError> {
        self.write(
            ExtendedSequenceNumber::record(sequence_number, sub_sequence_number),
            None,
        )
        .await
    }

    /// Stores a pending checkpoint at a position, with optional application state, without moving
    /// the checkpoint. If this worker loses the shard before committing it, the next owner sees
    /// it (and the state) in `initialize`. Commit it with [`PreparedCheckpoint::checkpoint`].
    pub async fn prepare_checkpoint(
        &self,
        sequence_number: SequenceNumber,
        sub_sequence_number: u64,
        application_state: Option<Bytes>,
    ) -> Result<PreparedCheckpoint, CheckpointError> {
        let position = ExtendedSequenceNumber::record(sequence_number, sub_sequence_number);
        let _writing = self.inner.writing.lock().await;
        self.validate(&position).await?;
        let pending = PendingCheckpoint {
            position,
            application_state,
        };
        let current = self.inner.lease.checkpoint().await;
        self.store(current, Some(pending.clone())).await?;
        Ok(PreparedCheckpoint {
            checkpointer: self.clone(),
            pending,
        })
    }

    /// Like [`Checkpointer::prepare_checkpoint`] at the last delivered record.
    pub async fn prepare_checkpoint_at_last_delivered(
        &self,
        application_state: Option<Bytes>,
    ) -> Result<PreparedCheckpoint, CheckpointError> {
        match self.largest_permitted() {
            ExtendedSequenceNumber::Record {
                sequence_number,
                sub_sequence_number,
            } => {
                self.prepare_checkpoint(sequence_number, sub_sequence_number, application_state)
                    .await
            }
            other => Err(CheckpointError::BeyondDelivered {
                shard_id: self.shard_id().to_owned(),
                requested: other.clone(),
                last_delivered: other,
            }),
        }
    }

    pub(crate) fn largest_permitted(&self) -> ExtendedSequenceNumber {
        self.inner
            .largest_permitted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Moves the upper bound (before delivering a batch, or back after a failed one); returns the
    /// previous bound.
    pub(crate) fn set_largest_permitted(
        &self,
        position: ExtendedSequenceNumber,
    ) -> ExtendedSequenceNumber {
        std::mem::replace(
            &mut *self
                .inner
                .largest_permitted
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            position,
        )
    }

    /// The shard has been read to its end: allow `SHARD_END` and record the children with it.
    pub(crate) fn permit_shard_end(&self, child_shard_ids: Vec<String>) {
        self.set_largest_permitted(ExtendedSequenceNumber::ShardEnd);
        *self
            .inner
            .child_shard_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = child_shard_ids;
    }

    async fn write(
        &self,
        position: ExtendedSequenceNumber,
        pending: Option<PendingCheckpoint>,
    ) -> Result<(), CheckpointError> {
        let _writing = self.inner.writing.lock().await;
        self.validate(&position).await?;
        self.store(position, pending).await
    }

    async fn validate(&self, position: &ExtendedSequenceNumber) -> Result<(), CheckpointError> {
        let shard_id = || self.shard_id().to_owned();
        if self.inner.lease.is_ended() {
            return Err(CheckpointError::LeaseLost {
                shard_id: shard_id(),
            });
        }
        let current = self.inner.lease.checkpoint().await;
        let last_delivered = self.largest_permitted();
        if position_order(position, &current) == Ordering::Less {
            return Err(CheckpointError::Backwards {
                shard_id: shard_id(),
                requested: position.clone(),
                current,
            });
        }
        if position_order(position, &last_delivered) == Ordering::Greater {
            return Err(CheckpointError::BeyondDelivered {
                shard_id: shard_id(),
                requested: position.clone(),
                last_delivered,
            });
        }
        Ok(())
    }

    async fn store(
        &self,
        position: ExtendedSequenceNumber,
        pending: Option<PendingCheckpoint>,
    ) -> Result<(), CheckpointError> {
        let child_shard_ids = if position == ExtendedSequenceNumber::ShardEnd {
            self.inner
                .child_shard_ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        } else {
            Vec::new()
        };
        // A throttled or failed write is retried while the lease is held, so a lease table
        // having a bad moment does not fail the processor's batch (which would deliver it again).
        // Once the lease is lost, or the failure is not transient, the processor hears of it.
        let mut backoff = crate::config::retry_backoff();
        let written = loop {
            let written = self
                .inner
                .lease
                .write_checkpoint(position.clone(), pending.clone(), child_shard_ids.clone())
                .await;
            match written {
                Err(err @ (LeaseStoreError::Throttled(_) | LeaseStoreError::Request(_)))
                    if !self.inner.lease.is_ended() =>
                {
                    let delay = backoff.next().unwrap_or_default();
                    tracing::warn!(shard_id = %self.shard_id(), %err, ?delay, "checkpoint write failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                written => break written,
            }
        };
        written.map_err(|source| match source {
            LeaseStoreError::ConditionFailed => CheckpointError::LeaseLost {
                shard_id: self.shard_id().to_owned(),
            },
            source => CheckpointError::Store {
                shard_id: self.shard_id().to_owned(),
                source,
            },
        })
    }
}

/// Orders two positions in the same shard. Sentinels that name a starting point sort before every
/// record; `SHARD_END` sorts after every record.
fn position_order(a: &ExtendedSequenceNumber, b: &ExtendedSequenceNumber) -> Ordering {
    fn rank(p: &ExtendedSequenceNumber) -> u8 {
        match p {
            ExtendedSequenceNumber::TrimHorizon
            | ExtendedSequenceNumber::Latest
            | ExtendedSequenceNumber::AtTimestamp => 0,
            ExtendedSequenceNumber::Record { .. } => 1,
            ExtendedSequenceNumber::ShardEnd => 2,
        }
    }
    match (a.as_record(), b.as_record()) {
        (Some((sa, ua)), Some((sb, ub))) => sa.cmp(sb).then(ua.cmp(&ub)),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// A checkpoint stored as pending, with the application state that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCheckpoint {
    /// Where the checkpoint will be once committed.
    pub position: ExtendedSequenceNumber,
    /// Opaque bytes stored with the pending checkpoint (`pendingCheckpointState`).
    pub application_state: Option<Bytes>,
}

/// A pending checkpoint written by [`Checkpointer::prepare_checkpoint`], ready to commit.
#[derive(Debug)]
pub struct PreparedCheckpoint {
    checkpointer: Checkpointer,
    pending: PendingCheckpoint,
}

impl PreparedCheckpoint {
    /// The pending position.
    pub fn pending(&self) -> &PendingCheckpoint {
        &self.pending
    }

    /// Moves the checkpoint to the pending position and clears the pending checkpoint.
    pub async fn checkpoint(self) -> Result<(), CheckpointError> {
        self.checkpointer.write(self.pending.position, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{InMemoryLeaseStore, Lease, LeaseStore};

    fn seq(s: &str) -> SequenceNumber {
        s.parse().expect("digits")
    }

    fn at(s: &str) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::record(seq(s), 0)
    }

    async fn checkpointer() -> (Arc<InMemoryLeaseStore>, Checkpointer) {
        let store = Arc::new(InMemoryLeaseStore::new());
        let mut lease = Lease::new("shard-0", ExtendedSequenceNumber::TrimHorizon);
        lease.owner = Some("a".into());
        store.create_lease_if_absent(&lease).await.expect("created");
        let held = HeldLease::new(store.clone(), "a", lease);
        (
            store,
            Checkpointer::new(held, ExtendedSequenceNumber::TrimHorizon),
        )
    }

    async fn stored(store: &InMemoryLeaseStore) -> Lease {
        store
            .get_lease("shard-0")
            .await
            .ok()
            .flatten()
            .expect("lease")
    }

    #[tokio::test]
    async fn checkpoints_cannot_go_backwards_or_past_the_last_delivered_record() {
        let (store, cp) = checkpointer().await;
        cp.set_largest_permitted(at("10"));
        let beyond = cp.checkpoint_at_sequence(seq("11"), 0).await;
        assert!(matches!(
            beyond,
            Err(CheckpointError::BeyondDelivered { .. })
        ));
        cp.checkpoint_at_sequence(seq("5"), 0)
            .await
            .expect("forward");
        let backwards = cp.checkpoint_at_sequence(seq("4"), 0).await;
        assert!(matches!(backwards, Err(CheckpointError::Backwards { .. })));
        cp.checkpoint().await.expect("at the last delivered record");
        assert_eq!(stored(&store).await.checkpoint, at("10"));
    }

    #[tokio::test]
    async fn a_prepared_checkpoint_is_pending_with_its_state_until_committed() {
        let (store, cp) = checkpointer().await;
        cp.set_largest_permitted(at("10"));
        let state = Bytes::from_static(b"offsets");
        let prepared = cp
            .prepare_checkpoint(seq("7"), 0, Some(state.clone()))
            .await
            .expect("prepared");
        let lease = stored(&store).await;
        assert_eq!(lease.checkpoint, ExtendedSequenceNumber::TrimHorizon);
        assert_eq!(
            lease.pending_checkpoint,
            Some(PendingCheckpoint {
                position: at("7"),
                application_state: Some(state),
            })
        );
        prepared.checkpoint().await.expect("committed");
        let lease = stored(&store).await;
        assert_eq!(lease.checkpoint, at("7"));
        assert_eq!(lease.pending_checkpoint, None);
    }

    #[tokio::test]
    async fn shard_end_can_be_checkpointed_only_once_the_shard_was_read_to_its_end() {
        let (store, cp) = checkpointer().await;
        cp.set_largest_permitted(at("10"));
        cp.checkpoint().await.expect("checkpoint");
        cp.permit_shard_end(vec!["child".into()]);
        cp.checkpoint().await.expect("SHARD_END");
        let lease = stored(&store).await;
        assert!(lease.is_finished());
        assert_eq!(lease.child_shard_ids, vec!["child".to_owned()]);
    }

    #[test]
    fn sequence_numbers_order_by_numeric_value_not_by_text() {
        assert!(seq("9") < seq("10"));
        assert!(seq("0010") == seq("0010"));
        assert_eq!(seq("0010").cmp(&seq("10")), Ordering::Equal);
        assert!(
            seq("49590338271490256608559692538361571095921575989136588898")
                > seq("49590338271490256608559692538361571095921575989136588897")
        );
    }

    #[test]
    fn sequence_numbers_reject_anything_but_digits() {
        assert!("12a".parse::<SequenceNumber>().is_err());
        assert!("".parse::<SequenceNumber>().is_err());
        assert!("-1".parse::<SequenceNumber>().is_err());
    }

    #[test]
    fn sentinels_round_trip_through_the_stored_form() {
        for p in [
            ExtendedSequenceNumber::TrimHorizon,
            ExtendedSequenceNumber::Latest,
            ExtendedSequenceNumber::AtTimestamp,
            ExtendedSequenceNumber::ShardEnd,
            ExtendedSequenceNumber::record(seq("123"), 4),
        ] {
            let back =
                ExtendedSequenceNumber::from_stored(p.stored_sequence(), p.stored_sub_sequence());
            assert_eq!(back, Ok(p));
        }
    }

    #[test]
    fn start_sentinels_sort_before_records_and_shard_end_after() {
        let r = ExtendedSequenceNumber::record(seq("5"), 0);
        assert_eq!(
            position_order(&ExtendedSequenceNumber::TrimHorizon, &r),
            Ordering::Less
        );
        assert_eq!(
            position_order(&ExtendedSequenceNumber::ShardEnd, &r),
            Ordering::Greater
        );
        let sub = ExtendedSequenceNumber::record(seq("5"), 1);
        assert_eq!(position_order(&r, &sub), Ordering::Less);
    }
}
