//! Retrieval: reading a shard's records. Polling (`GetRecords`) today; enhanced fan-out
//! (`SubscribeToShard`) will sit beside it behind the same consumer-facing shape.

pub(crate) mod polling;

use std::time::SystemTime;

use crate::aggregation;
use crate::checkpoint::{ExtendedSequenceNumber, SequenceNumber};
use crate::config::InitialPosition;
use crate::lease::HashKeyRange;
use crate::processor::Record;

/// The records a processor sees for one record read from a shard, by either retrieval: a KPL
/// aggregate becomes its sub-records with sub-sequence numbers, and an aggregate routed to a
/// shard whose hash range doesn't hold all its sub-records (it was re-sent after a reshard) is
/// dropped, as the Java KCL does. Plain and corrupt records pass through unchanged.
pub(crate) fn user_records(
    record: Record,
    shard_range: Option<&HashKeyRange>,
) -> impl Iterator<Item = Record> {
    let users = match shard_range {
        Some(range) => aggregation::deaggregate_for_shard(record, range),
        None => aggregation::deaggregate(record),
    };
    users.into_iter().map(Record::from)
}

/// A shard created by splitting or merging the shard that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChildShard {
    pub(crate) shard_id: String,
    pub(crate) parent_shard_ids: Vec<String>,
    pub(crate) hash_key_range: Option<HashKeyRange>,
}

/// Where reading a shard starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartingPosition {
    TrimHorizon,
    Latest,
    AtTimestamp(SystemTime),
    /// After this record (sequence, sub-sequence).
    After(SequenceNumber, u64),
}

impl StartingPosition {
    /// Where to resume from a lease checkpoint; `None` at `SHARD_END` (nothing left to read).
    pub(crate) fn from_checkpoint(
        checkpoint: &ExtendedSequenceNumber,
        initial: &InitialPosition,
    ) -> Option<Self> {
        Some(match checkpoint {
            ExtendedSequenceNumber::TrimHorizon => Self::TrimHorizon,
            ExtendedSequenceNumber::Latest => Self::Latest,
            ExtendedSequenceNumber::AtTimestamp => match initial {
                InitialPosition::AtTimestamp(t) => Self::AtTimestamp(*t),
                // A lease created by another fleet with another initial position.
                _ => {
                    tracing::warn!(
                        "lease checkpoint is AT_TIMESTAMP but no timestamp is configured; \
                         reading from TRIM_HORIZON"
                    );
                    Self::TrimHorizon
                }
            },
            ExtendedSequenceNumber::ShardEnd => return None,
            ExtendedSequenceNumber::Record {
                sequence_number,
                sub_sequence_number,
            } => Self::After(sequence_number.clone(), *sub_sequence_number),
        })
    }

    /// Whether a record read from here is new (sub-records of a partly done aggregate are not).
    pub(crate) fn admits(&self, record: &Record) -> bool {
        match self {
            Self::After(seq, sub) => {
                (&record.sequence_number, record.sub_sequence_number) > (seq, *sub)
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: &str, sub: u64) -> Record {
        Record {
            sequence_number: seq.parse().expect("digits"),
            sub_sequence_number: sub,
            partition_key: "k".into(),
            data: bytes::Bytes::new(),
            approximate_arrival_timestamp: None,
        }
    }

    #[test]
    fn resuming_inside_an_aggregate_skips_the_sub_records_already_done() {
        let from = StartingPosition::from_checkpoint(
            &ExtendedSequenceNumber::record("100".parse().expect("digits"), 2),
            &InitialPosition::Latest,
        )
        .expect("a position");
        assert!(!from.admits(&record("100", 2)));
        assert!(from.admits(&record("100", 3)));
        assert!(from.admits(&record("101", 0)));
    }

    #[test]
    fn a_finished_shard_has_nothing_to_read() {
        assert_eq!(
            StartingPosition::from_checkpoint(
                &ExtendedSequenceNumber::ShardEnd,
                &InitialPosition::TrimHorizon
            ),
            None
        );
    }
}
