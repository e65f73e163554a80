//! PutMedia: turns a Matroska body into fragments (one per Cluster), validates them, stores
//! them, and answers with the acknowledgement stream producers parse.
//!
//! [`Session`] is the protocol without the network: bytes in, [`Ack`]s out. [`put_media`] runs
//! a session over one HTTP request, streaming acks as newline-delimited JSON while the body is
//! still arriving, and IDLE acks while the producer sends nothing.

use super::api::{self, StreamRef};
use super::fragments::{self, Fragment, Frame, TrackFrames, format_number};
use super::mkv::{Block, Demuxer, Event, MkvError, Tracks};
use super::{Video, control::VideoStream};
use crate::http::error::ApiResult;
use crate::storage::write_mark;
use axum::body::Body;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, header};
use std::sync::Arc;
use std::time::Duration;

/// Largest fragment KVS accepts (ErrorId 4001 above it).
pub const MAX_FRAGMENT_BYTES: u64 = 50 * 1024 * 1024;
/// Longest fragment KVS accepts (ErrorId 4002 above it).
pub const MAX_FRAGMENT_MILLIS: i64 = 10_000;
/// Most tracks a stream may declare (ErrorId 4012 above it).
pub const MAX_TRACKS: usize = 3;
/// Most producer metadata items per fragment (ErrorId 4009 above it).
pub const MAX_METADATA_ITEMS: usize = 10;
/// The latest producer time (epoch ms) a frame may have, 9999-12-31T23:59:59.999Z: far past any
/// real recording, and small enough that times in media timescales cannot overflow.
pub const MAX_PRODUCER_MILLIS: i64 = 253_402_300_799_999;
/// How often an open session with no data gets an IDLE ack.
pub const IDLE_INTERVAL: Duration = Duration::from_secs(3);
/// How long a session may stay without data before the broker ends it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The error acks KVS documents, with the ids and codes producer SDKs switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    StreamReadError,
    MaxFragmentSizeReached,
    MaxFragmentDurationReached,
    FragmentTimecodeLesserThanPrevious,
    InvalidMkvData,
    InvalidProducerTimestamp,
    StreamNotActive,
    FragmentMetadataLimitReached,
    TrackNumberMismatch,
    FramesMissingForTrack,
    MoreThanAllowedTracksFound,
    /// The fragment could not be written to the data directory.
    ArchivalError,
}

impl AckError {
    /// The numeric `ErrorId`.
    pub fn id(self) -> u32 {
        match self {
            AckError::StreamReadError => 4000,
            AckError::MaxFragmentSizeReached => 4001,
            AckError::MaxFragmentDurationReached => 4002,
            AckError::FragmentTimecodeLesserThanPrevious => 4004,
            AckError::InvalidMkvData => 4006,
            AckError::InvalidProducerTimestamp => 4007,
            AckError::StreamNotActive => 4008,
            AckError::FragmentMetadataLimitReached => 4009,
            AckError::TrackNumberMismatch => 4010,
            AckError::FramesMissingForTrack => 4011,
            AckError::MoreThanAllowedTracksFound => 4012,
            AckError::ArchivalError => 5001,
        }
    }

    /// The `ErrorCode` string.
    pub fn code(self) -> &'static str {
        match self {
            AckError::StreamReadError => "STREAM_READ_ERROR",
            AckError::MaxFragmentSizeReached => "MAX_FRAGMENT_SIZE_REACHED",
            AckError::MaxFragmentDurationReached => "MAX_FRAGMENT_DURATION_REACHED",
            AckError::FragmentTimecodeLesserThanPrevious => {
                "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS"
            }
            AckError::InvalidMkvData => "INVALID_MKV_DATA",
            AckError::InvalidProducerTimestamp => "INVALID_PRODUCER_TIMESTAMP",
            AckError::StreamNotActive => "STREAM_NOT_ACTIVE",
            AckError::FragmentMetadataLimitReached => "FRAGMENT_METADATA_LIMIT_REACHED",
            AckError::TrackNumberMismatch => "TRACK_NUMBER_MISMATCH",
            AckError::FramesMissingForTrack => "FRAMES_MISSING_FOR_TRACK",
            AckError::MoreThanAllowedTracksFound => "MORE_THAN_ALLOWED_TRACKS_FOUND",
            AckError::ArchivalError => "ARCHIVAL_ERROR",
        }
    }
}

/// The kind of an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Buffering,
    Received,
    Persisted,
    Error,
    Idle,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Buffering => "BUFFERING",
            EventType::Received => "RECEIVED",
            EventType::Persisted => "PERSISTED",
            EventType::Error => "ERROR",
            EventType::Idle => "IDLE",
        }
    }
}

/// One acknowledgement line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub event: EventType,
    /// The Cluster Timecode exactly as the producer wrote it.
    pub timecode: Option<u64>,
    pub fragment_number: Option<String>,
    pub error: Option<AckError>,
}

impl Ack {
    fn idle() -> Self {
        Self {
            event: EventType::Idle,
            timecode: None,
            fragment_number: None,
            error: None,
        }
    }

    /// The JSON line producers parse: `FragmentTimecode` and `ErrorId` are numbers,
    /// `FragmentNumber` a string.
    pub fn to_line(&self) -> Bytes {
        let mut ack = serde_json::Map::new();
        ack.insert("EventType".into(), self.event.as_str().into());
        if let Some(timecode) = self.timecode {
            ack.insert("FragmentTimecode".into(), timecode.into());
        }
        if let Some(number) = &self.fragment_number {
            ack.insert("FragmentNumber".into(), number.clone().into());
        }
        if let Some(error) = self.error {
            ack.insert("ErrorId".into(), error.id().into());
            ack.insert("ErrorCode".into(), error.code().into());
        }
        let mut line = serde_json::Value::Object(ack).to_string().into_bytes();
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// How the producer's Cluster timecodes relate to wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimecodeType {
    /// Timecodes are epoch times.
    Absolute,
    /// Timecodes count from the producer start timestamp.
    Relative,
}

/// A fragment being received.
struct Building {
    sequence: u64,
    server_millis: i64,
    timecode: Option<u64>,
    blocks: Vec<Block>,
    bytes: u64,
    error: Option<AckError>,
    metadata: Vec<(String, String)>,
}

/// One PutMedia body: see the module docs.
pub struct Session {
    video: Video,
    stream: VideoStream,
    timecode_type: TimecodeType,
    start_millis: i64,
    demuxer: Demuxer,
    max_fragment_bytes: u64,
    header: Option<(u64, Arc<Tracks>)>,
    building: Option<Building>,
    /// Metadata Tags seen since the last Cluster; they belong to the next fragment.
    pending_metadata: Vec<(String, String)>,
    /// Producer time (ms) of the latest frame of each track in the session's previous fragment:
    /// the next fragment's frames of that track must come after it. Per track, because muxers
    /// interleave by decode time, so an audio frame may open a fragment before the previous
    /// fragment's last video frame is presented. Only within a session: a producer that
    /// restarts (or uploads faster than real time) may overlap an earlier session's times.
    latest_frame_millis: Vec<(u64, i64)>,
    ended: bool,
}

impl Session {
    /// A session writing to `stream`.
    pub fn new(
        video: Video,
        stream: VideoStream,
        timecode_type: TimecodeType,
        start_millis: i64,
    ) -> Self {
        Self {
            latest_frame_millis: Vec::new(),
            video,
            stream,
            timecode_type,
            start_millis,
            demuxer: Demuxer::new(MAX_FRAGMENT_BYTES),
            max_fragment_bytes: MAX_FRAGMENT_BYTES,
            header: None,
            building: None,
            pending_metadata: Vec::new(),
            ended: false,
        }
    }

    /// Lowers the fragment size limit (tests).
    pub fn with_max_fragment_bytes(mut self, max: u64) -> Self {
        self.max_fragment_bytes = max;
        self.demuxer = Demuxer::new(max);
        self
    }

    /// Whether the session ended on an unrecoverable error; nothing more is read.
    pub fn has_ended(&self) -> bool {
        self.ended
    }

    /// Feeds the next piece of the body.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Ack> {
        if self.ended {
            return Vec::new();
        }
        let mut events = Vec::new();
        let parsed = self.demuxer.push(bytes, &mut events);
        self.apply(events, parsed)
    }

    /// The body ended.
    pub fn finish(&mut self) -> Vec<Ack> {
        if self.ended {
            return Vec::new();
        }
        let mut events = Vec::new();
        let parsed = self.demuxer.finish(&mut events);
        let acks = self.apply(events, parsed);
        self.ended = true;
        acks
    }

    /// The body broke off (a read error, or a piece refused by its signature check): the
    /// fragment in progress is dropped, never stored truncated, and acked as a read error.
    pub fn broke_off(&mut self) -> Vec<Ack> {
        let mut acks = Vec::new();
        if !self.ended {
            self.fail(AckError::StreamReadError, &mut acks);
        }
        acks
    }

    fn apply(&mut self, events: Vec<Event>, parsed: Result<(), MkvError>) -> Vec<Ack> {
        let mut acks = Vec::new();
        for event in events {
            self.event(event, &mut acks);
            if self.ended {
                return acks;
            }
        }
        if let Err(err) = parsed {
            tracing::debug!(stream = %self.stream.record.name, %err, "PutMedia body rejected");
            let error = match err {
                MkvError::Invalid(_) => AckError::InvalidMkvData,
                MkvError::TooLarge { .. } => AckError::MaxFragmentSizeReached,
            };
            self.fail(error, &mut acks);
        }
        acks
    }

    /// An error that ends the session: acked against the fragment in progress, if any.
    fn fail(&mut self, error: AckError, acks: &mut Vec<Ack>) {
        let building = self.building.take();
        acks.push(Ack {
            event: EventType::Error,
            timecode: building.as_ref().and_then(|b| b.timecode),
            fragment_number: building.map(|b| format_number(b.sequence)),
            error: Some(error),
        });
        self.ended = true;
    }

    fn event(&mut self, event: Event, acks: &mut Vec<Ack>) {
        match event {
            Event::Tracks {
                timecode_scale,
                tracks,
            } => {
                if tracks.tracks.len() > MAX_TRACKS {
                    return self.fail(AckError::MoreThanAllowedTracksFound, acks);
                }
                self.header = Some((timecode_scale, tracks));
            }
            Event::ClusterStart => {
                if self.header.is_none() {
                    return self.fail(AckError::InvalidMkvData, acks);
                }
                self.building = Some(Building {
                    sequence: self.video.next_fragment_sequence(),
                    server_millis: self.video.now_millis(),
                    timecode: None,
                    blocks: Vec::new(),
                    bytes: 0,
                    error: None,
                    metadata: std::mem::take(&mut self.pending_metadata),
                });
            }
            Event::ClusterTimecode(timecode) => {
                let Some(building) = &mut self.building else {
                    return self.fail(AckError::InvalidMkvData, acks);
                };
                building.timecode = Some(timecode);
                acks.push(Ack {
                    event: EventType::Buffering,
                    timecode: Some(timecode),
                    fragment_number: Some(format_number(building.sequence)),
                    error: None,
                });
            }
            Event::Block(block) => {
                let tracks = self.header.as_ref().map(|(_, tracks)| Arc::clone(tracks));
                let Some(building) = &mut self.building else {
                    return self.fail(AckError::InvalidMkvData, acks);
                };
                if building.timecode.is_none() {
                    return self.fail(AckError::InvalidMkvData, acks);
                }
                if building.error.is_some() {
                    return;
                }
                if tracks.is_none_or(|t| t.get(block.track).is_none()) {
                    building.error = Some(AckError::TrackNumberMismatch);
                    building.blocks.clear();
                    return;
                }
                building.bytes += block.frame.len() as u64 + 4;
                if building.bytes > self.max_fragment_bytes {
                    building.error = Some(AckError::MaxFragmentSizeReached);
                    building.blocks.clear();
                    return;
                }
                building.blocks.push(block);
            }
            Event::ClusterEnd => {
                if let Some(building) = self.building.take() {
                    self.complete(building, acks);
                }
            }
            Event::Tags(pairs) => self.pending_metadata.extend(pairs),
        }
    }

    /// Validates a whole fragment and stores it, or acks why not.
    fn complete(&mut self, building: Building, acks: &mut Vec<Ack>) {
        let Some(timecode) = building.timecode else {
            return self.fail(AckError::InvalidMkvData, acks);
        };
        let number = format_number(building.sequence);
        let ack = |event, error| Ack {
            event,
            timecode: Some(timecode),
            fragment_number: Some(number.clone()),
            error,
        };
        match self.validate(&building, timecode) {
            Err(error) => {
                tracing::debug!(stream = %self.stream.record.name, fragment = %number, code = error.code(), "fragment rejected");
                acks.push(ack(EventType::Error, Some(error)));
                if error == AckError::StreamNotActive {
                    self.ended = true;
                }
            }
            Ok((fragment, latest_frame_millis)) => {
                let retention_hours = self.stream.record.retention_hours;
                if let Err(err) = self.stream.fragments.append(fragment, retention_hours) {
                    tracing::error!(stream = %self.stream.record.name, fragment = %number, %err, "cannot store a fragment");
                    acks.push(ack(EventType::Error, Some(AckError::ArchivalError)));
                    return;
                }
                self.latest_frame_millis = latest_frame_millis;
                // Bounds memory for streams without retention as well as with it.
                self.stream
                    .fragments
                    .expire(self.video.now_millis(), retention_hours);
                acks.push(ack(EventType::Received, None));
                if retention_hours > 0 {
                    acks.push(ack(EventType::Persisted, None));
                }
            }
        }
    }

    /// The fragment, and the producer time (epoch ms) of its latest frame of each track.
    fn validate(
        &self,
        building: &Building,
        timecode: u64,
    ) -> Result<(Fragment, Vec<(u64, i64)>), AckError> {
        if let Some(error) = building.error {
            return Err(error);
        }
        let Some((scale, tracks)) = &self.header else {
            return Err(AckError::InvalidMkvData);
        };
        // The stream must still exist, and be the same stream (not deleted and re-created).
        let current = self.video.stream(&StreamRef {
            stream_name: Some(self.stream.record.name.clone()),
            stream_arn: None,
        });
        if current.is_none_or(|s| s.record.arn != self.stream.record.arn) {
            return Err(AckError::StreamNotActive);
        }
        if building.metadata.len() > MAX_METADATA_ITEMS
            || building.metadata.iter().any(|(name, value)| {
                name.starts_with("AWS") || name.len() > 128 || value.len() > 256
            })
        {
            return Err(AckError::FragmentMetadataLimitReached);
        }
        let to_millis = |units: i128| -> Result<i64, AckError> {
            units
                .checked_mul(i128::from(*scale))
                .and_then(|nanos| i64::try_from(nanos / 1_000_000).ok())
                .ok_or(AckError::InvalidProducerTimestamp)
        };
        let cluster_millis = to_millis(i128::from(timecode))?;
        let producer_millis = match self.timecode_type {
            TimecodeType::Absolute => cluster_millis,
            TimecodeType::Relative => self
                .start_millis
                .checked_add(cluster_millis)
                .ok_or(AckError::InvalidProducerTimestamp)?,
        };
        let in_range = |millis: i64| (0..=MAX_PRODUCER_MILLIS).contains(&millis);
        if !in_range(producer_millis) {
            return Err(AckError::InvalidProducerTimestamp);
        }
        let mut frames = Vec::with_capacity(building.blocks.len());
        for block in &building.blocks {
            let offset_millis =
                to_millis(i128::from(timecode) + i128::from(block.timecode))? - cluster_millis;
            if !producer_millis
                .checked_add(offset_millis)
                .is_some_and(in_range)
            {
                return Err(AckError::InvalidProducerTimestamp);
            }
            frames.push(Frame {
                track: block.track,
                offset_millis,
                flags: block.flags,
                data: block.frame.clone(),
            });
        }
        if tracks
            .tracks
            .iter()
            .any(|track| !frames.iter().any(|f| f.track == track.number))
        {
            return Err(AckError::FramesMissingForTrack);
        }
        let track_frames = TrackFrames::of(frames.iter().map(|f| (f.track, f.offset_millis)));
        let starts_too_early = |t: &TrackFrames| {
            self.latest_frame_millis.iter().any(|(track, latest)| {
                *track == t.track
                    && producer_millis.saturating_add(t.earliest_offset_millis) <= *latest
            })
        };
        if track_frames.iter().any(starts_too_early) {
            return Err(AckError::FragmentTimecodeLesserThanPrevious);
        }
        let duration_millis = fragment_duration(&track_frames);
        if duration_millis > MAX_FRAGMENT_MILLIS {
            return Err(AckError::MaxFragmentDurationReached);
        }
        let latest = track_frames
            .iter()
            .map(|t| {
                (
                    t.track,
                    producer_millis.saturating_add(t.latest_offset_millis),
                )
            })
            .collect();
        let fragment = Fragment {
            sequence: building.sequence,
            ordinal: 0,
            producer_millis,
            server_millis: building.server_millis,
            duration_millis,
            size_bytes: building.bytes,
            tracks: Arc::clone(tracks),
            metadata: building.metadata.clone(),
            track_frames,
            body: fragments::Body::Held(frames.into()),
        };
        Ok((fragment, latest))
    }
}

/// A fragment lasts from its start to the end of its last frame; each track's last frame is
/// taken to last as long as the average gap between that track's frames.
fn fragment_duration(tracks: &[TrackFrames]) -> i64 {
    tracks
        .iter()
        .map(|t| t.latest_offset_millis.max(0) + t.frame_gap_millis())
        .max()
        .unwrap_or(0)
}

/// Reads the PutMedia headers: the stream, the timecode type and the producer start time.
fn session_for(video: &Video, headers: &HeaderMap) -> ApiResult<Session> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let reference = match (text("x-amzn-stream-name"), text("x-amzn-stream-arn")) {
        (Some(name), None) => StreamRef {
            stream_name: Some(name.to_owned()),
            stream_arn: None,
        },
        (None, Some(arn)) => StreamRef {
            stream_name: None,
            stream_arn: Some(arn.to_owned()),
        },
        _ => {
            return Err(api::invalid_argument(
                "Exactly one of x-amzn-stream-name and x-amzn-stream-arn must be given.",
            ));
        }
    };
    let timecode_type = match text("x-amzn-fragment-timecode-type") {
        Some("ABSOLUTE") => TimecodeType::Absolute,
        Some("RELATIVE") => TimecodeType::Relative,
        other => {
            return Err(api::invalid_argument(format!(
                "x-amzn-fragment-timecode-type must be ABSOLUTE or RELATIVE, not {}.",
                other.unwrap_or("missing")
            )));
        }
    };
    let start_millis = match text("x-amzn-producer-start-timestamp") {
        None => video.now_millis(),
        Some(seconds) => seconds
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(api::seconds_to_millis)
            .ok_or_else(|| {
                api::invalid_argument(format!(
                    "x-amzn-producer-start-timestamp {seconds} is not epoch seconds."
                ))
            })?,
    };
    let stream = video.streams().get(&reference)?;
    Ok(Session::new(
        video.clone(),
        stream,
        timecode_type,
        start_millis,
    ))
}

/// `acks` once the writes up to `mark` are as durable as the sync mode promises; if they cannot
/// be, their PERSISTED acks become ARCHIVAL_ERROR.
async fn persisted(video: &Video, mut acks: Vec<Ack>, mark: u64) -> Vec<Ack> {
    if let Err(err) = video.inner.storage.durable(mark).await {
        tracing::error!(%err, "stored fragments cannot be made durable");
        for ack in &mut acks {
            if ack.event == EventType::Persisted {
                ack.event = EventType::Error;
                ack.error = Some(AckError::ArchivalError);
            }
        }
    }
    acks
}

/// Serves one PutMedia request: validates the headers, then answers 200 at once and streams
/// acks while the body is read.
pub fn put_media(
    video: &Video,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<axum::response::Response> {
    let mut session = session_for(video, headers)?;
    let video = video.clone();
    let (mut acks, receiver) = futures::channel::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut body = body.into_data_stream();
        let mut idle_since = tokio::time::Instant::now();
        while !session.has_ended() {
            let body_or_idle = tokio::select! {
                data = body.next() => Some(data),
                _ = tokio::time::sleep(IDLE_INTERVAL) => None,
            };
            let Some(data) = body_or_idle else {
                if idle_since.elapsed() >= IDLE_TIMEOUT {
                    break;
                }
                if acks.send(Ack::idle().to_line()).await.is_err() {
                    return;
                }
                continue;
            };
            // The session runs synchronously on this thread: the write mark covers exactly the
            // fragments it stored, and in `--sync always` PERSISTED waits until they are on disk.
            let (lines, mark) = write_mark::during(|| match data {
                Some(Ok(data)) => {
                    idle_since = tokio::time::Instant::now();
                    session.push(&data)
                }
                Some(Err(err)) => {
                    tracing::debug!(%err, "PutMedia body broke off");
                    session.broke_off()
                }
                None => session.finish(),
            });
            let lines = persisted(&video, lines, mark).await;
            for ack in lines {
                if acks.send(ack.to_line()).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut response = axum::response::Response::new(Body::from_stream(
        receiver.map(Ok::<_, std::convert::Infallible>),
    ));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use crate::video::mkv::tests::MkvBuilder;

    /// A broker's video service with one stream named `cam` keeping data for `retention` hours.
    pub(crate) fn video_with_stream(retention: u32) -> (Video, VideoStream) {
        let video = Video::new(BrokerConfig::default(), "http");
        let input = format!(r#"{{"StreamName":"cam","DataRetentionInHours":{retention}}}"#);
        video
            .streams()
            .create(api::parse(input.as_bytes()).expect("input"))
            .expect("created");
        let stream = video
            .stream(&StreamRef {
                stream_name: Some("cam".into()),
                stream_arn: None,
            })
            .expect("exists");
        (video, stream)
    }

    fn events(acks: &[Ack]) -> Vec<String> {
        acks.iter()
            .map(|a| match a.error {
                Some(e) => format!(
                    "{}:{}@{}",
                    a.event.as_str(),
                    e.id(),
                    a.timecode.unwrap_or(0)
                ),
                None => format!("{}@{}", a.event.as_str(), a.timecode.unwrap_or(0)),
            })
            .collect()
    }

    fn run(session: &mut Session, body: &[u8]) -> Vec<Ack> {
        let mut acks = session.push(body);
        acks.extend(session.finish());
        acks
    }

    #[test]
    fn each_cluster_is_buffered_received_and_persisted() {
        let (video, stream) = video_with_stream(1);
        let mut session = Session::new(video, stream.clone(), TimecodeType::Absolute, 0);
        let body = MkvBuilder::new(&[1])
            .cluster(1_000, &[(1, 0), (1, 40)])
            .cluster(2_000, &[(1, 0)])
            .bytes;
        assert_eq!(
            events(&run(&mut session, &body)),
            [
                "BUFFERING@1000",
                "RECEIVED@1000",
                "PERSISTED@1000",
                "BUFFERING@2000",
                "RECEIVED@2000",
                "PERSISTED@2000"
            ]
        );
        let stored = stream.fragments.all();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].producer_millis, 1_000);
        assert_eq!(stored[0].duration_millis, 80);
    }

    #[test]
    fn without_retention_fragments_are_received_but_not_persisted() {
        let (video, stream) = video_with_stream(0);
        let mut session = Session::new(video, stream, TimecodeType::Absolute, 0);
        let body = MkvBuilder::new(&[1]).cluster(5, &[(1, 0)]).bytes;
        assert_eq!(
            events(&run(&mut session, &body)),
            ["BUFFERING@5", "RECEIVED@5"]
        );
    }

    #[test]
    fn relative_timecodes_count_from_the_producer_start() {
        let (video, stream) = video_with_stream(1);
        let mut session = Session::new(
            video,
            stream.clone(),
            TimecodeType::Relative,
            1_700_000_000_000,
        );
        run(
            &mut session,
            &MkvBuilder::new(&[1]).cluster(500, &[(1, 0)]).bytes,
        );
        assert_eq!(stream.fragments.all()[0].producer_millis, 1_700_000_000_500);
    }

    #[test]
    fn bad_fragments_get_error_acks_and_the_session_goes_on() {
        let (video, stream) = video_with_stream(1);
        let mut session = Session::new(video, stream.clone(), TimecodeType::Absolute, 0)
            .with_max_fragment_bytes(100);
        let body = MkvBuilder::new(&[1])
            .cluster(1_000, &[(1, 0)])
            .cluster(2_000, &[(2, 0)]) // track 2 is not declared
            .cluster(500, &[(1, 0)]) // earlier than the previous fragment
            .cluster(3_000, &[(1, 0), (1, 11_000)]) // 11 s long
            .cluster(4_000, &[(1, 0); 20]) // 200 bytes of frames
            .tag("AWS_RESERVED", "x")
            .cluster(5_000, &[(1, 0)]) // metadata names must not start with AWS
            .cluster(6_000, &[(1, 0)])
            .bytes;
        let acks = run(&mut session, &body);
        let errors: Vec<String> = events(&acks)
            .into_iter()
            .filter(|e| !e.starts_with("BUFFERING"))
            .collect();
        assert_eq!(
            errors,
            [
                "RECEIVED@1000",
                "PERSISTED@1000",
                "ERROR:4010@2000",
                "ERROR:4004@500",
                "ERROR:4002@3000",
                "ERROR:4001@4000",
                "ERROR:4009@5000",
                "RECEIVED@6000",
                "PERSISTED@6000"
            ]
        );
        assert_eq!(stream.fragments.all().len(), 2);
    }

    #[test]
    fn timecodes_beyond_the_year_9999_or_before_1970_are_4007() {
        let (video, stream) = video_with_stream(1);
        let beyond = MAX_PRODUCER_MILLIS as u64 + 1;
        let mut session = Session::new(video.clone(), stream.clone(), TimecodeType::Absolute, 0);
        let body = MkvBuilder::new(&[1])
            .cluster(beyond, &[(1, 0)])
            .cluster(u64::MAX, &[(1, 0)])
            .cluster(10, &[(1, -20)]) // a frame before the epoch
            .cluster(beyond - 10, &[(1, 0), (1, 20)]) // its second frame is past the end
            .cluster(1_000, &[(1, 0)])
            .bytes;
        let outcomes: Vec<String> = events(&run(&mut session, &body))
            .into_iter()
            .filter(|e| !e.starts_with("BUFFERING"))
            .collect();
        let beyond_ack = format!("ERROR:4007@{beyond}");
        let end_ack = format!("ERROR:4007@{}", beyond - 10);
        let max_ack = format!("ERROR:4007@{}", u64::MAX);
        assert_eq!(
            outcomes,
            [
                beyond_ack.as_str(),
                max_ack.as_str(),
                "ERROR:4007@10",
                end_ack.as_str(),
                "RECEIVED@1000",
                "PERSISTED@1000"
            ]
        );
        let mut relative =
            Session::new(video, stream.clone(), TimecodeType::Relative, i64::MAX - 5);
        let body = MkvBuilder::new(&[1]).cluster(1, &[(1, 0)]).bytes;
        assert_eq!(
            events(&run(&mut relative, &body)),
            ["BUFFERING@1", "ERROR:4007@1"]
        );
        assert_eq!(stream.fragments.all().len(), 1);
    }

    #[test]
    fn a_new_session_may_restart_its_timecodes() {
        let (video, stream) = video_with_stream(1);
        let body = MkvBuilder::new(&[1]).cluster(1_000, &[(1, 0)]).bytes;
        let mut session = Session::new(video.clone(), stream.clone(), TimecodeType::Relative, 0);
        run(&mut session, &body);
        let mut again = Session::new(video, stream, TimecodeType::Relative, 500);
        assert_eq!(
            events(&run(&mut again, &body)),
            ["BUFFERING@1000", "RECEIVED@1000", "PERSISTED@1000"]
        );
    }

    #[test]
    fn deleting_the_stream_mid_session_is_4008_and_ends_it() {
        let (video, stream) = video_with_stream(1);
        let mut session = Session::new(video.clone(), stream.clone(), TimecodeType::Absolute, 0);
        session.push(&MkvBuilder::new(&[1]).cluster(1_000, &[(1, 0)]).bytes);
        let delete = format!(r#"{{"StreamARN":"{}"}}"#, stream.record.arn);
        video
            .streams()
            .delete(api::parse(delete.as_bytes()).expect("input"))
            .expect("deleted");
        // The Cluster ends with the body; its fragment finds the stream gone.
        let acks = run(&mut session, &[]);
        assert_eq!(events(&acks), ["ERROR:4008@1000"]);
        assert!(session.has_ended());
    }

    #[test]
    fn a_body_that_breaks_off_drops_the_open_fragment_and_acks_4000() {
        let (video, stream) = video_with_stream(1);
        let mut session = Session::new(video, stream.clone(), TimecodeType::Absolute, 0);
        let body = MkvBuilder::new(&[1])
            .cluster(1_000, &[(1, 0)])
            .cluster(2_000, &[(1, 0), (1, 40)])
            .bytes;
        // The second Cluster has begun (its timecode and a frame) when the body breaks off.
        let mut acks = session.push(&body[..body.len() - 3]);
        acks.extend(session.broke_off());
        assert_eq!(
            events(&acks),
            [
                "BUFFERING@1000",
                "RECEIVED@1000",
                "PERSISTED@1000",
                "BUFFERING@2000",
                "ERROR:4000@2000"
            ]
        );
        assert!(session.has_ended());
        assert!(session.finish().is_empty());
        assert_eq!(stream.fragments.all().len(), 1);
    }

    #[test]
    fn corrupt_ebml_ends_the_session_with_4006_after_what_was_good() {
        let (video, stream) = video_with_stream(1);
        let mut session = Session::new(video, stream.clone(), TimecodeType::Absolute, 0);
        let body = MkvBuilder::new(&[1])
            .cluster(1_000, &[(1, 0)])
            .raw(&[0x1F, 0x43, 0xB6, 0x75, 0xFF, 0xE7, 0x81, 0x05, 0x00, 0x00])
            .bytes;
        let acks = events(&run(&mut session, &body));
        assert_eq!(acks.last().map(String::as_str), Some("ERROR:4006@5"));
        assert!(acks.contains(&"PERSISTED@1000".to_owned()));
        assert_eq!(stream.fragments.all().len(), 1);
    }

    #[test]
    fn video_and_audio_tracks_are_accepted_with_audio_interleaved_by_decode_time() {
        let (video, stream) = video_with_stream(1);
        let mut session = Session::new(video, stream.clone(), TimecodeType::Absolute, 0);
        // The second fragment opens with audio (1_960) before the first's last video frame
        // (1_980) is presented: order is kept per track.
        let body = MkvBuilder::video_and_audio()
            .cluster(1_000, &[(1, 0), (2, 0), (2, 23), (1, 980), (2, 937)])
            .cluster(1_960, &[(2, 0), (1, 40), (2, 23), (1, 80)])
            .cluster(3_000, &[(2, 0)]) // no video frame
            .cluster(4_000, &[(1, 0), (3, 0)]) // track 3 is not declared
            .bytes;
        let acks = run(&mut session, &body);
        let outcomes: Vec<String> = events(&acks)
            .into_iter()
            .filter(|e| e.starts_with("PERSISTED") || e.starts_with("ERROR"))
            .collect();
        assert_eq!(
            outcomes,
            [
                "PERSISTED@1000",
                "PERSISTED@1960",
                "ERROR:4011@3000",
                "ERROR:4010@4000"
            ]
        );
        let stored = stream.fragments.all();
        assert_eq!(stored[0].frame_count(2), 3);
        assert_eq!(stored[1].track_start_millis(1), 2_000);
    }

    #[test]
    fn more_than_three_tracks_is_4012_and_a_missing_track_is_4011() {
        let (video, stream) = video_with_stream(1);
        let mut session = Session::new(video.clone(), stream.clone(), TimecodeType::Absolute, 0);
        let acks = run(&mut session, &MkvBuilder::new(&[1, 2, 3, 4]).bytes);
        assert_eq!(events(&acks), ["ERROR:4012@0"]);
        let mut session = Session::new(video, stream, TimecodeType::Absolute, 0);
        let acks = run(
            &mut session,
            &MkvBuilder::new(&[1, 2]).cluster(9, &[(1, 0)]).bytes,
        );
        assert_eq!(events(&acks), ["BUFFERING@9", "ERROR:4011@9"]);
    }

    proptest::proptest! {
        #[test]
        fn any_timecodes_and_start_times_never_panic_through_to_the_outputs(
            clusters in proptest::collection::vec(
                (proptest::prelude::any::<u64>(), proptest::collection::vec(proptest::prelude::any::<i16>(), 1..4)),
                1..5,
            ),
            start in proptest::prelude::any::<i64>(),
            relative in proptest::prelude::any::<bool>(),
        ) {
            let (video, stream) = video_with_stream(1);
            let mode = if relative { TimecodeType::Relative } else { TimecodeType::Absolute };
            let mut session = Session::new(video, stream.clone(), mode, start);
            let mut body = MkvBuilder::new(&[1]);
            for (timecode, offsets) in &clusters {
                let frames: Vec<(u64, i16)> = offsets.iter().map(|o| (1, *o)).collect();
                body = body.cluster(*timecode, &frames);
            }
            run(&mut session, &body.bytes);
            let stored = stream.fragments.all();
            for fragment in &stored {
                let frames = stream.fragments.frames(fragment).expect("held");
                crate::video::media::chunk(fragment, &frames, start);
                for (number, track) in crate::video::remux::playable_tracks(fragment).expect("h264") {
                    crate::video::remux::fragment_samples(fragment, &frames, number, &track);
                }
            }
            let _ = crate::video::remux::clip_samples(&stream.fragments, &stored)
                .map(|tracks| crate::video::mp4::progressive(&tracks));
        }
    }

    #[test]
    fn ack_lines_have_numeric_timecodes_and_error_ids_and_string_numbers() {
        let ack = Ack {
            event: EventType::Error,
            timecode: Some(1711124585823),
            fragment_number: Some(format_number(7)),
            error: Some(AckError::FragmentTimecodeLesserThanPrevious),
        };
        let line = ack.to_line();
        assert!(line.ends_with(b"\n"));
        let json: serde_json::Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(json["EventType"], "ERROR");
        assert_eq!(json["FragmentTimecode"], 1711124585823u64);
        assert_eq!(json["FragmentNumber"], format_number(7));
        assert_eq!(json["ErrorId"], 4004);
        assert_eq!(json["ErrorCode"], "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS");
    }
}
