//! The AWS event stream framing (`application/vnd.amazon.eventstream`) used by SubscribeToShard.
//!
//! A message is: total length (u32) · headers length (u32) · CRC32 of those 8 bytes · headers ·
//! payload · CRC32 of everything before it, all big-endian. Headers here are all strings
//! (type 7): name length (u8) · name · 7 · value length (u16) · value.

use bytes::{BufMut, Bytes, BytesMut};

/// Header value type tag for strings.
const STRING: u8 = 7;

/// Encodes one message.
pub fn message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let headers_len: usize = headers
        .iter()
        .map(|(name, value)| 1 + name.len() + 1 + 2 + value.len())
        .sum();
    let total = 12 + headers_len + payload.len() + 4;
    let mut out = BytesMut::with_capacity(total);
    out.put_u32(total as u32);
    out.put_u32(headers_len as u32);
    let prelude_crc = crc32fast::hash(&out[..8]);
    out.put_u32(prelude_crc);
    for (name, value) in headers {
        out.put_u8(name.len() as u8);
        out.put_slice(name.as_bytes());
        out.put_u8(STRING);
        out.put_u16(value.len() as u16);
        out.put_slice(value.as_bytes());
    }
    out.put_slice(payload);
    let message_crc = crc32fast::hash(&out);
    out.put_u32(message_crc);
    out.freeze()
}

/// An event message of the given type.
pub fn event(event_type: &str, content_type: &str, payload: &[u8]) -> Bytes {
    message(
        &[
            (":message-type", "event"),
            (":event-type", event_type),
            (":content-type", content_type),
        ],
        payload,
    )
}

/// An exception message, as sent when a subscription fails after it started.
pub fn exception(exception_type: &str, content_type: &str, payload: &[u8]) -> Bytes {
    message(
        &[
            (":message-type", "exception"),
            (":exception-type", exception_type),
            (":content-type", content_type),
        ],
        payload,
    )
}

#[cfg(test)]
pub(crate) mod decode {
    //! A strict decoder, so tests can check what the encoder produced.

    /// A decoded message: string headers and payload.
    pub type Message = (Vec<(String, String)>, Vec<u8>);

    /// Splits a byte stream into messages, checking lengths and both CRCs.
    pub fn messages(mut input: &[u8]) -> Result<Vec<Message>, String> {
        let mut out = Vec::new();
        while !input.is_empty() {
            if input.len() < 16 {
                return Err("truncated prelude".into());
            }
            let total = u32::from_be_bytes(input[0..4].try_into().unwrap()) as usize;
            let headers_len = u32::from_be_bytes(input[4..8].try_into().unwrap()) as usize;
            let prelude_crc = u32::from_be_bytes(input[8..12].try_into().unwrap());
            if crc32fast::hash(&input[..8]) != prelude_crc {
                return Err("prelude crc".into());
            }
            if total < 16 + headers_len || total > input.len() {
                return Err("bad lengths".into());
            }
            let message_crc = u32::from_be_bytes(input[total - 4..total].try_into().unwrap());
            if crc32fast::hash(&input[..total - 4]) != message_crc {
                return Err("message crc".into());
            }
            let mut h = &input[12..12 + headers_len];
            let mut headers = Vec::new();
            while !h.is_empty() {
                let n = h[0] as usize;
                let name = String::from_utf8(h[1..1 + n].to_vec()).map_err(|e| e.to_string())?;
                if h[1 + n] != 7 {
                    return Err("non-string header".into());
                }
                let vlen = u16::from_be_bytes([h[2 + n], h[3 + n]]) as usize;
                let value = String::from_utf8(h[4 + n..4 + n + vlen].to_vec())
                    .map_err(|e| e.to_string())?;
                headers.push((name, value));
                h = &h[4 + n + vlen..];
            }
            out.push((headers, input[12 + headers_len..total - 4].to_vec()));
            input = &input[total..];
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn messages_round_trip(event_type in "[a-zA-Z-]{1,30}", payload in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut stream = event("initial-response", "application/json", b"{}").to_vec();
            stream.extend_from_slice(&event(&event_type, "application/json", &payload));
            let decoded = decode::messages(&stream).unwrap();
            prop_assert_eq!(decoded.len(), 2);
            prop_assert_eq!(&decoded[1].1, &payload);
            prop_assert!(decoded[1].0.contains(&(":event-type".to_string(), event_type.clone())));
        }
    }

    #[test]
    fn exceptions_carry_their_type() {
        let decoded = decode::messages(&exception(
            "ResourceNotFoundException",
            "application/json",
            b"{}",
        ))
        .unwrap();
        assert!(
            decoded[0]
                .0
                .contains(&(":message-type".into(), "exception".into()))
        );
        assert!(
            decoded[0]
                .0
                .contains(&(":exception-type".into(), "ResourceNotFoundException".into()))
        );
    }
}
