//! An incremental Matroska demuxer for PutMedia bodies.
//!
//! [`Demuxer::push`] takes the body as it arrives, in pieces split anywhere, and reports what it
//! completed as [`Event`]s: the track list, each Cluster's start, timecode and blocks, its end,
//! and producer metadata Tags. Segment and Cluster may have unknown size (KVS producers always
//! send them so); an unknown-size element ends where an element that cannot be its child begins.
//! It never panics on any input: bytes that cannot be Matroska give [`MkvError::Invalid`].
//!
//! It owns parsing only; what a Cluster means (a fragment) is `ingest`'s business.

use super::ebml::{self, Header, Read, UNKNOWN_SIZE, id};
use bytes::{Buf, Bytes, BytesMut};
use std::sync::Arc;

/// Matroska's default and KVS's only output timecode scale: 1 ms in nanoseconds.
pub const MILLISECOND_SCALE: u64 = 1_000_000;

/// Largest header-like element (EBML header, Info, Tracks, Tags) the demuxer buffers whole.
const MAX_HEADER_ELEMENT: u64 = 1024 * 1024;

/// Elements that may only appear directly in a Segment; one of them ends an unknown-size Cluster.
const SEGMENT_CHILDREN: [u32; 8] = [
    id::CLUSTER,
    id::TAGS,
    id::CUES,
    id::INFO,
    id::TRACKS,
    id::SEEK_HEAD,
    0x1043_A770, // Chapters
    0x1941_A469, // Attachments
];

/// Why a body is not acceptable Matroska.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MkvError {
    /// The bytes are not Matroska (or not the subset KVS accepts).
    #[error("invalid MKV data: {0}")]
    Invalid(String),
    /// One element is larger than the demuxer will buffer.
    #[error("element {id:#x} of {size} bytes is larger than the {limit} bytes allowed")]
    TooLarge { id: u32, size: u64, limit: u64 },
}

/// One track declared in the Tracks element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// The number blocks refer to.
    pub number: u64,
    /// 1 video, 2 audio.
    pub track_type: u64,
    /// e.g. `V_MPEG4/ISO/AVC`.
    pub codec_id: String,
    /// For H.264, the AVCDecoderConfigurationRecord; for AAC, the AudioSpecificConfig.
    pub codec_private: Bytes,
    /// Video width and height in pixels, 0 when absent.
    pub width: u64,
    pub height: u64,
    /// Audio sampling frequency in Hz (rounded), 0 when absent.
    pub sample_rate: u32,
    /// Audio channels, 0 when absent.
    pub channels: u64,
}

impl Track {
    /// Whether the track carries H.264 in the AVCC layout (both spellings KVS accepts).
    pub fn is_h264(&self) -> bool {
        matches!(self.codec_id.as_str(), "V_MPEG4/ISO/AVC" | "V_MPEG/ISO/AVC")
    }

    /// Whether the track carries AAC audio (`A_AAC`, or the legacy `A_AAC/MPEG4/...` forms).
    pub fn is_aac(&self) -> bool {
        self.codec_id.starts_with("A_AAC")
    }
}

/// The tracks of one Segment, and the Tracks element's data as the producer wrote it (GetMedia
/// repeats it in every chunk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracks {
    pub tracks: Vec<Track>,
    pub raw: Bytes,
}

impl Tracks {
    /// The track with this number.
    pub fn get(&self, number: u64) -> Option<&Track> {
        self.tracks.iter().find(|t| t.number == number)
    }
}

/// A SimpleBlock or Block: one frame (or a laced group) of one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub track: u64,
    /// Timecode relative to the Cluster, in the Segment's timecode scale.
    pub timecode: i16,
    /// SimpleBlock flags (keyframe `0x80`, lacing `0x06`, ...).
    pub flags: u8,
    /// The frame bytes after the block header.
    pub frame: Bytes,
}

impl Block {
    /// Whether the frame is a keyframe.
    pub fn is_keyframe(&self) -> bool {
        self.flags & 0x80 != 0
    }
}

/// What the demuxer completed.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A Segment's Info and Tracks have been read: its timecode scale and tracks.
    Tracks {
        timecode_scale: u64,
        tracks: Arc<Tracks>,
    },
    /// A Cluster began.
    ClusterStart,
    /// The Cluster's Timecode, in the Segment's timecode scale.
    ClusterTimecode(u64),
    /// A block of the current Cluster.
    Block(Block),
    /// The current Cluster ended.
    ClusterEnd,
    /// A Tags element (producer fragment metadata): `(TagName, TagString)` pairs.
    Tags(Vec<(String, String)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Segment,
    Cluster,
}

/// Parses a Matroska byte stream incrementally; see the module docs.
#[derive(Debug)]
pub struct Demuxer {
    buffer: BytesMut,
    /// Absolute position of `buffer[0]` in the body.
    position: u64,
    /// Open master elements with their end position (`None` for unknown size).
    open: Vec<(Level, Option<u64>)>,
    /// Bytes of an ignored element still to skip.
    skipping: u64,
    timecode_scale: u64,
    saw_header: bool,
    max_block: u64,
    failed: bool,
}

impl Demuxer {
    /// A demuxer that refuses any block larger than `max_block` bytes.
    pub fn new(max_block: u64) -> Self {
        Self {
            buffer: BytesMut::new(),
            position: 0,
            open: Vec::new(),
            skipping: 0,
            timecode_scale: MILLISECOND_SCALE,
            saw_header: false,
            max_block,
            failed: false,
        }
    }

    /// Feeds the next piece of the body; completed events are appended to `events`. After an
    /// error the demuxer accepts nothing more.
    pub fn push(&mut self, bytes: &[u8], events: &mut Vec<Event>) -> Result<(), MkvError> {
        if self.failed {
            return Err(MkvError::Invalid("the stream already failed".into()));
        }
        self.buffer.extend_from_slice(bytes);
        let result = self.parse(events);
        self.failed = result.is_err();
        result
    }

    /// The body ended: closes open elements. Leftover bytes of an incomplete element are an error.
    pub fn finish(&mut self, events: &mut Vec<Event>) -> Result<(), MkvError> {
        if self.failed {
            return Err(MkvError::Invalid("the stream already failed".into()));
        }
        let leftover = !self.buffer.is_empty() || self.skipping > 0;
        while let Some((level, _)) = self.open.pop() {
            if level == Level::Cluster {
                events.push(Event::ClusterEnd);
            }
        }
        if leftover {
            self.failed = true;
            return Err(MkvError::Invalid("the body ended inside an element".into()));
        }
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.buffer.advance(n);
        self.position += n as u64;
    }

    fn close_finished(&mut self, events: &mut Vec<Event>) {
        while let Some(&(level, Some(end))) = self.open.last() {
            if self.position < end {
                break;
            }
            self.open.pop();
            if level == Level::Cluster {
                events.push(Event::ClusterEnd);
            }
        }
    }

    fn parse(&mut self, events: &mut Vec<Event>) -> Result<(), MkvError> {
        loop {
            if self.skipping > 0 {
                let n = usize::try_from(self.skipping)
                    .unwrap_or(usize::MAX)
                    .min(self.buffer.len());
                self.consume(n);
                self.skipping -= n as u64;
                if self.skipping > 0 {
                    return Ok(());
                }
            }
            self.close_finished(events);
            let header = match ebml::read_header(&self.buffer) {
                Read::Done(header, _) => header,
                Read::Incomplete => return Ok(()),
                Read::Invalid => return Err(invalid("malformed element header")),
            };
            if !self.element(header, events)? {
                return Ok(());
            }
        }
    }

    /// Handles one element whose header is at the start of the buffer. `Ok(false)` means more
    /// bytes are needed before it can be handled.
    fn element(&mut self, header: Header, events: &mut Vec<Event>) -> Result<bool, MkvError> {
        let parent = self.open.last().map(|(level, _)| *level);
        match (parent, header.id) {
            (Some(Level::Cluster), element) if ends_cluster(element) => {
                self.end_unknown(Level::Cluster, events)?;
                Ok(true)
            }
            (Some(Level::Segment), id::EBML | id::SEGMENT) => {
                self.end_unknown(Level::Segment, events)?;
                Ok(true)
            }
            (None, id::EBML) => {
                let Some(data) = self.whole(header, MAX_HEADER_ELEMENT)? else {
                    return Ok(false);
                };
                check_ebml_header(&data)?;
                self.saw_header = true;
                Ok(true)
            }
            (None, id::SEGMENT) if self.saw_header => {
                self.open_master(header, Level::Segment);
                self.timecode_scale = MILLISECOND_SCALE;
                Ok(true)
            }
            (None, id::VOID) => self.skip(header),
            (None, _) => Err(invalid(format!(
                "element {:#x} outside a Segment",
                header.id
            ))),
            (Some(Level::Segment), id::CLUSTER) => {
                self.open_master(header, Level::Cluster);
                events.push(Event::ClusterStart);
                Ok(true)
            }
            (Some(Level::Segment), id::INFO) => {
                let Some(data) = self.whole(header, MAX_HEADER_ELEMENT)? else {
                    return Ok(false);
                };
                self.timecode_scale = timecode_scale(&data)?;
                Ok(true)
            }
            (Some(Level::Segment), id::TRACKS) => {
                let Some(data) = self.whole(header, MAX_HEADER_ELEMENT)? else {
                    return Ok(false);
                };
                let tracks = parse_tracks(data)?;
                events.push(Event::Tracks {
                    timecode_scale: self.timecode_scale,
                    tracks: Arc::new(tracks),
                });
                Ok(true)
            }
            (Some(Level::Segment), id::TAGS) => {
                let Some(data) = self.whole(header, MAX_HEADER_ELEMENT)? else {
                    return Ok(false);
                };
                events.push(Event::Tags(parse_tags(&data)?));
                Ok(true)
            }
            (Some(Level::Segment), _) => self.skip(header),
            (Some(Level::Cluster), id::TIMECODE) => {
                let Some(data) = self.whole(header, 8)? else {
                    return Ok(false);
                };
                let timecode = ebml::uint(&data).ok_or_else(|| invalid("Cluster Timecode"))?;
                events.push(Event::ClusterTimecode(timecode));
                Ok(true)
            }
            (Some(Level::Cluster), id::SIMPLE_BLOCK) => {
                let Some(data) = self.whole(header, self.max_block)? else {
                    return Ok(false);
                };
                events.push(Event::Block(parse_block(data, None)?));
                Ok(true)
            }
            (Some(Level::Cluster), id::BLOCK_GROUP) => {
                let Some(data) = self.whole(header, self.max_block)? else {
                    return Ok(false);
                };
                events.push(Event::Block(parse_block_group(&data)?));
                Ok(true)
            }
            (Some(Level::Cluster), _) => self.skip(header),
        }
    }

    /// Ends the innermost open element if it has unknown size; a known-size element cannot be
    /// ended by a sibling-level ID.
    fn end_unknown(&mut self, level: Level, events: &mut Vec<Event>) -> Result<(), MkvError> {
        match self.open.last() {
            Some(&(open, None)) if open == level => {
                self.open.pop();
                if level == Level::Cluster {
                    events.push(Event::ClusterEnd);
                }
                Ok(())
            }
            _ => Err(invalid("an element overran its parent")),
        }
    }

    fn open_master(&mut self, header: Header, level: Level) {
        self.consume(header.header_len);
        let end = (header.size != UNKNOWN_SIZE).then(|| self.position + header.size);
        self.open.push((level, end));
    }

    fn skip(&mut self, header: Header) -> Result<bool, MkvError> {
        if header.size == UNKNOWN_SIZE {
            return Err(invalid(format!(
                "element {:#x} has unknown size",
                header.id
            )));
        }
        self.consume(header.header_len);
        self.skipping = header.size;
        Ok(true)
    }

    /// The data of an element once all of it has arrived (consumed), or `None` to wait.
    fn whole(&mut self, header: Header, limit: u64) -> Result<Option<Bytes>, MkvError> {
        if header.size == UNKNOWN_SIZE {
            return Err(invalid(format!(
                "element {:#x} has unknown size",
                header.id
            )));
        }
        if header.size > limit {
            return Err(MkvError::TooLarge {
                id: header.id,
                size: header.size,
                limit,
            });
        }
        if let Some(&(_, Some(end))) = self.open.last()
            && self.position + header.header_len as u64 + header.size > end
        {
            return Err(invalid("an element overran its parent"));
        }
        let total = header.header_len + header.size as usize;
        if self.buffer.len() < total {
            return Ok(None);
        }
        let mut element = self.buffer.split_to(total).freeze();
        self.position += total as u64;
        element.advance(header.header_len);
        Ok(Some(element))
    }
}

fn invalid(message: impl Into<String>) -> MkvError {
    MkvError::Invalid(message.into())
}

fn ends_cluster(element: u32) -> bool {
    SEGMENT_CHILDREN.contains(&element) || element == id::EBML || element == id::SEGMENT
}

fn check_ebml_header(data: &[u8]) -> Result<(), MkvError> {
    let children = ebml::children(data).ok_or_else(|| invalid("malformed EBML header"))?;
    let doc_type = children
        .iter()
        .find(|(element, _)| *element == id::DOC_TYPE)
        .map(|(_, value)| {
            String::from_utf8_lossy(value)
                .trim_end_matches('\0')
                .to_owned()
        });
    match doc_type.as_deref() {
        Some("matroska" | "webm") | None => Ok(()),
        Some(other) => Err(invalid(format!("DocType {other} is not matroska"))),
    }
}

fn timecode_scale(info: &[u8]) -> Result<u64, MkvError> {
    let children = ebml::children(info).ok_or_else(|| invalid("malformed Info"))?;
    match children.iter().find(|(e, _)| *e == id::TIMECODE_SCALE) {
        None => Ok(MILLISECOND_SCALE),
        Some((_, value)) => ebml::uint(value)
            .filter(|scale| *scale > 0)
            .ok_or_else(|| invalid("TimecodeScale must be a positive integer")),
    }
}

/// The tracks a Tracks element's data declares.
pub fn parse_tracks(raw: Bytes) -> Result<Tracks, MkvError> {
    let entries = ebml::children(&raw).ok_or_else(|| invalid("malformed Tracks"))?;
    let mut tracks = Vec::new();
    for (_, entry) in entries.iter().filter(|(e, _)| *e == id::TRACK_ENTRY) {
        let fields = ebml::children(entry).ok_or_else(|| invalid("malformed TrackEntry"))?;
        let mut track = Track {
            number: 0,
            track_type: 0,
            codec_id: String::new(),
            codec_private: Bytes::new(),
            width: 0,
            height: 0,
            sample_rate: 0,
            channels: 0,
        };
        for (field, value) in fields {
            match field {
                id::TRACK_NUMBER => track.number = ebml::uint(value).unwrap_or(0),
                id::TRACK_TYPE => track.track_type = ebml::uint(value).unwrap_or(0),
                id::CODEC_ID => {
                    track.codec_id = String::from_utf8_lossy(value)
                        .trim_end_matches('\0')
                        .to_owned()
                }
                id::CODEC_PRIVATE => track.codec_private = Bytes::copy_from_slice(value),
                id::VIDEO => {
                    for (dimension, value) in ebml::children(value).unwrap_or_default() {
                        match dimension {
                            id::PIXEL_WIDTH => track.width = ebml::uint(value).unwrap_or(0),
                            id::PIXEL_HEIGHT => track.height = ebml::uint(value).unwrap_or(0),
                            _ => {}
                        }
                    }
                }
                id::AUDIO => {
                    for (setting, value) in ebml::children(value).unwrap_or_default() {
                        match setting {
                            id::SAMPLING_FREQUENCY => {
                                let hz = ebml::float(value).unwrap_or(0.0).round();
                                // Out-of-range and NaN frequencies read as absent.
                                track.sample_rate = if (1.0..=f64::from(u32::MAX)).contains(&hz) {
                                    hz as u32
                                } else {
                                    0
                                };
                            }
                            id::CHANNELS => track.channels = ebml::uint(value).unwrap_or(0),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if track.number == 0 {
            return Err(invalid("a TrackEntry has no TrackNumber"));
        }
        tracks.push(track);
    }
    Ok(Tracks { tracks, raw })
}

fn parse_tags(data: &[u8]) -> Result<Vec<(String, String)>, MkvError> {
    let malformed = || invalid("malformed Tags");
    let mut pairs = Vec::new();
    for (_, tag) in ebml::children(data)
        .ok_or_else(malformed)?
        .into_iter()
        .filter(|(e, _)| *e == id::TAG)
    {
        for (_, simple) in ebml::children(tag)
            .ok_or_else(malformed)?
            .into_iter()
            .filter(|(e, _)| *e == id::SIMPLE_TAG)
        {
            let fields = ebml::children(simple).ok_or_else(malformed)?;
            let text = |wanted| {
                fields
                    .iter()
                    .find(|(e, _)| *e == wanted)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            };
            if let Some(name) = text(id::TAG_NAME) {
                pairs.push((name, text(id::TAG_STRING).unwrap_or_default()));
            }
        }
    }
    Ok(pairs)
}

/// Parses a SimpleBlock (or a Block, whose keyframe-ness `keyframe` supplies).
fn parse_block(mut data: Bytes, keyframe: Option<bool>) -> Result<Block, MkvError> {
    let (track, len) = match ebml::read_track_number(&data) {
        Read::Done(track, len) => (track, len),
        _ => return Err(invalid("malformed block track number")),
    };
    if data.len() < len + 3 {
        return Err(invalid("truncated block header"));
    }
    let timecode = i16::from_be_bytes([data[len], data[len + 1]]);
    let mut flags = data[len + 2];
    if let Some(keyframe) = keyframe {
        flags = (flags & 0x7F) | if keyframe { 0x80 } else { 0 };
    }
    data.advance(len + 3);
    Ok(Block {
        track,
        timecode,
        flags,
        frame: data,
    })
}

fn parse_block_group(data: &[u8]) -> Result<Block, MkvError> {
    const REFERENCE_BLOCK: u32 = 0xFB;
    let children = ebml::children(data).ok_or_else(|| invalid("malformed BlockGroup"))?;
    let keyframe = !children.iter().any(|(e, _)| *e == REFERENCE_BLOCK);
    let block = children
        .iter()
        .find(|(e, _)| *e == id::BLOCK)
        .ok_or_else(|| invalid("BlockGroup without Block"))?;
    parse_block(Bytes::copy_from_slice(block.1), Some(keyframe))
}

/// Writing Matroska: the pieces a KVS chunk is made of, in the layout the producer SDK uses
/// (8-byte sizes, unknown-size Segment).
pub mod write {
    use super::super::ebml::{self, id};
    use super::{MILLISECOND_SCALE, Track, Tracks};

    /// The EBML header of a Matroska document.
    pub fn ebml_header(out: &mut Vec<u8>) {
        ebml::put_master(out, id::EBML, |h| {
            ebml::put_uint(h, id::EBML_VERSION, 1);
            ebml::put_uint(h, id::EBML_READ_VERSION, 1);
            ebml::put_uint(h, id::EBML_MAX_ID_LENGTH, 4);
            ebml::put_uint(h, id::EBML_MAX_SIZE_LENGTH, 8);
            ebml::put(h, id::DOC_TYPE, b"matroska");
            ebml::put_uint(h, id::DOC_TYPE_VERSION, 2);
            ebml::put_uint(h, id::DOC_TYPE_READ_VERSION, 2);
        });
    }

    /// An unknown-size Segment start followed by Info (1 ms timecode scale) and Tracks.
    pub fn segment_start(out: &mut Vec<u8>, app: &str, tracks: &Tracks) {
        ebml::put_unknown_size(out, id::SEGMENT);
        ebml::put_master(out, id::INFO, |info| {
            ebml::put_uint(info, id::TIMECODE_SCALE, MILLISECOND_SCALE);
            ebml::put(info, id::TITLE, app.as_bytes());
            ebml::put(info, id::MUXING_APP, app.as_bytes());
            ebml::put(info, id::WRITING_APP, app.as_bytes());
        });
        ebml::put(out, id::TRACKS, &tracks.raw);
    }

    /// One Tags element holding one Tag with a SimpleTag per `(name, value)`.
    pub fn tags<'a>(out: &mut Vec<u8>, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
        ebml::put_master(out, id::TAGS, |tags| {
            ebml::put_master(tags, id::TAG, |tag| {
                for (name, value) in pairs {
                    ebml::put_master(tag, id::SIMPLE_TAG, |simple| {
                        ebml::put(simple, id::TAG_NAME, name.as_bytes());
                        ebml::put(simple, id::TAG_STRING, value.as_bytes());
                    });
                }
            });
        });
    }

    /// A known-size Cluster at `timecode` (in 1 ms units) with one SimpleBlock per
    /// `(track, relative timecode, flags, frame)`.
    pub fn cluster<'a>(
        out: &mut Vec<u8>,
        timecode: u64,
        blocks: impl IntoIterator<Item = (u64, i16, u8, &'a [u8])>,
    ) {
        ebml::put_master(out, id::CLUSTER, |cluster| {
            ebml::put_uint(cluster, id::TIMECODE, timecode);
            ebml::put_uint(cluster, id::POSITION, 0);
            for (track, relative, flags, frame) in blocks {
                simple_block(cluster, track, relative, flags, frame);
            }
        });
    }

    /// The start of an unknown-size Cluster, as live producers write it: SimpleBlocks follow.
    pub fn cluster_start(out: &mut Vec<u8>, timecode: u64) {
        ebml::put_unknown_size(out, id::CLUSTER);
        ebml::put_uint(out, id::TIMECODE, timecode);
    }

    /// One SimpleBlock.
    pub fn simple_block(out: &mut Vec<u8>, track: u64, relative: i16, flags: u8, frame: &[u8]) {
        let mut block = Vec::with_capacity(frame.len() + 12);
        ebml::put_track_number(&mut block, track);
        block.extend_from_slice(&relative.to_be_bytes());
        block.push(flags);
        block.extend_from_slice(frame);
        ebml::put(out, id::SIMPLE_BLOCK, &block);
    }

    /// The data of a Tracks element declaring `tracks`.
    pub fn tracks_data(tracks: &[Track]) -> Vec<u8> {
        let mut out = Vec::new();
        for track in tracks {
            ebml::put_master(&mut out, id::TRACK_ENTRY, |e| {
                ebml::put_uint(e, id::TRACK_NUMBER, track.number);
                ebml::put_uint(e, id::TRACK_TYPE, track.track_type);
                ebml::put(e, id::CODEC_ID, track.codec_id.as_bytes());
                if !track.codec_private.is_empty() {
                    ebml::put(e, id::CODEC_PRIVATE, &track.codec_private);
                }
                if track.width > 0 {
                    ebml::put_master(e, id::VIDEO, |v| {
                        ebml::put_uint(v, id::PIXEL_WIDTH, track.width);
                        ebml::put_uint(v, id::PIXEL_HEIGHT, track.height);
                    });
                }
                if track.sample_rate > 0 {
                    ebml::put_master(e, id::AUDIO, |a| {
                        ebml::put_float(a, id::SAMPLING_FREQUENCY, f64::from(track.sample_rate));
                        ebml::put_uint(a, id::CHANNELS, track.channels);
                    });
                }
            });
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds Matroska bodies the way KVS producers write them (unknown-size Segment and
    /// Clusters), for tests across the video module.
    pub(crate) struct MkvBuilder {
        pub bytes: Vec<u8>,
    }

    impl MkvBuilder {
        /// EBML header, unknown-size Segment, Info (1 ms scale) and one H.264 track per number.
        pub fn new(numbers: &[u64]) -> Self {
            Self::with_tracks(numbers.iter().map(|number| h264_track(*number)).collect())
        }

        /// Track 1 H.264 and track 2 AAC (44.1 kHz mono), as ffmpeg and KVS producers write them.
        pub fn video_and_audio() -> Self {
            Self::with_tracks(vec![h264_track(1), aac_track(2)])
        }

        /// EBML header, unknown-size Segment, Info (1 ms scale) and these tracks.
        pub fn with_tracks(tracks: Vec<Track>) -> Self {
            let raw = Bytes::from(write::tracks_data(&tracks));
            let mut bytes = Vec::new();
            write::ebml_header(&mut bytes);
            write::segment_start(&mut bytes, "test", &Tracks { tracks, raw });
            Self { bytes }
        }

        /// An unknown-size Cluster at `timecode` with one keyframe then delta frames
        /// `(track, relative timecode)`, each frame's payload a length-prefixed NAL unit.
        pub fn cluster(mut self, timecode: u64, frames: &[(u64, i16)]) -> Self {
            write::cluster_start(&mut self.bytes, timecode);
            for (i, (track, relative)) in frames.iter().enumerate() {
                let (flags, nal) = if i == 0 { (0x80, 0x65) } else { (0, 0x41) };
                write::simple_block(
                    &mut self.bytes,
                    *track,
                    *relative,
                    flags,
                    &[0, 0, 0, 2, nal, i as u8],
                );
            }
            self
        }

        /// Producer metadata: one Tags element with one name/value pair.
        pub fn tag(mut self, name: &str, value: &str) -> Self {
            write::tags(&mut self.bytes, [(name, value)]);
            self
        }

        /// Raw bytes appended as they are (for corrupt input).
        pub fn raw(mut self, bytes: &[u8]) -> Self {
            self.bytes.extend_from_slice(bytes);
            self
        }
    }

    /// An H.264 track (320x240, [`AVC_CONFIG`]).
    pub(crate) fn h264_track(number: u64) -> Track {
        Track {
            number,
            track_type: 1,
            codec_id: "V_MPEG4/ISO/AVC".into(),
            codec_private: Bytes::from_static(&AVC_CONFIG),
            width: 320,
            height: 240,
            sample_rate: 0,
            channels: 0,
        }
    }

    /// An AAC-LC track, 44.1 kHz mono ([`AAC_CONFIG`]).
    pub(crate) fn aac_track(number: u64) -> Track {
        Track {
            number,
            track_type: 2,
            codec_id: "A_AAC".into(),
            codec_private: Bytes::from_static(&AAC_CONFIG),
            width: 0,
            height: 0,
            sample_rate: 44_100,
            channels: 1,
        }
    }

    /// AudioSpecificConfig of AAC-LC (object type 2), 44.1 kHz (index 4), mono.
    pub(crate) const AAC_CONFIG: [u8; 2] = [0x12, 0x08];

    /// A minimal AVCDecoderConfigurationRecord (Baseline 3.0, one tiny SPS and PPS).
    pub(crate) const AVC_CONFIG: [u8; 15] = [
        1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 3, 0x67, 0x42, 0xC0, 1, 0, 1, 0x68,
    ];

    fn demux_in_pieces(body: &[u8], cuts: &[usize]) -> Result<Vec<Event>, MkvError> {
        let mut demuxer = Demuxer::new(1 << 20);
        let mut events = Vec::new();
        let mut at = 0;
        for cut in cuts.iter().copied().chain([body.len()]) {
            let cut = cut.clamp(at, body.len());
            demuxer.push(&body[at..cut], &mut events)?;
            at = cut;
        }
        demuxer.finish(&mut events)?;
        Ok(events)
    }

    fn sample() -> Vec<u8> {
        MkvBuilder::new(&[1])
            .cluster(1000, &[(1, 0), (1, 40), (1, 80)])
            .tag("camera", "front")
            .cluster(2000, &[(1, 0), (1, 40)])
            .bytes
    }

    #[test]
    fn each_cluster_reports_its_timecode_blocks_and_end() {
        let events = demux_in_pieces(&sample(), &[]).expect("valid");
        let kinds: Vec<String> = events
            .iter()
            .map(|e| match e {
                Event::Tracks { tracks, .. } => format!("tracks{}", tracks.tracks.len()),
                Event::ClusterStart => "start".into(),
                Event::ClusterTimecode(t) => format!("tc{t}"),
                Event::Block(b) => format!("b{}", b.timecode),
                Event::ClusterEnd => "end".into(),
                Event::Tags(t) => format!("tags{}", t.len()),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "tracks1", "start", "tc1000", "b0", "b40", "b80", "end", "tags1", "start",
                "tc2000", "b0", "b40", "end"
            ]
        );
        let Event::Tracks { tracks, .. } = &events[0] else {
            panic!("tracks first")
        };
        assert_eq!(
            tracks.tracks[0].codec_private,
            Bytes::from_static(&AVC_CONFIG)
        );
        assert_eq!(
            (tracks.tracks[0].width, tracks.tracks[0].height),
            (320, 240)
        );
    }

    #[test]
    fn aac_tracks_report_their_config_sample_rate_and_channels() {
        let body = MkvBuilder::video_and_audio()
            .cluster(0, &[(1, 0), (2, 0)])
            .bytes;
        let events = demux_in_pieces(&body, &[]).expect("valid");
        let Event::Tracks { tracks, .. } = &events[0] else {
            panic!("tracks first")
        };
        let audio = tracks.get(2).expect("track 2");
        assert!(audio.is_aac() && !audio.is_h264());
        assert_eq!(audio.track_type, 2);
        assert_eq!(audio.codec_private, Bytes::from_static(&AAC_CONFIG));
        assert_eq!((audio.sample_rate, audio.channels), (44_100, 1));
        assert_eq!(tracks.get(1).map(|t| t.sample_rate), Some(0));
    }

    #[test]
    fn garbage_where_an_element_should_be_is_invalid() {
        let body = MkvBuilder::new(&[1]).raw(&[0, 0, 0, 0]).bytes;
        assert!(matches!(
            demux_in_pieces(&body, &[]),
            Err(MkvError::Invalid(_))
        ));
    }

    #[test]
    fn a_body_cut_inside_an_element_is_invalid_at_the_end() {
        let body = sample();
        assert!(demux_in_pieces(&body[..body.len() - 3], &[]).is_err());
    }

    #[test]
    fn oversized_blocks_are_refused_before_they_are_buffered() {
        let mut demuxer = Demuxer::new(4);
        let mut events = Vec::new();
        let result = demuxer.push(
            &MkvBuilder::new(&[1]).cluster(0, &[(1, 0)]).bytes,
            &mut events,
        );
        assert!(matches!(result, Err(MkvError::TooLarge { .. })));
    }

    proptest! {
        #[test]
        fn splitting_the_body_anywhere_gives_the_same_events(
            mut cuts in proptest::collection::vec(0usize..400, 0..12)
        ) {
            let body = sample();
            cuts.sort_unstable();
            let whole = demux_in_pieces(&body, &[]).expect("valid");
            prop_assert_eq!(demux_in_pieces(&body, &cuts).expect("valid"), whole);
        }

        #[test]
        fn random_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            cuts in proptest::collection::vec(0usize..512, 0..6),
        ) {
            let _ = demux_in_pieces(&bytes, &cuts);
        }

        #[test]
        fn corrupting_a_valid_body_never_panics(
            at in 0usize..300,
            value in any::<u8>(),
        ) {
            let mut body = sample();
            let at = at % body.len();
            body[at] = value;
            let _ = demux_in_pieces(&body, &[at / 2]);
        }
    }
}
