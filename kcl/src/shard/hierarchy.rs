//! Which leases a shard listing calls for: the shard hierarchy (parents, children) decides where
//! each new lease starts and which shards need no lease at all, when a merge child's lease may be
//! created, and when a finished lease may be deleted.
//!
//! A child waiting for its parents counts a parent without a lease as done (processed and its
//! lease cleaned up). Two rules keep that true:
//! - A merge child's lease is created only once each parent has a lease: a parent without one is
//!   not done but waiting for its own ancestors (UpdateShardCount merges empty intermediate
//!   shards whose parents still have a backlog). The last parent to end creates it
//!   ([`parents_still_unleased`]).
//! - A finished lease is deleted only once its children have leases ([`finished_leases_to_delete`]),
//!   so the other parent of a merge child sees it.

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
/// - With `LATEST`, closed shards get no lease (reading starts at the open frontier), except
///   descendants of a leased shard: the records between it and the open frontier are due.
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
    let parents: HashMap<&str, &[String]> = shards
        .iter()
        .map(|s| (s.shard_id.as_str(), s.parent_shard_ids.as_slice()))
        .collect();
    let has_leased_ancestor = |shard: &ShardInfo| {
        let mut stack: Vec<&str> = shard.parent_shard_ids.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        while let Some(ancestor) = stack.pop() {
            if !seen.insert(ancestor) {
                continue;
            }
            if existing.contains(ancestor) {
                return true;
            }
            stack.extend(
                parents
                    .get(ancestor)
                    .into_iter()
                    .flat_map(|p| p.iter().map(String::as_str)),
            );
        }
        false
    };
    let creating: HashSet<&str> = shards
        .iter()
        .filter(|s| !existing.contains(&s.shard_id))
        .filter(|s| s.is_open || *initial != InitialPosition::Latest || has_leased_ancestor(s))
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

/// The parents of a child shard, other than `ending` (which just reached `SHARD_END`), that have
/// no lease in `leased` (shard ids of the stream's leases). While there is one, `ending` must not
/// create the child's lease: the child would count that parent as done and overtake it. The
/// parent gets its lease when its own parents end, and creates the child's lease when it ends.
pub(crate) fn parents_still_unleased<'a>(
    parent_shard_ids: &'a [String],
    ending: &str,
    leased: &HashSet<String>,
) -> Vec<&'a str> {
    parent_shard_ids
        .iter()
        .filter(|p| *p != ending && !leased.contains(*p))
        .map(String::as_str)
        .collect()
}

/// The leases of `leases` (a scan of the table) that cleanup may delete: finished, with children
/// recorded, and each child has a lease or was itself processed (a lease names it as a parent).
/// Until then the lease tells the other parent of a merge child that this parent is done.
pub(crate) fn finished_leases_to_delete(leases: &[Lease]) -> Vec<&Lease> {
    let leased: HashSet<(Option<&StreamIdentifier>, &str)> = leases
        .iter()
        .map(|l| (l.stream.as_ref(), l.shard_id.as_str()))
        .chain(leases.iter().flat_map(|l| {
            l.parent_shard_ids
                .iter()
                .map(|p| (l.stream.as_ref(), p.as_str()))
        }))
        .collect();
    leases
        .iter()
        .filter(|l| l.is_finished() && !l.child_shard_ids.is_empty())
        .filter(|l| {
            l.child_shard_ids
                .iter()
                .all(|c| leased.contains(&(l.stream.as_ref(), c.as_str())))
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
    fn latest_leases_closed_descendants_of_a_leased_shard_after_it() {
        // s0 still has a backlog; s1's lease is gone. s2 must not count s0 as done.
        let existing: HashSet<String> = ["s0".to_owned()].into();
        let leases = leases_to_create(&resharded(), &existing, &InitialPosition::Latest, None);
        assert_eq!(
            created(&leases),
            vec![
                ("s2", ExtendedSequenceNumber::TrimHorizon),
                ("s3", ExtendedSequenceNumber::TrimHorizon),
                ("s4", ExtendedSequenceNumber::TrimHorizon)
            ]
        );
    }

    /// UpdateShardCount: `p` split into `i` (empty, closed at once) and `k`; `i` merged with `j`
    /// (the already processed child of `q`) into `c`. `p` still has a backlog.
    fn intermediate_merge() -> (Lease, Lease) {
        let p = Lease::new("p", ExtendedSequenceNumber::TrimHorizon);
        let mut j = Lease::new("j", ExtendedSequenceNumber::ShardEnd);
        j.parent_shard_ids = vec!["q".to_owned()];
        j.child_shard_ids = vec!["c".to_owned()];
        (p, j)
    }

    #[test]
    fn a_merge_child_waits_for_a_parent_whose_ancestors_are_still_processed() {
        let (p, j) = intermediate_merge();
        let leased: HashSet<String> = [p.shard_id, j.shard_id].into();
        let parents = vec!["i".to_owned(), "j".to_owned()];
        assert_eq!(parents_still_unleased(&parents, "j", &leased), vec!["i"]);
        let with_i: HashSet<String> = leased.iter().cloned().chain(["i".to_owned()]).collect();
        assert!(parents_still_unleased(&parents, "i", &with_i).is_empty());
    }

    #[test]
    fn a_finished_lease_stays_until_its_children_have_leases() {
        let (p, j) = intermediate_merge();
        let waiting = [p.clone(), j.clone()];
        assert!(
            finished_leases_to_delete(&waiting).is_empty(),
            "j must stay: the merge child c has no lease yet, and i's end looks for j's lease"
        );
        let mut c = Lease::new("c", ExtendedSequenceNumber::TrimHorizon);
        c.parent_shard_ids = vec!["i".to_owned(), "j".to_owned()];
        let created = [p.clone(), j.clone(), c];
        let deletable: Vec<&str> = finished_leases_to_delete(&created)
            .iter()
            .map(|l| l.key.as_str())
            .collect();
        assert_eq!(deletable, vec!["j"]);
        // c itself was processed and deleted: its child's lease names it.
        let mut d = Lease::new("d", ExtendedSequenceNumber::TrimHorizon);
        d.parent_shard_ids = vec!["c".to_owned()];
        let processed = [p, j, d];
        assert_eq!(finished_leases_to_delete(&processed).len(), 1);
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
