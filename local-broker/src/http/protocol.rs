//! The wire protocols: AWS JSON 1.0/1.1 and AWS CBOR 1.1.
//!
//! This is the one place that knows how bodies are encoded. Services declare their input and output
//! shapes with serde; [`Wire::decode`] and [`Wire::encode`] turn bytes into shapes and back in the
//! protocol the client spoke. Blobs and timestamps differ between JSON and CBOR, so shapes use
//! [`Blob`] and [`Timestamp`], which pick their encoding from the serializer.

use super::error::{ApiError, ApiResult};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// The body encoding of one request (and therefore of its response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `application/x-amz-json-1.0` (DynamoDB).
    Json10,
    /// `application/x-amz-json-1.1` (Kinesis, Firehose).
    Json11,
    /// `application/x-amz-cbor-1.1` (the Java SDK v2's default for Kinesis).
    Cbor11,
}

impl Protocol {
    /// Picks the protocol from a request's `Content-Type`; JSON 1.1 when absent or unknown, as
    /// AWS does for JSON services.
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        match content_type.map(|c| c.split(';').next().unwrap_or("").trim()) {
            Some("application/x-amz-json-1.0") => Protocol::Json10,
            Some("application/x-amz-cbor-1.1") => Protocol::Cbor11,
            _ => Protocol::Json11,
        }
    }

    /// The `Content-Type` of responses in this protocol.
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::Json10 => "application/x-amz-json-1.0",
            Protocol::Json11 => "application/x-amz-json-1.1",
            Protocol::Cbor11 => "application/x-amz-cbor-1.1",
        }
    }
}

/// One request body in a known protocol.
#[derive(Debug, Clone)]
pub struct Wire {
    /// The protocol the client spoke.
    pub protocol: Protocol,
    /// The raw body.
    pub body: Bytes,
}

impl Wire {
    /// Parses the body into an operation's input shape. An empty body is an empty object, as
    /// SDKs send for operations without input. Malformed input is a `SerializationException`.
    pub fn decode<T: DeserializeOwned>(&self) -> ApiResult<T> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            match self.protocol {
                Protocol::Cbor11 => &[0xa0],
                _ => b"{}",
            }
        } else {
            &self.body
        };
        match self.protocol {
            Protocol::Json10 | Protocol::Json11 => serde_json::from_slice(body)
                .map_err(|e| ApiError::serialization(format!("Malformed request body: {e}"))),
            Protocol::Cbor11 => ciborium::from_reader(body)
                .map_err(|e| ApiError::serialization(format!("Malformed CBOR body: {e}"))),
        }
    }

    /// Encodes an operation's output shape in the request's protocol.
    pub fn encode<T: Serialize>(&self, output: &T) -> ApiResult<Bytes> {
        encode(self.protocol, output)
    }
}

/// Encodes a value in the given protocol.
pub fn encode<T: Serialize>(protocol: Protocol, value: &T) -> ApiResult<Bytes> {
    match protocol {
        Protocol::Json10 | Protocol::Json11 => serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| ApiError::internal(format!("response encoding failed: {e}"))),
        Protocol::Cbor11 => {
            let mut out = Vec::with_capacity(256);
            ciborium::into_writer(value, &mut out)
                .map_err(|e| ApiError::internal(format!("response encoding failed: {e}")))?;
            Ok(Bytes::from(out))
        }
    }
}

/// Binary data: a base64 string in JSON, a byte string in CBOR.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blob(pub Bytes);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&BASE64.encode(&self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BlobVisitor;
        impl<'de> Visitor<'de> for BlobVisitor {
            type Value = Blob;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a base64 string or a byte string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Blob, E> {
                BASE64
                    .decode(v)
                    .map(|b| Blob(Bytes::from(b)))
                    .map_err(|_| E::custom("blob is not valid base64"))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(Bytes::from(v)))
            }
        }
        deserializer.deserialize_any(BlobVisitor)
    }
}

/// A point in time in milliseconds since the Unix epoch.
///
/// JSON carries epoch seconds as a (possibly fractional) number. CBOR carries a tag-1 epoch value;
/// the Java SDK sends milliseconds there, other clients seconds, so large values are read as
/// milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

/// Epoch values above this are milliseconds, not seconds (seconds would be past year 5000).
const MILLIS_THRESHOLD: f64 = 100_000_000_000.0;

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_f64(self.0 as f64 / 1000.0)
        } else {
            ciborium::tag::Required::<i64, 1>(self.0).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor {
            cbor: bool,
        }
        impl<'de> Visitor<'de> for TimestampVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("epoch seconds")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
                if !v.is_finite() {
                    return Err(E::custom("timestamp is not a finite number"));
                }
                if self.cbor && v.abs() >= MILLIS_THRESHOLD {
                    Ok(Timestamp(v as i64))
                } else {
                    Ok(Timestamp((v * 1000.0).round() as i64))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                self.visit_f64(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                // boto3 and the CLI send numbers; accept numeric strings too.
                v.trim()
                    .parse::<f64>()
                    .map_err(|_| E::custom("timestamp must be epoch seconds"))
                    .and_then(|f| self.visit_f64(f))
            }
        }
        if deserializer.is_human_readable() {
            return deserializer.deserialize_any(TimestampVisitor { cbor: false });
        }
        // CBOR wraps the epoch value in tag 1, which only ciborium's own value type unwraps.
        let visitor = TimestampVisitor { cbor: true };
        let mut value = ciborium::Value::deserialize(deserializer)?;
        while let ciborium::Value::Tag(_, inner) = value {
            value = *inner;
        }
        match value {
            ciborium::Value::Integer(i) => {
                let i =
                    i64::try_from(i).map_err(|_| de::Error::custom("timestamp out of range"))?;
                visitor.visit_i64(i)
            }
            ciborium::Value::Float(f) => visitor.visit_f64(f),
            ciborium::Value::Text(t) => visitor.visit_str(&t),
            _ => Err(de::Error::custom("timestamp must be an epoch number")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Shape {
        data: Blob,
        at: Timestamp,
    }

    #[test]
    fn json_blobs_are_base64_and_timestamps_seconds() {
        let wire = Wire {
            protocol: Protocol::Json11,
            body: Bytes::from_static(br#"{"data":"aGVsbG8=","at":1700000000.5}"#),
        };
        let shape: Shape = wire.decode().unwrap();
        assert_eq!(shape.data.0, Bytes::from_static(b"hello"));
        assert_eq!(shape.at, Timestamp(1_700_000_000_500));
        let back = wire.encode(&shape).unwrap();
        assert_eq!(&back[..], br#"{"data":"aGVsbG8=","at":1700000000.5}"#);
    }

    #[test]
    fn cbor_round_trips_bytes_and_tagged_millis() {
        let shape = Shape {
            data: Blob(Bytes::from_static(b"\x00\x01")),
            at: Timestamp(1_700_000_000_123),
        };
        let body = encode(Protocol::Cbor11, &shape).unwrap();
        let wire = Wire {
            protocol: Protocol::Cbor11,
            body,
        };
        assert_eq!(wire.decode::<Shape>().unwrap(), shape);
    }

    #[test]
    fn malformed_json_is_a_serialization_exception() {
        let wire = Wire {
            protocol: Protocol::Json11,
            body: Bytes::from_static(b"{not json"),
        };
        assert_eq!(
            wire.decode::<Shape>().unwrap_err().code,
            "SerializationException"
        );
    }

    #[test]
    fn empty_body_is_an_empty_object() {
        #[derive(Deserialize)]
        struct Empty {}
        let wire = Wire {
            protocol: Protocol::Json11,
            body: Bytes::new(),
        };
        assert!(wire.decode::<Empty>().is_ok());
    }
}
