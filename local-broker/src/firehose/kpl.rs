//! KPL de-aggregation of records read from a source Kinesis stream.
//!
//! Firehose de-aggregates records a Kinesis Producer Library (KPL) producer packed together
//! before it processes or delivers them: every user record becomes one Firehose record. An
//! aggregate is the 4 magic bytes `F3 89 9A C2`, a protobuf `AggregatedRecord`, and the MD5 digest
//! of the protobuf bytes. Anything else — a plain record, or one that starts with the magic bytes
//! but fails the digest check or does not decode — is delivered unchanged, never dropped.
//!
//! Only the user records' data matter here: partition keys, explicit hash keys and tags decide
//! nothing about delivery, so (unlike a KCL consumer) no aggregate is dropped for belonging to
//! another shard — the reader owns every shard.

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

/// The first four bytes of every KPL aggregate.
const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_SIZE: usize = 16;

/// The KPL's `AggregatedRecord`, reduced to what delivery needs. prost skips the fields it does
/// not know (explicit hash keys, tags); `required` fields are `optional` so the decoder can check
/// presence itself.
#[derive(Clone, PartialEq, prost::Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<UserRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct UserRecord {
    #[prost(uint64, optional, tag = "1")]
    partition_key_index: Option<u64>,
    // `Bytes` so that decoding from a `Bytes` buffer slices it instead of copying.
    #[prost(bytes = "bytes", optional, tag = "3")]
    data: Option<Bytes>,
}

/// The user records in one record read from the source, in order: the sub-records of a KPL
/// aggregate (none for an empty one), else the record itself.
pub fn deaggregate(record: Bytes) -> Vec<Bytes> {
    if !record.starts_with(&MAGIC) {
        return vec![record];
    }
    match unpack(&record) {
        Ok(users) => users,
        Err(reason) => {
            tracing::warn!(
                reason,
                "record starts like a KPL aggregate but is not one; delivering it unchanged"
            );
            vec![record]
        }
    }
}

/// Decodes the whole aggregate before yielding anything, so that a corrupt one is delivered
/// intact instead of partly.
fn unpack(record: &Bytes) -> Result<Vec<Bytes>, &'static str> {
    if record.len() <= MAGIC.len() + DIGEST_SIZE {
        return Err("too short to hold a digest");
    }
    let body_end = record.len() - DIGEST_SIZE;
    if Md5::digest(&record[MAGIC.len()..body_end])[..] != record[body_end..] {
        return Err("MD5 digest mismatch");
    }
    let aggregate = AggregatedRecord::decode(record.slice(MAGIC.len()..body_end))
        .map_err(|_| "the protobuf does not decode")?;
    let keys = aggregate.partition_key_table.len() as u64;
    aggregate
        .records
        .into_iter()
        .map(|user| match (user.partition_key_index, user.data) {
            (Some(index), Some(data)) if index < keys => Ok(data),
            (Some(_), Some(_)) => Err("a sub-record indexes past the partition key table"),
            _ => Err("a sub-record lacks a required field"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Bytes {
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(body);
        data.extend_from_slice(&Md5::digest(body));
        Bytes::from(data)
    }

    fn aggregate(parts: &[&str]) -> Bytes {
        let body = AggregatedRecord {
            partition_key_table: vec!["pk".into()],
            records: parts
                .iter()
                .map(|p| UserRecord {
                    partition_key_index: Some(0),
                    data: Some(Bytes::copy_from_slice(p.as_bytes())),
                })
                .collect(),
        };
        framed(&body.encode_to_vec())
    }

    #[test]
    fn an_aggregate_yields_its_user_records_in_order() {
        assert_eq!(deaggregate(aggregate(&["a", "bb", ""])), ["a", "bb", ""]);
        assert!(deaggregate(aggregate(&[])).is_empty());
    }

    #[test]
    fn plain_and_corrupt_records_pass_through_unchanged() {
        let plain = Bytes::from_static(b"{\"plain\":true}");
        assert_eq!(deaggregate(plain.clone()), [plain]);

        let mut flipped = aggregate(&["a", "b"]).to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let flipped = Bytes::from(flipped);
        assert_eq!(deaggregate(flipped.clone()), [flipped]);

        let short = Bytes::from_static(&[0xF3, 0x89, 0x9A, 0xC2, 1, 2]);
        assert_eq!(deaggregate(short.clone()), [short]);

        let undecodable = framed(&[0xFF, 0xFF, 0xFF]);
        assert_eq!(deaggregate(undecodable.clone()), [undecodable]);

        for (partition_key_index, data) in
            [(Some(0), None), (None, Some(b"x")), (Some(1), Some(b"x"))]
        {
            let corrupt = framed(
                &AggregatedRecord {
                    partition_key_table: vec!["pk".into()],
                    records: vec![UserRecord {
                        partition_key_index,
                        data: data.map(|d| Bytes::copy_from_slice(d)),
                    }],
                }
                .encode_to_vec(),
            );
            assert_eq!(deaggregate(corrupt.clone()), [corrupt]);
        }
    }
}
