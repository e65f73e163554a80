//! The control plane: video streams, their versions, statuses, retention and tags.
//!
//! A stream's status settles lazily: a change records when the transition ends (now plus the
//! broker's state-transition delay), and every read compares that with the broker's clock, so
//! tests that move the clock see CREATING turn ACTIVE and DELETING streams disappear.

use super::api::{self, StreamRef, invalid_argument, millis_to_seconds, not_found};
use super::fragments::{Fragment, FragmentStore, Owner};
use super::store::{self, StreamRecord};
use crate::config::BrokerConfig;
use crate::http::error::{ApiError, ApiResult};
use crate::http::validation::Validator;
use crate::storage::{ServiceLog, Storage, StorageError};
use rand::Rng;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Most tags a stream may carry.
const MAX_TAGS: usize = 50;
/// Longest retention KVS accepts: ten years.
const MAX_RETENTION_HOURS: i64 = 87_600;

/// Lifecycle status of a video stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Active,
    Updating,
    Deleting,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "CREATING",
            Status::Active => "ACTIVE",
            Status::Updating => "UPDATING",
            Status::Deleting => "DELETING",
        }
    }
}

/// One video stream: its saved metadata, its fragments and its status.
#[derive(Clone)]
pub struct VideoStream {
    pub record: StreamRecord,
    pub fragments: Arc<FragmentStore>,
    /// The status while a transition is in flight, and when it ends.
    transition: Option<(Status, i64)>,
}

impl VideoStream {
    /// The status at `now`.
    pub fn status(&self, now_millis: i64) -> Status {
        match self.transition {
            Some((status, until)) if now_millis < until => status,
            _ => Status::Active,
        }
    }

    fn info(&self, now_millis: i64) -> Value {
        let mut info = json!({
            "StreamName": self.record.name,
            "StreamARN": self.record.arn,
            "KmsKeyId": self.record.kms_key_id,
            "Version": self.record.version,
            "Status": self.status(now_millis).as_str(),
            "CreationTime": millis_to_seconds(self.record.creation_millis),
            "DataRetentionInHours": self.record.retention_hours,
        });
        if let Some(device) = &self.record.device_name {
            info["DeviceName"] = device.clone().into();
        }
        if let Some(media_type) = &self.record.media_type {
            info["MediaType"] = media_type.clone().into();
        }
        info
    }
}

/// A new opaque version: KVS versions are 1–64 alphanumerics.
fn new_version() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

/// All video streams of the broker.
pub struct Streams {
    config: BrokerConfig,
    /// Where stream state is saved (nowhere in memory mode).
    storage: Storage,
    /// Where retained fragments are written.
    log: ServiceLog,
    streams: Mutex<BTreeMap<String, VideoStream>>,
}

impl Streams {
    /// No streams, kept in memory only.
    pub fn new(config: BrokerConfig) -> Self {
        Self::restore(
            config,
            Storage::memory(),
            ServiceLog::default(),
            Vec::new(),
            BTreeMap::new(),
        )
    }

    /// The streams a data directory held, each with the fragments recovered for it, saving
    /// changes to `storage` and fragments to `log`.
    pub fn restore(
        config: BrokerConfig,
        storage: Storage,
        log: ServiceLog,
        records: Vec<StreamRecord>,
        mut fragments: BTreeMap<String, Vec<Fragment>>,
    ) -> Self {
        let streams = records
            .into_iter()
            .map(|record| {
                let store = FragmentStore::new(
                    Owner {
                        stream_name: record.name.clone(),
                        creation_millis: record.creation_millis,
                    },
                    log.clone(),
                );
                store.restore(fragments.remove(&record.name).unwrap_or_default());
                let stream = VideoStream {
                    record,
                    fragments: Arc::new(store),
                    transition: None,
                };
                (stream.record.name.clone(), stream)
            })
            .collect();
        Self {
            config,
            storage,
            log,
            streams: Mutex::new(streams),
        }
    }

    /// The longest retention of any stream, in hours: fragments older than that are no
    /// longer needed in the log.
    pub fn longest_retention_hours(&self) -> u32 {
        self.locked()
            .values()
            .map(|s| s.record.retention_hours)
            .max()
            .unwrap_or(0)
    }

    fn now(&self) -> i64 {
        self.config.clock.now_millis()
    }

    /// The streams, with those whose deletion has finished removed.
    fn locked(&self) -> MutexGuard<'_, BTreeMap<String, VideoStream>> {
        let now = self.now();
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.retain(
            |_, s| !matches!(s.transition, Some((Status::Deleting, until)) if now >= until),
        );
        streams
    }

    fn transition(&self, status: Status) -> Option<(Status, i64)> {
        let delay = self.config.state_transition_delay.as_millis() as i64;
        (delay > 0).then(|| (status, self.now() + delay))
    }

    /// Finds a stream by name or ARN (exactly as KVS: one of them must be given).
    fn find_name(
        streams: &BTreeMap<String, VideoStream>,
        reference: &StreamRef,
    ) -> ApiResult<String> {
        let stream = match (&reference.stream_name, &reference.stream_arn) {
            (Some(name), _) => streams.get(name),
            (None, Some(arn)) => streams.values().find(|s| &s.record.arn == arn),
            (None, None) => {
                return Err(invalid_argument(
                    "Either StreamName or StreamARN must be specified.",
                ));
            }
        };
        match stream {
            Some(stream)
                if reference
                    .stream_arn
                    .as_ref()
                    .is_none_or(|arn| *arn == stream.record.arn) =>
            {
                Ok(stream.record.name.clone())
            }
            _ => Err(not_found(format!(
                "The requested stream {} is not found or not active.",
                reference
                    .stream_name
                    .as_deref()
                    .or(reference.stream_arn.as_deref())
                    .unwrap_or_default()
            ))),
        }
    }

    /// A copy of the stream's metadata (its fragment store is shared).
    pub fn get(&self, reference: &StreamRef) -> ApiResult<VideoStream> {
        let streams = self.locked();
        let name = Self::find_name(&streams, reference)?;
        streams
            .get(&name)
            .cloned()
            .ok_or_else(|| ApiError::internal("stream vanished"))
    }

    /// Applies `change` to an ACTIVE stream whose version is `current_version`, then gives it a
    /// new version and the UPDATING transition.
    fn update(
        &self,
        reference: &StreamRef,
        current_version: Option<&str>,
        change: impl FnOnce(&mut VideoStream) -> ApiResult<()>,
    ) -> ApiResult<()> {
        let now = self.now();
        let transition = self.transition(Status::Updating);
        let mut streams = self.locked();
        let name = Self::find_name(&streams, reference)?;
        let stream = streams
            .get_mut(&name)
            .ok_or_else(|| ApiError::internal("stream vanished"))?;
        check_version(stream, current_version)?;
        if stream.status(now) != Status::Active {
            return Err(ApiError::in_use(format!(
                "Stream {name} is {}; only an ACTIVE stream can be updated.",
                stream.status(now).as_str()
            )));
        }
        change(stream)?;
        stream.record.version = new_version();
        stream.transition = transition;
        store::put_stream(&self.storage, stream)
    }

    pub fn create(&self, input: api::CreateStreamInput) -> ApiResult<Value> {
        let mut v = Validator::new();
        if let Some(name) = v.required(&input.stream_name, "streamName") {
            check_name(name, "streamName", &mut v);
        }
        if let Some(device) = &input.device_name {
            v.length(device, "deviceName", 1, 128);
        }
        if let Some(media_type) = &input.media_type {
            v.length(media_type, "mediaType", 1, 128);
        }
        let retention = input.data_retention_in_hours.unwrap_or(0);
        v.range(retention, "dataRetentionInHours", 0, MAX_RETENTION_HOURS);
        if let Some(tags) = &input.tags {
            check_tags(tags.iter(), tags.len(), &mut v);
        }
        v.finish().map_err(|e| invalid_argument(e.message))?;
        let name = input.stream_name.unwrap_or_default();
        let now = self.now();
        let transition = self.transition(Status::Creating);
        let mut streams = self.locked();
        if streams.contains_key(&name) {
            return Err(ApiError::in_use(format!(
                "The stream {name} already exists."
            )));
        }
        let arn = format!(
            "arn:aws:kinesisvideo:{}:{}:stream/{name}/{now}",
            self.config.region, self.config.account_id
        );
        let stream = VideoStream {
            record: StreamRecord {
                name: name.clone(),
                arn: arn.clone(),
                device_name: input.device_name,
                media_type: input.media_type,
                kms_key_id: input.kms_key_id.unwrap_or_else(|| {
                    format!(
                        "arn:aws:kms:{}:{}:alias/aws/kinesisvideo",
                        self.config.region, self.config.account_id
                    )
                }),
                version: new_version(),
                creation_millis: now,
                retention_hours: retention as u32,
                tags: input.tags.unwrap_or_default(),
            },
            fragments: Arc::new(FragmentStore::new(
                Owner {
                    stream_name: name.clone(),
                    creation_millis: now,
                },
                self.log.clone(),
            )),
            transition,
        };
        store::put_stream(&self.storage, &stream)?;
        streams.insert(name, stream);
        Ok(json!({ "StreamARN": arn }))
    }

    pub fn describe(&self, reference: &StreamRef) -> ApiResult<Value> {
        let stream = self.get(reference)?;
        Ok(json!({ "StreamInfo": stream.info(self.now()) }))
    }

    pub fn list(&self, input: api::ListStreamsInput) -> ApiResult<Value> {
        let limit = input.max_results.unwrap_or(10_000);
        if !(1..=10_000).contains(&limit) {
            return Err(invalid_argument("MaxResults must be between 1 and 10000."));
        }
        let prefix = match input.stream_name_condition {
            None => None,
            Some(condition) => {
                if condition
                    .comparison_operator
                    .as_deref()
                    .is_some_and(|op| op != "BEGINS_WITH")
                {
                    return Err(invalid_argument("ComparisonOperator must be BEGINS_WITH."));
                }
                condition.comparison_value
            }
        };
        let now = self.now();
        let streams = self.locked();
        let start = input.next_token.unwrap_or_default();
        let mut matching = streams
            .range(start..)
            .filter(|(name, _)| prefix.as_ref().is_none_or(|p| name.starts_with(p.as_str())));
        let page: Vec<Value> = matching
            .by_ref()
            .take(limit as usize)
            .map(|(_, s)| s.info(now))
            .collect();
        let mut out = json!({ "StreamInfoList": page });
        if let Some((next, _)) = matching.next() {
            out["NextToken"] = next.clone().into();
        }
        Ok(out)
    }

    pub fn delete(&self, input: api::DeleteStreamInput) -> ApiResult<Value> {
        let Some(arn) = input.stream_arn else {
            return Err(invalid_argument("StreamARN must be specified."));
        };
        let now = self.now();
        let deleting = self.transition(Status::Deleting);
        let mut streams = self.locked();
        let reference = StreamRef {
            stream_name: None,
            stream_arn: Some(arn),
        };
        let name = Self::find_name(&streams, &reference)?;
        let Some(stream) = streams.get_mut(&name) else {
            return Err(ApiError::internal("stream vanished"));
        };
        check_version(stream, input.current_version.as_deref())?;
        if stream.status(now) == Status::Deleting {
            return Err(ApiError::in_use(format!(
                "Stream {name} is already being deleted."
            )));
        }
        // Saved as gone at once: a restart ends the DELETING transition.
        store::delete_stream(&self.storage, &name)?;
        match deleting {
            Some(transition) => stream.transition = Some(transition),
            None => {
                streams.remove(&name);
            }
        }
        Ok(json!({}))
    }

    pub fn update_stream(&self, input: api::UpdateStreamInput) -> ApiResult<Value> {
        let mut v = Validator::new();
        v.required(&input.current_version, "currentVersion");
        if let Some(device) = &input.device_name {
            v.length(device, "deviceName", 1, 128);
        }
        v.finish().map_err(|e| invalid_argument(e.message))?;
        self.update(&input.stream, input.current_version.as_deref(), |stream| {
            if let Some(device) = input.device_name {
                stream.record.device_name = Some(device);
            }
            if let Some(media_type) = input.media_type {
                stream.record.media_type = Some(media_type);
            }
            Ok(())
        })?;
        Ok(json!({}))
    }

    pub fn update_retention(&self, input: api::UpdateDataRetentionInput) -> ApiResult<Value> {
        let mut v = Validator::new();
        v.required(&input.current_version, "currentVersion");
        if let Some(op) = v.required(&input.operation, "operation") {
            v.one_of(
                op,
                "operation",
                &["INCREASE_DATA_RETENTION", "DECREASE_DATA_RETENTION"],
            );
        }
        if let Some(hours) = v.required(
            &input.data_retention_change_in_hours,
            "dataRetentionChangeInHours",
        ) {
            v.range(*hours, "dataRetentionChangeInHours", 1, MAX_RETENTION_HOURS);
        }
        v.finish().map_err(|e| invalid_argument(e.message))?;
        let change = input.data_retention_change_in_hours.unwrap_or(0);
        let increase = input.operation.as_deref() == Some("INCREASE_DATA_RETENTION");
        let now = self.now();
        self.update(&input.stream, input.current_version.as_deref(), |stream| {
            let current = i64::from(stream.record.retention_hours);
            let new = if increase {
                current + change
            } else {
                current - change
            };
            if !(0..=MAX_RETENTION_HOURS).contains(&new) {
                return Err(invalid_argument(format!(
                    "The resulting retention {new} hours is outside 0..={MAX_RETENTION_HOURS}."
                )));
            }
            stream.record.retention_hours = new as u32;
            // A decrease deletes data older than the new window at once.
            stream.fragments.expire(now, stream.record.retention_hours);
            Ok(())
        })?;
        Ok(json!({}))
    }

    pub fn tag_stream(&self, input: api::TagStreamInput) -> ApiResult<Value> {
        let tags = input
            .tags
            .ok_or_else(|| invalid_argument("Tags must be specified."))?;
        self.add_tags(&input.stream, tags)
    }

    pub fn tag_resource(&self, input: api::TagResourceInput) -> ApiResult<Value> {
        let tags = input
            .tags
            .ok_or_else(|| invalid_argument("Tags must be specified."))?;
        self.add_tags(
            &by_arn(input.resource_arn)?,
            tags.into_iter().map(|t| (t.key, t.value)).collect(),
        )
    }

    fn add_tags(&self, reference: &StreamRef, tags: BTreeMap<String, String>) -> ApiResult<Value> {
        let mut v = Validator::new();
        check_tags(tags.iter(), tags.len(), &mut v);
        v.finish().map_err(|e| invalid_argument(e.message))?;
        let mut streams = self.locked();
        let name = Self::find_name(&streams, reference)?;
        let stream = streams
            .get_mut(&name)
            .ok_or_else(|| ApiError::internal("stream vanished"))?;
        let mut merged = stream.record.tags.clone();
        merged.extend(tags);
        if merged.len() > MAX_TAGS {
            return Err(ApiError::new(
                "TagsPerResourceExceededLimitException",
                format!("A stream can have at most {MAX_TAGS} tags."),
            ));
        }
        stream.record.tags = merged;
        store::put_stream(&self.storage, stream)?;
        Ok(json!({}))
    }

    pub fn untag(&self, reference: &StreamRef, keys: Option<Vec<String>>) -> ApiResult<Value> {
        let keys = keys.ok_or_else(|| invalid_argument("TagKeyList must be specified."))?;
        if keys.is_empty() || keys.len() > MAX_TAGS {
            return Err(invalid_argument("TagKeyList must have 1 to 50 keys."));
        }
        let mut streams = self.locked();
        let name = Self::find_name(&streams, reference)?;
        if let Some(stream) = streams.get_mut(&name) {
            for key in keys {
                stream.record.tags.remove(&key);
            }
            store::put_stream(&self.storage, stream)?;
        }
        Ok(json!({}))
    }

    pub fn list_tags(&self, reference: &StreamRef) -> ApiResult<Value> {
        let stream = self.get(reference)?;
        Ok(json!({ "Tags": stream.record.tags }))
    }

    /// Deletes closed log segments whose fragments all arrived before `horizon_millis`.
    pub fn expire_log(&self, horizon_millis: i64) -> Result<usize, StorageError> {
        self.log.expire(horizon_millis)
    }

    /// Drops fragments past every stream's retention.
    pub fn expire_fragments(&self) {
        let now = self.now();
        for stream in self.locked().values() {
            stream.fragments.expire(now, stream.record.retention_hours);
        }
    }
}

/// A `ResourceARN` as a stream reference.
pub fn by_arn(arn: Option<String>) -> ApiResult<StreamRef> {
    match arn {
        Some(arn) => Ok(StreamRef {
            stream_name: None,
            stream_arn: Some(arn),
        }),
        None => Err(invalid_argument("ResourceARN must be specified.")),
    }
}

fn check_version(stream: &VideoStream, current_version: Option<&str>) -> ApiResult<()> {
    match current_version {
        Some(version) if version != stream.record.version => Err(api::version_mismatch(format!(
            "The stream {} has version {}, not {version}.",
            stream.record.name, stream.record.version
        ))),
        _ => Ok(()),
    }
}

fn check_name(name: &str, member: &str, v: &mut Validator) {
    v.length(name, member, 1, 256);
    v.chars(name, member, "[a-zA-Z0-9_.-]+", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
    });
}

fn check_tags<'a>(
    tags: impl Iterator<Item = (&'a String, &'a String)>,
    count: usize,
    v: &mut Validator,
) {
    v.count(count, "tags", 1, MAX_TAGS);
    for (key, value) in tags {
        v.length(key, "tags.key", 1, 128);
        v.length(value, "tags.value", 0, 256);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ShiftableClock;
    use std::time::Duration;

    fn named(name: &str) -> StreamRef {
        StreamRef {
            stream_name: Some(name.into()),
            stream_arn: None,
        }
    }

    fn create(streams: &Streams, name: &str) -> ApiResult<Value> {
        streams.create(api::parse(
            format!(r#"{{"StreamName":"{name}"}}"#).as_bytes(),
        )?)
    }

    #[test]
    fn create_twice_is_resource_in_use_and_missing_is_404() {
        let streams = Streams::new(BrokerConfig::default());
        create(&streams, "cam").expect("created");
        assert_eq!(
            create(&streams, "cam").map_err(|e| e.code),
            Err("ResourceInUseException")
        );
        let missing = streams.describe(&named("nope")).expect_err("missing");
        assert_eq!(
            (missing.code, missing.status.as_u16()),
            ("ResourceNotFoundException", 404)
        );
    }

    #[test]
    fn updates_need_the_current_version_and_change_it() {
        let streams = Streams::new(BrokerConfig::default());
        create(&streams, "cam").expect("created");
        let version = streams.get(&named("cam")).expect("exists").record.version;
        let update = |version: &str| {
            streams.update_retention(
                api::parse(
                    format!(
                        r#"{{"StreamName":"cam","CurrentVersion":"{version}","Operation":"INCREASE_DATA_RETENTION","DataRetentionChangeInHours":2}}"#
                    )
                    .as_bytes(),
                )
                .expect("input"),
            )
        };
        assert_eq!(
            update("stale").map_err(|e| e.code),
            Err("VersionMismatchException")
        );
        update(&version).expect("updated");
        let after = streams.get(&named("cam")).expect("exists");
        assert_eq!(after.record.retention_hours, 2);
        assert_ne!(after.record.version, version);
    }

    #[test]
    fn statuses_settle_after_the_transition_delay() {
        let clock = ShiftableClock::new();
        let config = BrokerConfig {
            state_transition_delay: Duration::from_secs(2),
            clock: Arc::new(clock.clone()),
            ..BrokerConfig::default()
        };
        let streams = Streams::new(config);
        create(&streams, "cam").expect("created");
        let status = |s: &Streams| {
            s.describe(&named("cam"))
                .map(|d| d["StreamInfo"]["Status"].clone())
        };
        assert_eq!(status(&streams).expect("exists"), "CREATING");
        clock.advance(Duration::from_secs(3));
        assert_eq!(status(&streams).expect("exists"), "ACTIVE");
        let arn = streams.get(&named("cam")).expect("exists").record.arn;
        streams
            .delete(api::parse(format!(r#"{{"StreamARN":"{arn}"}}"#).as_bytes()).expect("input"))
            .expect("deleting");
        assert_eq!(status(&streams).expect("still there"), "DELETING");
        clock.advance(Duration::from_secs(3));
        assert_eq!(
            status(&streams).map_err(|e| e.code),
            Err("ResourceNotFoundException")
        );
    }

    #[test]
    fn list_pages_by_name_and_filters_by_prefix() {
        let streams = Streams::new(BrokerConfig::default());
        for name in ["a1", "a2", "a3", "b1"] {
            create(&streams, name).expect("created");
        }
        let first = streams
            .list(api::parse(br#"{"MaxResults":2,"StreamNameCondition":{"ComparisonOperator":"BEGINS_WITH","ComparisonValue":"a"}}"#).expect("input"))
            .expect("listed");
        assert_eq!(first["StreamInfoList"].as_array().map(Vec::len), Some(2));
        assert_eq!(first["NextToken"], "a3");
    }
}
