//! Shard sync: lists a stream's shards and creates leases for shards that need one. In a
//! multi-stream application each stream is synced on its own, against its own leases.

use std::collections::HashSet;
use std::time::UNIX_EPOCH;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::ProvideErrorMetadata;

use super::hierarchy::{ShardInfo, initial_checkpoint, leases_to_create};
use crate::checkpoint::ExtendedSequenceNumber;
use crate::config::InitialPosition;
use crate::lease::{
    CheckpointUpdate, Expectation, HashKeyRange, Lease, LeaseStore, LeaseStoreError, LeaseUpdate,
};
use crate::stream::ConsumedStream;

/// Why a shard sync failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardSyncError {
    /// `ListShards` failed.
    #[error("ListShards on stream {stream} failed: {message}")]
    ListShards {
        /// The stream.
        stream: String,
        /// The service's error code and message.
        message: String,
    },
    /// The lease table could not be read or written.
    #[error(transparent)]
    Store(#[from] LeaseStoreError),
}

/// Every shard of `stream`, open or closed, following `NextToken` pages.
pub(crate) async fn list_shards(
    kinesis: &Client,
    stream: &str,
) -> Result<Vec<ShardInfo>, ShardSyncError> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // A request with NextToken must not name the stream.
        let request = match &next_token {
            Some(token) => kinesis.list_shards().next_token(token),
            None => kinesis.list_shards().stream_name(stream),
        };
        let page = request
            .send()
            .await
            .map_err(|e| ShardSyncError::ListShards {
                stream: stream.to_owned(),
                message: format!(
                    "{}: {}",
                    e.code().unwrap_or("error"),
                    e.message().map_or_else(|| format!("{e:?}"), str::to_owned)
                ),
            })?;
        for shard in page.shards() {
            shards.push(ShardInfo {
                shard_id: shard.shard_id().to_owned(),
                parent_shard_ids: shard
                    .parent_shard_id()
                    .into_iter()
                    .chain(shard.adjacent_parent_shard_id())
                    .map(str::to_owned)
                    .collect(),
                hash_key_range: shard.hash_key_range().and_then(|r| {
                    Some(HashKeyRange {
                        starting_hash_key: r.starting_hash_key().parse().ok()?,
                        ending_hash_key: r.ending_hash_key().parse().ok()?,
                    })
                }),
                is_open: shard
                    .sequence_number_range()
                    .is_none_or(|r| r.ending_sequence_number().is_none()),
            });
        }
        match page.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
            _ => return Ok(shards),
        }
    }
}

/// Lists the shards of `stream` and creates the leases they call for; returns how many were
/// created. `leases` is a recent scan of the whole table. `starting` (the stream's first sync on
/// this worker) also logs which existing leases keep their checkpoint over the initial position.
pub(crate) async fn sync_shards(
    kinesis: &Client,
    stream: &ConsumedStream,
    store: &dyn LeaseStore,
    leases: &[Lease],
    starting: bool,
) -> Result<usize, ShardSyncError> {
    let shards = list_shards(kinesis, &stream.name).await?;
    let leases: Vec<&Lease> = leases.iter().filter(|l| stream.owns(l)).collect();
    finish_leases_of_expired_shards(store, &shards, &leases).await?;
    let initial = &stream.initial_position;
    if starting {
        explain_initial_position(&leases, initial);
    }
    let existing: HashSet<String> = leases.iter().map(|l| l.shard_id.clone()).collect();
    let mut created = 0;
    for lease in leases_to_create(&shards, &existing, initial, stream.id.as_ref()) {
        if store.create_lease_if_absent(&lease).await? {
            tracing::info!(shard_id = %lease.key, checkpoint = %lease.checkpoint, "created lease");
            created += 1;
        }
    }
    Ok(created)
}

/// The number in a shard id (`shardId-000000000012` → 12): shards are numbered in creation order.
fn shard_index(shard_id: &str) -> Option<u64> {
    shard_id.rsplit_once('-')?.1.parse().ok()
}

/// Marks `SHARD_END` the unfinished leases of shards that retention trimmed before they were read
/// to their end. Such a shard is neither listed nor readable any more, so its consumer never
/// reaches `SHARD_END` and, without this, its children would wait for it forever. Its unread
/// records expired with it. The lease is left to the usual cleanup (its listed children are
/// recorded), and the counter bump makes a worker still holding it lose it.
///
/// A shard counts as expired when the listing lacks it but lists a shard created after it: a
/// listing may lag behind the newest shards, but lists every closed shard until it expires.
async fn finish_leases_of_expired_shards(
    store: &dyn LeaseStore,
    shards: &[ShardInfo],
    leases: &[&Lease],
) -> Result<(), ShardSyncError> {
    let Some(newest) = shards.iter().filter_map(|s| shard_index(&s.shard_id)).max() else {
        return Ok(());
    };
    let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    for lease in leases {
        if lease.is_finished()
            || listed.contains(lease.shard_id.as_str())
            || shard_index(&lease.shard_id).is_none_or(|index| index >= newest)
        {
            continue;
        }
        let children = shards
            .iter()
            .filter(|s| s.parent_shard_ids.contains(&lease.shard_id))
            .map(|s| s.shard_id.clone())
            .collect();
        let expect = Expectation {
            counter: Some(lease.counter),
            ..Expectation::default()
        };
        let update = LeaseUpdate {
            increment_counter: true,
            owner: Some(None),
            checkpoint_owner: Some(None),
            checkpoint: Some(CheckpointUpdate {
                checkpoint: ExtendedSequenceNumber::ShardEnd,
                pending: None,
                child_shard_ids: children,
            }),
            ..LeaseUpdate::default()
        };
        match store.update_lease(&lease.key, &expect, &update).await {
            Ok(_) => tracing::warn!(
                shard_id = %lease.key,
                checkpoint = %lease.checkpoint,
                "shard expired (trimmed by retention) before it was read to its end; its lease is \
                 now at SHARD_END so its children can start"
            ),
            // Renewed or taken since the scan: the next sync tries again.
            Err(LeaseStoreError::ConditionFailed) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Says which leases keep their checkpoint although the configured initial position differs: the
/// initial position applies only to leases created now. (The Java KCL's most reported surprise is
/// a new `AT_TIMESTAMP` or `TRIM_HORIZON` silently ignored because the leases exist.)
fn explain_initial_position(leases: &[&Lease], initial: &InitialPosition) {
    let new_lease_checkpoint = initial_checkpoint(initial);
    let kept: Vec<&Lease> = leases
        .iter()
        .copied()
        .filter(|l| !l.is_finished() && l.checkpoint != new_lease_checkpoint)
        .collect();
    let Some(example) = kept.first() else {
        return;
    };
    let position = match initial {
        InitialPosition::Latest => "LATEST".to_owned(),
        InitialPosition::TrimHorizon => "TRIM_HORIZON".to_owned(),
        InitialPosition::AtTimestamp(at) => format!(
            "AT_TIMESTAMP({} ms since the epoch)",
            at.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
        ),
    };
    tracing::info!(
        initial_position = %position,
        leases = kept.len(),
        example_shard = %example.key,
        example_checkpoint = %example.checkpoint,
        "initial position not applied to shards that already have a lease: they resume from the \
         lease's checkpoint, the initial position only applies to leases created from now on (to \
         start over from it, stop every worker and delete the lease table)"
    );
}
