//! Checksummed framing shared by every file the broker writes: `len: u32 LE · crc32: u32 LE ·
//! payload`. A frame whose length runs past the end of the file or whose checksum does not match
//! is a torn write (the process died mid-append); everything from it on is discarded.

/// Bytes of a frame header.
pub const HEADER: usize = 8;

/// Appends one frame holding `payload` to `out`.
pub fn encode_into(out: &mut Vec<u8>, payload: &[u8]) {
    encode_parts_into(out, &[payload]);
}

/// Appends one frame whose payload is `parts` one after another, without joining them first.
pub fn encode_parts_into(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut crc = crc32fast::Hasher::new();
    for part in parts {
        crc.update(part);
    }
    out.reserve(HEADER + len);
    // Payloads are bounded by the request size limits, far below u32::MAX.
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// The intact frames at the start of `bytes`, and how many bytes they span; anything after that
/// is a torn or corrupt tail.
pub fn decode_all(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        frames.push(payload);
        at += HEADER + len;
    }
    (frames, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_and_corrupt_tails_are_cut() {
        let mut bytes = Vec::new();
        encode_into(&mut bytes, b"one");
        encode_into(&mut bytes, b"two");
        let whole = bytes.len();
        encode_into(&mut bytes, b"three");
        // Torn: the last frame is cut short.
        let (frames, valid) = decode_all(&bytes[..bytes.len() - 2]);
        assert_eq!(frames, vec![&b"one"[..], &b"two"[..]]);
        assert_eq!(valid, whole);
        // Corrupt: a flipped payload byte fails the checksum.
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert_eq!(decode_all(&bytes).1, whole);
    }
}
