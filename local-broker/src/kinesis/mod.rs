//! The Kinesis Data Streams service (AWS JSON 1.1 / CBOR, `Kinesis_20131202.*`).
//!
//! | module | owns |
//! |---|---|
//! | [`api`] | wire shapes |
//! | [`control`] | stream lifecycle, settings, tags, policies, account settings |
//! | [`listing`] | ListStreams, ListShards, DescribeStream(Summary) |
//! | [`records`] | PutRecord(s), GetShardIterator, GetRecords |
//! | `fanout` | consumers and SubscribeToShard event streams |
//! | [`stream`], [`shard`] | the domain: routing, resharding, the record log |
//! | [`hash`], [`sequence`], [`iterator`] | hash keys, sequence numbers, iterator tokens |
//! | [`store`] | what of the service is persisted, and its recovery |
//!
//! Queues and channels (2026 API) are not served yet: they answer `UnknownOperationException`,
//! never a fake success.

pub mod api;
pub mod consumer;
mod control;
mod fanout;
pub mod hash;
pub mod iterator;
pub mod limits;
mod listing;
mod records;
pub mod sequence;
pub mod shard;
pub mod store;
pub mod stream;

use crate::config::BrokerConfig;
use crate::http::Reply;
use crate::http::error::{ApiError, ApiResult};
use crate::http::protocol::Wire;
use crate::http::validation::Validator;
use crate::storage::{Recovered, Storage, StorageError};
use api::StreamAddress;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use stream::{Stream, StreamStatus};

/// Per-account stream limits reported by DescribeLimits and enforced on create and reshard.
pub const SHARD_LIMIT: u32 = 500;
/// On-demand streams allowed per account.
pub const ON_DEMAND_STREAM_LIMIT: u32 = 50;

/// The Kinesis service: all streams of the broker's account and region.
pub struct Kinesis {
    config: BrokerConfig,
    streams: Arc<RwLock<BTreeMap<String, Arc<Stream>>>>,
    iterators: iterator::IteratorCodec,
    account: Mutex<control::AccountSettings>,
    subscriptions: fanout::Subscriptions,
    /// Where records go (nowhere in memory mode).
    storage: Storage,
    store: Arc<store::StreamStore>,
}

/// Operations that change stream metadata, which is persisted after them.
const CONTROL_WRITES: [&str; 23] = [
    "CreateStream",
    "DeleteStream",
    "SplitShard",
    "MergeShards",
    "UpdateShardCount",
    "IncreaseStreamRetentionPeriod",
    "DecreaseStreamRetentionPeriod",
    "AddTagsToStream",
    "RemoveTagsFromStream",
    "TagResource",
    "UntagResource",
    "StartStreamEncryption",
    "StopStreamEncryption",
    "EnableEnhancedMonitoring",
    "DisableEnhancedMonitoring",
    "UpdateStreamMode",
    "PutResourcePolicy",
    "DeleteResourcePolicy",
    "UpdateMaxRecordSize",
    "UpdateStreamWarmThroughput",
    "UpdateStreamRecordDistributionStrategy",
    "RegisterStreamConsumer",
    "DeregisterStreamConsumer",
];

impl Kinesis {
    /// A service with no streams, in memory.
    pub fn new(config: BrokerConfig) -> Self {
        Self {
            config,
            streams: Arc::new(RwLock::new(BTreeMap::new())),
            iterators: iterator::IteratorCodec::new(),
            account: Mutex::new(control::AccountSettings::default()),
            subscriptions: fanout::Subscriptions::default(),
            storage: Storage::memory(),
            store: Arc::default(),
        }
    }

    /// The service as a data directory left it: the streams `replay` rebuilt while `storage`
    /// was opened.
    pub fn restore(
        config: BrokerConfig,
        storage: Storage,
        recovered: &Recovered,
        replay: store::Replay,
    ) -> Result<Self, StorageError> {
        let streams = replay.into_streams();
        Ok(Self {
            config,
            streams: Arc::new(RwLock::new(streams)),
            iterators: iterator::IteratorCodec::with_key(recovered.iterator_key),
            account: Mutex::new(store::restore_account(&recovered.meta)?),
            subscriptions: fanout::Subscriptions::default(),
            store: Arc::new(store::StreamStore::new(storage.clone(), &recovered.meta)),
            storage,
        })
    }

    /// Deletes record segments that only hold records past every stream's retention, after
    /// every shard forgot its records past retention (so no index points into a deleted segment).
    pub fn expire_records(&self) -> Result<usize, StorageError> {
        let now = self.now();
        let mut longest = i64::from(stream::DEFAULT_RETENTION_HOURS) * 3_600_000;
        for stream in self
            .streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let meta = stream.meta();
            let retention = meta.retention_ms();
            for shard in &meta.shards {
                shard.expire(now - retention);
            }
            longest = longest.max(retention);
        }
        self.storage.expire_records(now - longest)
    }

    /// Runs one operation; control operations persist the stream state they changed.
    pub fn dispatch(&self, operation: &str, wire: &Wire) -> ApiResult<Reply> {
        let reply = self.run(operation, wire)?;
        if CONTROL_WRITES.contains(&operation) {
            self.store.persist(&self.streams).map_err(|err| {
                tracing::error!(%err, operation, "cannot persist stream metadata");
                ApiError::internal("The change could not be stored.")
            })?;
        }
        Ok(reply)
    }

    fn run(&self, operation: &str, wire: &Wire) -> ApiResult<Reply> {
        macro_rules! route {
            ($($name:literal => $handler:ident),* $(,)?) => {
                match operation {
                    $($name => wire.encode(&self.$handler(wire.decode()?)?).map(Reply::Body),)*
                    "DescribeLimits" => wire.encode(&self.describe_limits()).map(Reply::Body),
                    "DescribeAccountSettings" => {
                        wire.encode(&self.describe_account_settings()).map(Reply::Body)
                    }
                    "SubscribeToShard" => self
                        .subscribe_to_shard(wire.decode()?, wire.protocol)
                        .map(Reply::EventStream),
                    _ => Err(ApiError::unknown_operation(operation)),
                }
            };
        }
        route! {
            "CreateStream" => create_stream,
            "DeleteStream" => delete_stream,
            "DescribeStream" => describe_stream,
            "DescribeStreamSummary" => describe_stream_summary,
            "ListStreams" => list_streams,
            "ListShards" => list_shards,
            "PutRecord" => put_record,
            "PutRecords" => put_records,
            "GetShardIterator" => get_shard_iterator,
            "GetRecords" => get_records,
            "SplitShard" => split_shard,
            "MergeShards" => merge_shards,
            "UpdateShardCount" => update_shard_count,
            "IncreaseStreamRetentionPeriod" => increase_retention,
            "DecreaseStreamRetentionPeriod" => decrease_retention,
            "AddTagsToStream" => add_tags_to_stream,
            "RemoveTagsFromStream" => remove_tags_from_stream,
            "ListTagsForStream" => list_tags_for_stream,
            "TagResource" => tag_resource,
            "UntagResource" => untag_resource,
            "ListTagsForResource" => list_tags_for_resource,
            "StartStreamEncryption" => start_stream_encryption,
            "StopStreamEncryption" => stop_stream_encryption,
            "EnableEnhancedMonitoring" => enable_enhanced_monitoring,
            "DisableEnhancedMonitoring" => disable_enhanced_monitoring,
            "UpdateStreamMode" => update_stream_mode,
            "PutResourcePolicy" => put_resource_policy,
            "GetResourcePolicy" => get_resource_policy,
            "DeleteResourcePolicy" => delete_resource_policy,
            "UpdateAccountSettings" => update_account_settings,
            "UpdateMaxRecordSize" => update_max_record_size,
            "UpdateStreamWarmThroughput" => update_stream_warm_throughput,
            "UpdateStreamRecordDistributionStrategy" => update_record_distribution_strategy,
            "RegisterStreamConsumer" => register_stream_consumer,
            "DescribeStreamConsumer" => describe_stream_consumer,
            "ListStreamConsumers" => list_stream_consumers,
            "DeregisterStreamConsumer" => deregister_stream_consumer,
        }
    }

    fn now(&self) -> i64 {
        self.config.clock.now_millis()
    }

    fn stream_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:kinesis:{}:{}:stream/{}",
            self.config.region, self.config.account_id, name
        )
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(format!(
            "Stream {name} under account {} not found.",
            self.config.account_id
        ))
    }

    /// Checks the stream name / ARN members of a request and returns the stream's name.
    fn address(&self, input: &impl StreamAddress, v: &mut Validator) -> ApiResult<String> {
        if let Some(name) = input.stream_name() {
            validate_stream_name(name, "streamName", v);
        }
        let from_arn = match input.stream_arn() {
            Some(arn) => {
                v.length(arn, "streamARN", 1, 2048);
                match parse_stream_arn(arn) {
                    Some(parsed) => Some(parsed),
                    None => {
                        v.violation(
                            arn,
                            "streamARN",
                            "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
                        );
                        None
                    }
                }
            }
            None => None,
        };
        match (input.stream_name(), from_arn) {
            (Some(name), Some(arn)) if name != arn.name => {
                Err(ApiError::invalid_argument(format!(
                    "StreamARN {} and StreamName {name} do not name the same stream.",
                    arn.name
                )))
            }
            (_, Some(arn))
                if arn.region != self.config.region || arn.account != self.config.account_id =>
            {
                // Well-formed, but another account's or region's stream: it is not here.
                Err(ApiError::not_found(format!(
                    "Stream {} under account {} not found.",
                    arn.name, arn.account
                )))
            }
            (Some(name), _) => Ok(name.to_owned()),
            (None, Some(arn)) => Ok(arn.name),
            // The ARN was malformed; the validator reports it.
            (None, None) if input.stream_arn().is_some() => Ok(String::new()),
            (None, None) => Err(ApiError::invalid_argument(
                "Either StreamName or StreamARN must be provided.",
            )),
        }
    }

    /// The stream, whatever its status.
    fn stream(&self, name: &str) -> ApiResult<Arc<Stream>> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| self.not_found(name))
    }

    /// Validates the address, finishes validation, and returns the stream.
    fn resolve(&self, input: &impl StreamAddress, mut v: Validator) -> ApiResult<Arc<Stream>> {
        let name = self.address(input, &mut v);
        v.finish()?;
        self.stream(&name?)
    }

    /// Like [`Self::resolve`], for data-plane calls: a stream that is being created or deleted
    /// is not found, as on AWS.
    fn resolve_readable(&self, input: &impl StreamAddress, v: Validator) -> ApiResult<Arc<Stream>> {
        let stream = self.resolve(input, v)?;
        if !stream.meta().status.is_readable() {
            return Err(self.not_found(&stream.name));
        }
        Ok(stream)
    }

    /// Moves a stream to `to` after the configured delay (at once when the delay is zero).
    fn settle(&self, stream: &Arc<Stream>, to: StreamStatus) {
        self.after_delay(stream, move |meta| meta.status = to);
    }

    /// Applies a change to a stream's metadata once the state-transition delay has passed (at
    /// once when it is zero, or when there is no runtime to wait on).
    fn after_delay(
        &self,
        stream: &Arc<Stream>,
        change: impl FnOnce(&mut stream::StreamMeta) + Send + 'static,
    ) {
        let delay = self.config.state_transition_delay;
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(runtime) if !delay.is_zero() => {
                let stream = Arc::clone(stream);
                let (store, streams) = (Arc::clone(&self.store), Arc::clone(&self.streams));
                runtime.spawn(async move {
                    tokio::time::sleep(delay).await;
                    change(&mut stream.meta_mut());
                    if let Err(err) = store.persist(&streams) {
                        tracing::error!(%err, stream = %stream.name, "cannot persist stream metadata");
                    }
                });
            }
            _ => change(&mut stream.meta_mut()),
        }
    }
}

/// Stream names: 1–128 characters of `[a-zA-Z0-9_.-]`.
fn validate_stream_name(name: &str, member: &str, v: &mut Validator) {
    v.length(name, member, 1, 128);
    v.chars(name, member, "[a-zA-Z0-9_.-]+", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
    });
}

/// Shard ids: 1–128 characters of `[a-zA-Z0-9_.-]`.
fn validate_shard_id(id: &str, member: &str, v: &mut Validator) {
    validate_stream_name(id, member, v);
}

/// The parts of a stream ARN that select a stream.
struct StreamArn {
    region: String,
    account: String,
    name: String,
}

/// Parses `arn:aws[-partition]:kinesis:<region>:<account>:stream/<name>`.
fn parse_stream_arn(arn: &str) -> Option<StreamArn> {
    let mut parts = arn.splitn(6, ':');
    let (arn_word, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let name = resource.strip_prefix("stream/")?;
    let well_formed = arn_word == "arn"
        && partition.starts_with("aws")
        && service == "kinesis"
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && !name.contains(char::is_whitespace);
    well_formed.then(|| StreamArn {
        region: region.to_owned(),
        account: account.to_owned(),
        name: name.to_owned(),
    })
}
