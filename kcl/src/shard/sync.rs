//! Shard sync: lists the stream's shards and creates leases for shards that need one.

use std::collections::HashSet;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::ProvideErrorMetadata;

use super::hierarchy::{ShardInfo, leases_to_create};
use crate::config::InitialPosition;
use crate::lease::{HashKeyRange, LeaseStore, LeaseStoreError};

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

/// Lists shards and creates the leases they call for; returns how many were created.
pub(crate) async fn sync_shards(
    kinesis: &Client,
    stream: &str,
    store: &dyn LeaseStore,
    initial: &InitialPosition,
) -> Result<usize, ShardSyncError> {
    let shards = list_shards(kinesis, stream).await?;
    let existing: HashSet<String> = store
        .list_leases()
        .await?
        .into_iter()
        .map(|l| l.key)
        .collect();
    let mut created = 0;
    for lease in leases_to_create(&shards, &existing, initial) {
        if store.create_lease_if_absent(&lease).await? {
            tracing::info!(shard_id = %lease.key, checkpoint = %lease.checkpoint, "created lease");
            created += 1;
        }
    }
    Ok(created)
}
