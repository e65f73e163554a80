//! EBML, the binary format under Matroska: variable-length integers, element headers, and the
//! encoding of elements for the chunks the broker writes.
//!
//! Reading is incremental: every reader takes the bytes received so far and answers
//! [`Read::Incomplete`] when it needs more, so a body split at any byte parses the same.

/// An element size whose value bits are all ones: the element ends where its parent's next
/// sibling begins (Matroska producers stream Segment and Cluster this way).
pub const UNKNOWN_SIZE: u64 = u64::MAX;

/// Element IDs the broker reads or writes (with their length-marker bits, as written on the wire).
pub mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMECODE_SCALE: u32 = 0x2A_D7B1;
    pub const TITLE: u32 = 0x7BA9;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMECODE: u32 = 0xE7;
    pub const POSITION: u32 = 0xA7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const BLOCK_GROUP: u32 = 0xA0;
    pub const BLOCK: u32 = 0xA1;
    pub const TAGS: u32 = 0x1254_C367;
    pub const TAG: u32 = 0x7373;
    pub const SIMPLE_TAG: u32 = 0x67C8;
    pub const TAG_NAME: u32 = 0x45A3;
    pub const TAG_STRING: u32 = 0x4487;
    pub const CUES: u32 = 0x1C53_BB6B;
    pub const VOID: u32 = 0xEC;
}

/// The outcome of reading from a prefix of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read<T> {
    /// The value and how many bytes it took.
    Done(T, usize),
    /// More bytes are needed.
    Incomplete,
    /// The bytes cannot be EBML.
    Invalid,
}

/// An element header: its ID, the size of its data ([`UNKNOWN_SIZE`] if unknown), and the
/// length of the header itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u32,
    pub size: u64,
    pub header_len: usize,
}

/// Length of a VINT from its first byte (1–8), or `None` for a zero byte.
fn vint_len(first: u8) -> Option<usize> {
    (first != 0).then(|| first.leading_zeros() as usize + 1)
}

/// Reads an element ID (1–4 bytes, marker kept).
pub fn read_id(bytes: &[u8]) -> Read<u32> {
    let Some(&first) = bytes.first() else {
        return Read::Incomplete;
    };
    match vint_len(first) {
        Some(len @ 1..=4) if bytes.len() >= len => {
            let id = bytes[..len]
                .iter()
                .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
            Read::Done(id, len)
        }
        Some(1..=4) => Read::Incomplete,
        _ => Read::Invalid,
    }
}

/// Reads an element data size (1–8 bytes, marker removed); all-ones is [`UNKNOWN_SIZE`].
pub fn read_size(bytes: &[u8]) -> Read<u64> {
    let Some(&first) = bytes.first() else {
        return Read::Incomplete;
    };
    let Some(len) = vint_len(first) else {
        return Read::Invalid;
    };
    if bytes.len() < len {
        return Read::Incomplete;
    }
    let mask = if len == 8 { 0 } else { 0xFFu8 >> len };
    let value = bytes[1..len]
        .iter()
        .fold(u64::from(first & mask), |acc, b| (acc << 8) | u64::from(*b));
    let all_ones = (1u64 << (7 * len)) - 1;
    Read::Done(
        if value == all_ones {
            UNKNOWN_SIZE
        } else {
            value
        },
        len,
    )
}

/// Reads an element header (ID then size).
pub fn read_header(bytes: &[u8]) -> Read<Header> {
    let (id, id_len) = match read_id(bytes) {
        Read::Done(id, len) => (id, len),
        Read::Incomplete => return Read::Incomplete,
        Read::Invalid => return Read::Invalid,
    };
    match read_size(&bytes[id_len..]) {
        Read::Done(size, size_len) => {
            let header_len = id_len + size_len;
            Read::Done(
                Header {
                    id,
                    size,
                    header_len,
                },
                header_len,
            )
        }
        Read::Incomplete => Read::Incomplete,
        Read::Invalid => Read::Invalid,
    }
}

/// Reads a signed-less VINT as used for track numbers in blocks (marker removed).
pub fn read_track_number(bytes: &[u8]) -> Read<u64> {
    match read_size(bytes) {
        Read::Done(UNKNOWN_SIZE, _) => Read::Invalid,
        other => other,
    }
}

/// A big-endian unsigned integer of 0–8 bytes.
pub fn uint(data: &[u8]) -> Option<u64> {
    (data.len() <= 8).then(|| data.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// A big-endian IEEE 754 float of 4 or 8 bytes (0 bytes is 0.0).
pub fn float(data: &[u8]) -> Option<f64> {
    match data.len() {
        0 => Some(0.0),
        4 => Some(f64::from(f32::from_be_bytes(data.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(data.try_into().ok()?)),
        _ => None,
    }
}

/// The children of a master element whose data is complete in `data`: `(id, child data)`.
/// Stops at the first malformed or truncated child, returning `None`.
pub fn children(data: &[u8]) -> Option<Vec<(u32, &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let Read::Done(header, len) = read_header(&data[at..]) else {
            return None;
        };
        let start = at + len;
        let size = usize::try_from(header.size).ok()?;
        let end = start.checked_add(size).filter(|end| *end <= data.len())?;
        out.push((header.id, &data[start..end]));
        at = end;
    }
    Some(out)
}

/// Appends an element ID as written on the wire.
fn put_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// Appends a data size as an 8-byte VINT (what the producer SDK writes; never ambiguous).
fn put_size(out: &mut Vec<u8>, size: u64) {
    let mut bytes = size.to_be_bytes();
    bytes[0] = 0x01;
    out.extend_from_slice(&bytes);
}

/// Appends an element with the given data.
pub fn put(out: &mut Vec<u8>, id: u32, data: &[u8]) {
    put_id(out, id);
    put_size(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// Appends a block's track number: a VINT of the shortest length that holds it.
pub fn put_track_number(out: &mut Vec<u8>, track: u64) {
    let len = (1..=8usize)
        .find(|len| track < (1u64 << (7 * len)) - 1)
        .unwrap_or(8);
    let marked = if len == 8 {
        track
    } else {
        track | (1u64 << (7 * len))
    };
    let bytes = marked.to_be_bytes();
    if len == 8 {
        out.push(0x01);
        out.extend_from_slice(&bytes[1..]);
    } else {
        out.extend_from_slice(&bytes[8 - len..]);
    }
}

/// Appends an unsigned-integer element (8 bytes of data).
pub fn put_uint(out: &mut Vec<u8>, id: u32, value: u64) {
    put(out, id, &value.to_be_bytes());
}

/// Appends a float element (8 bytes of data).
pub fn put_float(out: &mut Vec<u8>, id: u32, value: f64) {
    put(out, id, &value.to_be_bytes());
}

/// Appends a master element whose children `fill` writes.
pub fn put_master(out: &mut Vec<u8>, id: u32, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut data = Vec::new();
    fill(&mut data);
    put(out, id, &data);
}

/// Appends a master element header of unknown size (its children follow).
pub fn put_unknown_size(out: &mut Vec<u8>, id: u32) {
    put_id(out, id);
    out.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_decode_with_marker_removed_and_all_ones_as_unknown() {
        assert_eq!(read_size(&[0x81]), Read::Done(1, 1));
        assert_eq!(read_size(&[0x40, 0x02]), Read::Done(2, 2));
        assert_eq!(read_size(&[0xFF]), Read::Done(UNKNOWN_SIZE, 1));
        assert_eq!(
            read_size(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            Read::Done(UNKNOWN_SIZE, 8)
        );
        assert_eq!(read_size(&[0x01, 0xFF]), Read::Incomplete);
        assert_eq!(read_size(&[0x00]), Read::Invalid);
    }

    #[test]
    fn ids_keep_their_marker_bits() {
        assert_eq!(read_id(&[0x1A, 0x45, 0xDF, 0xA3]), Read::Done(id::EBML, 4));
        assert_eq!(read_id(&[0xA3]), Read::Done(id::SIMPLE_BLOCK, 1));
        assert_eq!(read_id(&[0x1A, 0x45]), Read::Incomplete);
        assert_eq!(read_id(&[0x08, 0, 0, 0, 0]), Read::Invalid);
    }

    #[test]
    fn written_elements_read_back() {
        let mut out = Vec::new();
        put_uint(&mut out, id::TIMECODE_SCALE, 1_000_000);
        put(&mut out, id::TITLE, b"kvs");
        let children = children(&out).expect("well-formed");
        assert_eq!(children[0].0, id::TIMECODE_SCALE);
        assert_eq!(uint(children[0].1), Some(1_000_000));
        assert_eq!(children[1], (id::TITLE, &b"kvs"[..]));
    }
}
