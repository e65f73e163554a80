//! Which leases a shard listing calls for: the shard hierarchy (parents, children) decides where
//! each new lease starts and which shards need no lease at all.

use std::collections::{HashMap, HashSet};

use crate::checkpoint::ExtendedSequenceNumber;
use crate::config::InitialPosition;
use crate::lease::{HashKeyRange, Lease};
use crate::stream::StreamIdentifier;

/// A shard as `ListShards` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardInfo {
    pub(crate) shard_id: String,
    /// `ParentShardId` and, after a merge, `AdjacentParentShardId`.
    pub(crate) parent_shard_ids: Vec<String>,
    pub(crate) hash_key_range: Option<HashKeyRange>,
    /// No `EndingSequenceNumber` yet.
    pub(crate) is_open: bool,
}

/// The leases to create for `shards` of `stream` (`None` in single-stream mode), given the shard
/// ids of the stream's leases that exist.
///
/// - A shard with a lease, or with a descendant that has one, needs none (it was processed and its
///   lease cleaned up).
/// - With `LATEST`, closed shards get no lease: reading starts at the open frontier.
/// - A shard whose parent has (or gets) a lease starts at `TRIM_HORIZON`, after its parents;
///   any other starts at the initial position. With `AT_TIMESTAMP` every new lease starts at the
///   timestamp (as in the Java KCL): a child created before the timestamp may hold records older
///   than it, which `TRIM_HORIZON` would deliver.
pub(crate) fn leases_to_create(
    shards: &[ShardInfo],
    existing: &HashSet<String>,
    initial: &InitialPosition,
    stream: Option<&StreamIdentifier>,
) -> Vec<Lease> {
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for shard in shards {
        for parent in &shard.parent_shard_ids {
            children
                .entry(parent.as_str())
                .or_default()
                .push(&shard.shard_id);
        }
    }
    let has_descendant_lease = |root: &str| {
        let mut stack: Vec<&str> = children.get(root).cloned().unwrap_or_default();
        let mut seen = HashSet::new();
        while let Some(shard) = stack.pop() {
            if !seen.insert(shard) {
                continue;
            }
            if existing.contains(shard) {
                return true;
            }
            stack.extend(children.get(shard).into_iter().flatten());
        }
        false
    };
    let creating: HashSet<&str> = shards
        .iter()
        .filter(|s| !existing.contains(&s.shard_id))
        .filter(|s| s.is_open || *initial != InitialPosition::Latest)
        .filter(|s| !has_descendant_lease(&s.shard_id))
        .map(|s| s.shard_id.as_str())
        .collect();
    let at_timestamp = matches!(initial, InitialPosition::AtTimestamp(_));
    shards
        .iter()
        .filter(|s| creating.contains(s.shard_id.as_str()))
        .map(|s| {
            let after_parent = s
                .parent_shard_ids
                .iter()
                .any(|p| existing.contains(p) || creating.contains(p.as_str()));
            let checkpoint = if after_parent && !at_timestamp {
                ExtendedSequenceNumber::TrimHorizon
            } else {
                initial_checkpoint(initial)
            };
            let mut lease = Lease::for_shard(stream, s.shard_id.clone(), checkpoint);
            lease.parent_shard_ids = s.parent_shard_ids.clone();
            lease.hash_key_range = s.hash_key_range.clone();
            lease
        })
        .collect()
}

/// The checkpoint a new lease gets for an initial position.
pub(crate) fn initial_checkpoint(initial: &InitialPosition) -> ExtendedSequenceNumber {
    match initial {
        InitialPosition::Latest => ExtendedSequenceNumber::Latest,
        InitialPosition::TrimHorizon => ExtendedSequenceNumber::TrimHorizon,
        InitialPosition::AtTimestamp(_) => ExtendedSequenceNumber::AtTimestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0 and 1 merged into 2; 2 split into 3 and 4 (open).
    fn resharded() -> Vec<ShardInfo> {
        let shard = |id: &str, parents: &[&str], open: bool| ShardInfo {
            shard_id: id.to_owned(),
            parent_shard_ids: parents.iter().map(|p| (*p).to_owned()).collect(),
            hash_key_range: None,
            is_open: open,
        };
        vec![
            shard("s0", &[], false),
            shard("s1", &[], false),
            shard("s2", &["s0", "s1"], false),
            shard("s3", &["s2"], true),
            shard("s4", &["s2"], true),
        ]
    }

    fn created(leases: &[Lease]) -> Vec<(&str, ExtendedSequenceNumber)> {
        leases
            .iter()
            .map(|l| (l.key.as_str(), l.checkpoint.clone()))
            .collect()
    }

    #[test]
    fn latest_starts_at_the_open_shards_only() {
        let leases = leases_to_create(
            &resharded(),
            &HashSet::new(),
            &InitialPosition::Latest,
            None,
        );
        assert_eq!(
            created(&leases),
            vec![
                ("s3", ExtendedSequenceNumber::Latest),
                ("s4", ExtendedSequenceNumber::Latest)
            ]
        );
    }

    #[test]
    fn trim_horizon_covers_the_whole_hierarchy_and_children_wait_for_parents() {
        let leases = leases_to_create(
            &resharded(),
            &HashSet::new(),
            &InitialPosition::TrimHorizon,
            None,
        );
        assert_eq!(leases.len(), 5);
        assert!(
            leases
                .iter()
                .all(|l| l.checkpoint == ExtendedSequenceNumber::TrimHorizon)
        );
        let merged = leases.iter().find(|l| l.key == "s2").expect("s2");
        assert_eq!(merged.parent_shard_ids, vec!["s0", "s1"]);
    }

    #[test]
    fn shards_whose_descendants_have_leases_are_not_recreated() {
        let existing: HashSet<String> = ["s3".to_owned()].into();
        let leases = leases_to_create(&resharded(), &existing, &InitialPosition::TrimHorizon, None);
        assert_eq!(
            created(&leases),
            vec![("s4", ExtendedSequenceNumber::TrimHorizon)]
        );
    }

    #[test]
    fn at_timestamp_applies_to_children_too() {
        let at = InitialPosition::AtTimestamp(std::time::SystemTime::UNIX_EPOCH);
        let existing: HashSet<String> = ["s2".to_owned()].into();
        let leases = leases_to_create(&resharded(), &existing, &at, None);
        assert_eq!(
            created(&leases),
            vec![
                ("s3", ExtendedSequenceNumber::AtTimestamp),
                ("s4", ExtendedSequenceNumber::AtTimestamp)
            ]
        );
    }

    #[test]
    fn multi_stream_leases_are_keyed_by_stream_and_name_parents_by_shard_id() {
        let stream: StreamIdentifier = "000000000000:orders:1700000000".parse().expect("valid");
        let existing: HashSet<String> = ["s2".to_owned()].into();
        let leases = leases_to_create(
            &resharded(),
            &existing,
            &InitialPosition::Latest,
            Some(&stream),
        );
        let child = leases.iter().find(|l| l.shard_id == "s3").expect("s3");
        assert_eq!(child.key, "000000000000:orders:1700000000:s3");
        assert_eq!(child.stream.as_ref(), Some(&stream));
        assert_eq!(child.parent_shard_ids, vec!["s2"]);
    }

    #[test]
    fn a_new_child_of_a_leased_parent_starts_at_trim_horizon_even_with_latest() {
        let existing: HashSet<String> = ["s2".to_owned()].into();
        let leases = leases_to_create(&resharded(), &existing, &InitialPosition::Latest, None);
        assert_eq!(
            created(&leases),
            vec![
                ("s3", ExtendedSequenceNumber::TrimHorizon),
                ("s4", ExtendedSequenceNumber::TrimHorizon)
            ]
        );
    }
}
