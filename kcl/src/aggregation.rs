//! KPL record aggregation: many user records packed into one Kinesis record by the Kinesis
//! Producer Library (KPL), and unpacked again here, in the KPL's wire format.
//!
//! A KPL aggregate is an ordinary Kinesis record whose data is the 4 magic bytes `F3 89 9A C2`, a
//! protobuf `AggregatedRecord` (tables of partition keys and explicit hash keys, then the user
//! records that index into them), and the MD5 digest of the protobuf bytes.
//!
//! - Consumer side: [`deaggregate`] turns one record read from a shard into its [`UserRecord`]s,
//!   numbered by sub-sequence number; [`deaggregate_for_shard`] also drops aggregates that were
//!   re-routed by a reshard, as the Java KCL does. A record that is not an aggregate, or is a
//!   corrupt one, comes back unchanged as a single record: de-aggregation never fails and never
//!   loses data.
//! - Producer side: [`Aggregator`] packs user records into [`AggregatedRecord`]s no larger than a
//!   Kinesis record may be, ready for a `PutRecord(s)` entry.
//!
//! This module owns the format only; reading shards and delivering records is `retrieval`'s job.
//!
//! ```
//! use kcl::Record;
//! use kcl::aggregation::{Aggregator, deaggregate};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut aggregator = Aggregator::new();
//! for user in ["ana", "bo", "ana"] {
//!     // `add` hands back a finished aggregate only when the next record no longer fits.
//!     assert!(aggregator.add(user, None, format!("{user} logged in"))?.is_none());
//! }
//! let aggregate = aggregator.flush().expect("three records are pending");
//! // Send it with PutRecord(s): partition key, explicit hash key and data as given here.
//! assert_eq!(aggregate.partition_key, "ana");
//!
//! // What a consumer reads back from the shard: one Kinesis record ...
//! let read = Record {
//!     sequence_number: "49590338271490256608559692538361571095921575989136588898".parse()?,
//!     sub_sequence_number: 0,
//!     partition_key: aggregate.partition_key,
//!     data: aggregate.data,
//!     approximate_arrival_timestamp: None,
//! };
//! // ... that holds three user records.
//! let users = deaggregate(read);
//! assert_eq!(users.len(), 3);
//! assert_eq!(users[1].partition_key, "bo");
//! assert_eq!(users[1].sub_sequence_number, 1);
//! assert_eq!(&users[1].data[..], b"bo logged in");
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::mem;
use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};
use md5::{Digest, Md5};
use prost::Message;

use crate::checkpoint::SequenceNumber;
use crate::lease::HashKeyRange;
use crate::processor::Record;

/// The first four bytes of every KPL aggregate.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// The largest Kinesis record: data plus partition key, in bytes.
pub const MAX_RECORD_SIZE: usize = 1024 * 1024;

const DIGEST_SIZE: usize = 16;

/// Kinesis accepts partition keys of 1 to 256 Unicode characters.
const MAX_PARTITION_KEY_CHARS: usize = 256;

/// The KPL's messages (`aggregation.proto`), written out by hand so that no build script or
/// `protoc` is needed.
mod proto {
    use bytes::Bytes;

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct AggregatedRecord {
        #[prost(string, repeated, tag = "1")]
        pub partition_key_table: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub explicit_hash_key_table: Vec<String>,
        #[prost(message, repeated, tag = "3")]
        pub records: Vec<Record>,
    }

    // `required` fields are `optional` here: prost does not enforce proto2 presence, so the
    // decoder checks it itself and treats a missing field as corruption, as protobuf-java does.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Record {
        #[prost(uint64, optional, tag = "1")]
        pub partition_key_index: Option<u64>,
        #[prost(uint64, optional, tag = "2")]
        pub explicit_hash_key_index: Option<u64>,
        // `Bytes` so that decoding from a `Bytes` buffer slices it instead of copying.
        #[prost(bytes = "bytes", optional, tag = "3")]
        pub data: Option<Bytes>,
        #[prost(message, repeated, tag = "4")]
        pub tags: Vec<Tag>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Tag {
        #[prost(string, optional, tag = "1")]
        pub key: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }
}

/// One user record: a plain Kinesis record, or one sub-record of a KPL aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The sequence number of the Kinesis record that carried this one (shared by all
    /// sub-records of an aggregate).
    pub sequence_number: SequenceNumber,
    /// The position within the aggregate, from 0; 0 for a plain record.
    pub sub_sequence_number: u64,
    /// The partition key the producer gave this user record.
    pub partition_key: String,
    /// The explicit hash key the producer gave this user record, if any (never set for a plain
    /// record: Kinesis does not return it).
    pub explicit_hash_key: Option<String>,
    /// The payload.
    pub data: Bytes,
    /// When Kinesis accepted the carrying record.
    pub approximate_arrival_timestamp: Option<SystemTime>,
    /// Whether this came out of a KPL aggregate.
    pub aggregated: bool,
}

impl UserRecord {
    fn plain(record: Record) -> Self {
        Self {
            sequence_number: record.sequence_number,
            sub_sequence_number: 0,
            partition_key: record.partition_key,
            explicit_hash_key: None,
            data: record.data,
            approximate_arrival_timestamp: record.approximate_arrival_timestamp,
            aggregated: false,
        }
    }
}

impl From<UserRecord> for Record {
    /// The record as a [`RecordProcessor`](crate::RecordProcessor) receives it.
    fn from(user: UserRecord) -> Self {
        Self {
            sequence_number: user.sequence_number,
            sub_sequence_number: user.sub_sequence_number,
            partition_key: user.partition_key,
            data: user.data,
            approximate_arrival_timestamp: user.approximate_arrival_timestamp,
        }
    }
}

/// The user records in one record read from a shard.
///
/// A KPL aggregate yields its sub-records in order, numbered 0..n, each with its own partition
/// key; an aggregate that holds no records yields none. Anything else (a plain record, or one that
/// starts with the magic bytes but fails the digest check, does not decode, or indexes past its
/// key tables) comes back unchanged as one record with `aggregated == false`; corrupt aggregates
/// are logged as warnings. The record's own `sub_sequence_number` is ignored.
pub fn deaggregate(record: Record) -> Vec<UserRecord> {
    deaggregate_within(record, None)
}

/// [`deaggregate`], dropping aggregates that do not belong to the shard covering `shard`.
///
/// If any sub-record's effective hash key (its explicit hash key, else the MD5 of its partition
/// key as a big-endian 128-bit number) is outside `shard`, the whole aggregate is dropped, as the
/// Java KCL does. The KPL predicts each aggregate's shard from its shard map; when a reshard made
/// that prediction wrong, the KPL sees the aggregate land on an unexpected shard and sends all of
/// its user records again, so the misrouted copy would only deliver duplicates. Plain records are
/// never dropped.
///
/// Producers that aggregate without a shard map (including [`Aggregator`]) must therefore only
/// aggregate records that hash into one shard, or lose the others at a consumer that filters.
pub fn deaggregate_for_shard(record: Record, shard: &HashKeyRange) -> Vec<UserRecord> {
    deaggregate_within(record, Some(shard))
}

fn deaggregate_within(record: Record, shard: Option<&HashKeyRange>) -> Vec<UserRecord> {
    if !record.data.starts_with(&MAGIC) {
        return vec![UserRecord::plain(record)];
    }
    match unpack(&record) {
        Ok(users) => match shard.map(|shard| first_out_of_range(&users, shard)) {
            Some(Err(corrupt)) => pass_through(record, corrupt),
            Some(Ok(Some((sub_sequence_number, hash_key)))) => {
                tracing::info!(
                    sequence_number = %record.sequence_number,
                    sub_sequence_number,
                    hash_key = %hash_key,
                    "dropping a KPL aggregate with a sub-record outside this shard's hash key range \
                     (misrouted by a reshard; the producer sent its records again)"
                );
                Vec::new()
            }
            Some(Ok(None)) | None => users,
        },
        Err(corrupt) => pass_through(record, corrupt),
    }
}

fn pass_through(record: Record, corrupt: Corrupt) -> Vec<UserRecord> {
    tracing::warn!(
        sequence_number = %record.sequence_number,
        reason = %corrupt,
        "record starts like a KPL aggregate but is not one; delivering it unchanged"
    );
    vec![UserRecord::plain(record)]
}

/// Why a record that starts with the magic bytes is not treated as an aggregate.
#[derive(Debug, thiserror::Error)]
enum Corrupt {
    #[error("too short to hold a digest")]
    TooShort,
    #[error("MD5 digest mismatch")]
    DigestMismatch,
    #[error("protobuf does not decode: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("required field {0} is missing")]
    MissingField(&'static str),
    #[error("sub-record {0} indexes past the partition key table")]
    PartitionKeyIndex(usize),
    #[error("sub-record {0} indexes past the explicit hash key table")]
    ExplicitHashKeyIndex(usize),
    #[error("sub-record {0} has an explicit hash key that is not a decimal 128-bit number")]
    ExplicitHashKey(u64),
}

/// Decodes and validates a whole aggregate before yielding anything, so that a corrupt one is
/// delivered intact instead of partly (the Java KCL keeps the sub-records before a bad index).
fn unpack(record: &Record) -> Result<Vec<UserRecord>, Corrupt> {
    let data = &record.data;
    if data.len() <= MAGIC.len() + DIGEST_SIZE {
        return Err(Corrupt::TooShort);
    }
    let body_end = data.len() - DIGEST_SIZE;
    if Md5::digest(&data[MAGIC.len()..body_end])[..] != data[body_end..] {
        return Err(Corrupt::DigestMismatch);
    }
    let aggregate = proto::AggregatedRecord::decode(data.slice(MAGIC.len()..body_end))?;
    let mut users = Vec::with_capacity(aggregate.records.len());
    for (sub_sequence_number, sub) in aggregate.records.into_iter().enumerate() {
        let pk_index = sub
            .partition_key_index
            .ok_or(Corrupt::MissingField("partition_key_index"))?;
        let partition_key = table_entry(&aggregate.partition_key_table, pk_index)
            .ok_or(Corrupt::PartitionKeyIndex(sub_sequence_number))?;
        let explicit_hash_key = match sub.explicit_hash_key_index {
            None => None,
            Some(index) => Some(
                table_entry(&aggregate.explicit_hash_key_table, index)
                    .ok_or(Corrupt::ExplicitHashKeyIndex(sub_sequence_number))?,
            ),
        };
        if sub.tags.iter().any(|tag| tag.key.is_none()) {
            return Err(Corrupt::MissingField("tags.key"));
        }
        users.push(UserRecord {
            sequence_number: record.sequence_number.clone(),
            sub_sequence_number: sub_sequence_number as u64,
            partition_key,
            explicit_hash_key,
            data: sub.data.ok_or(Corrupt::MissingField("data"))?,
            approximate_arrival_timestamp: record.approximate_arrival_timestamp,
            aggregated: true,
        });
    }
    Ok(users)
}

fn table_entry(table: &[String], index: u64) -> Option<String> {
    table.get(usize::try_from(index).ok()?).cloned()
}

/// The first sub-record whose effective hash key is outside `shard`, with that key.
fn first_out_of_range(
    users: &[UserRecord],
    shard: &HashKeyRange,
) -> Result<Option<(u64, u128)>, Corrupt> {
    for user in users {
        let hash_key = match &user.explicit_hash_key {
            Some(ehk) => {
                parse_hash_key(ehk).ok_or(Corrupt::ExplicitHashKey(user.sub_sequence_number))?
            }
            None => partition_key_hash(&user.partition_key),
        };
        if !(shard.starting_hash_key..=shard.ending_hash_key).contains(&hash_key) {
            return Ok(Some((user.sub_sequence_number, hash_key)));
        }
    }
    Ok(None)
}

/// The hash key Kinesis routes a partition key to: its MD5 digest as a big-endian number.
pub fn partition_key_hash(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// Kinesis's explicit hash key syntax: a decimal number in 0..2^128 without leading zeros or sign.
fn parse_hash_key(s: &str) -> Option<u128> {
    let canonical = s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

/// A finished KPL aggregate: one `PutRecord(s)` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatedRecord {
    /// The partition key to send: the first user record's.
    pub partition_key: String,
    /// The explicit hash key to send: the first user record's effective hash key, in decimal.
    /// It routes the aggregate to the shard the first user record would have gone to.
    pub explicit_hash_key: String,
    /// The record data: magic bytes, protobuf, MD5 digest.
    pub data: Bytes,
    /// How many user records it holds.
    pub user_records: usize,
}

/// A user record cannot be aggregated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregationError {
    /// The partition key is empty or longer than Kinesis allows.
    #[error(
        "partition key has {0} characters; Kinesis accepts 1 to 256: use a shorter key, or a hash of it"
    )]
    InvalidPartitionKey(usize),
    /// The explicit hash key is not one Kinesis accepts.
    #[error(
        "explicit hash key {0:?} is not a decimal number in 0..2^128 (no sign, no leading zeros)"
    )]
    InvalidExplicitHashKey(String),
    /// The user record alone is too large for one aggregate.
    #[error(
        "user record needs {size} bytes as an aggregate, over the {max}-byte limit: split the payload \
         or raise the limit (at most {MAX_RECORD_SIZE})"
    )]
    RecordTooLarge {
        /// The size of an aggregate holding only this record, partition key included.
        size: usize,
        /// The aggregator's limit.
        max: usize,
    },
}

/// Packs user records into KPL aggregates, in the order added.
///
/// Partition keys and explicit hash keys that repeat within an aggregate are stored once. An
/// aggregate is finished when the next record would push it over the size limit, which counts
/// what Kinesis counts: the record data plus its partition key. It is routed like its first user
/// record (see [`AggregatedRecord`]), so only aggregate records meant for the same shard together
/// — see [`deaggregate_for_shard`] for what a consumer does with the rest.
#[derive(Debug)]
pub struct Aggregator {
    max_record_size: usize,
    pending: proto::AggregatedRecord,
    partition_keys: HashMap<String, u64>,
    explicit_hash_keys: HashMap<String, u64>,
    /// `pending.encoded_len()`, kept up to date so that adding a record costs O(1).
    encoded_len: usize,
    /// The first pending record's partition key and effective hash key.
    routing: Option<(String, u128)>,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::with_max_record_size(MAX_RECORD_SIZE)
    }
}

impl Aggregator {
    /// An aggregator that fills records up to [`MAX_RECORD_SIZE`], the Kinesis limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// An aggregator whose records (data plus partition key) stay within `max_record_size` bytes,
    /// for producers that prefer smaller records (the KPL's default is 51,200). Values above
    /// [`MAX_RECORD_SIZE`] are lowered to it, since Kinesis would reject larger records.
    pub fn with_max_record_size(max_record_size: usize) -> Self {
        Self {
            max_record_size: max_record_size.min(MAX_RECORD_SIZE),
            pending: proto::AggregatedRecord::default(),
            partition_keys: HashMap::new(),
            explicit_hash_keys: HashMap::new(),
            encoded_len: 0,
            routing: None,
        }
    }

    /// How many user records are pending.
    pub fn len(&self) -> usize {
        self.pending.records.len()
    }

    /// Whether no user records are pending.
    pub fn is_empty(&self) -> bool {
        self.pending.records.is_empty()
    }

    /// Adds a user record. Returns the pending aggregate, finished, if this record did not fit in
    /// it (the record then starts the next one); `None` otherwise.
    ///
    /// On error nothing changes: the record is not added and the pending ones stay.
    pub fn add(
        &mut self,
        partition_key: impl Into<String>,
        explicit_hash_key: Option<String>,
        data: impl Into<Bytes>,
    ) -> Result<Option<AggregatedRecord>, AggregationError> {
        let partition_key = partition_key.into();
        let pk_chars = partition_key.chars().count();
        if pk_chars == 0 || pk_chars > MAX_PARTITION_KEY_CHARS {
            return Err(AggregationError::InvalidPartitionKey(pk_chars));
        }
        let hash_key = match &explicit_hash_key {
            Some(ehk) => parse_hash_key(ehk)
                .ok_or_else(|| AggregationError::InvalidExplicitHashKey(ehk.clone()))?,
            None => partition_key_hash(&partition_key),
        };
        let data = data.into();

        let empty = HashMap::new();
        let alone = aggregate_size(
            body_growth(
                &empty,
                &empty,
                &partition_key,
                explicit_hash_key.as_deref(),
                &data,
            ),
            partition_key.len(),
        );
        if alone > self.max_record_size {
            return Err(AggregationError::RecordTooLarge {
                size: alone,
                max: self.max_record_size,
            });
        }
        let mut growth = self.body_growth(&partition_key, explicit_hash_key.as_deref(), &data);
        let mut finished = None;
        if let Some((first_pk, _)) = &self.routing
            && aggregate_size(self.encoded_len + growth, first_pk.len()) > self.max_record_size
        {
            finished = self.flush();
            // The next aggregate starts with empty key tables.
            growth = self.body_growth(&partition_key, explicit_hash_key.as_deref(), &data);
        }

        let partition_key_index = Self::intern(
            &mut self.partition_keys,
            &mut self.pending.partition_key_table,
            &partition_key,
        );
        let explicit_hash_key_index = explicit_hash_key.as_deref().map(|ehk| {
            Self::intern(
                &mut self.explicit_hash_keys,
                &mut self.pending.explicit_hash_key_table,
                ehk,
            )
        });
        self.pending.records.push(proto::Record {
            partition_key_index: Some(partition_key_index),
            explicit_hash_key_index,
            data: Some(data),
            tags: Vec::new(),
        });
        self.encoded_len += growth;
        if self.routing.is_none() {
            self.routing = Some((partition_key, hash_key));
        }
        Ok(finished)
    }

    /// Finishes the pending aggregate, if any records are pending; call it before shutting down
    /// or when records have waited long enough.
    pub fn flush(&mut self) -> Option<AggregatedRecord> {
        let (partition_key, hash_key) = self.routing.take()?;
        let pending = mem::take(&mut self.pending);
        self.partition_keys.clear();
        self.explicit_hash_keys.clear();
        self.encoded_len = 0;

        let body = pending.encode_to_vec();
        let mut data = BytesMut::with_capacity(MAGIC.len() + body.len() + DIGEST_SIZE);
        data.put_slice(&MAGIC);
        data.put_slice(&body);
        data.put_slice(&Md5::digest(&body));
        Some(AggregatedRecord {
            partition_key,
            explicit_hash_key: hash_key.to_string(),
            data: data.freeze(),
            user_records: pending.records.len(),
        })
    }

    fn body_growth(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: &Bytes,
    ) -> usize {
        body_growth(
            &self.partition_keys,
            &self.explicit_hash_keys,
            partition_key,
            explicit_hash_key,
            data,
        )
    }

    /// The index of `key` in `table`, appending it if it is not there yet.
    fn intern(index: &mut HashMap<String, u64>, table: &mut Vec<String>, key: &str) -> u64 {
        if let Some(&i) = index.get(key) {
            return i;
        }
        let i = table.len() as u64;
        table.push(key.to_owned());
        index.insert(key.to_owned(), i);
        i
    }
}

/// Record size for a protobuf body of `encoded_len` bytes sent with a partition key of
/// `partition_key_len` bytes: what Kinesis counts against its limit.
fn aggregate_size(encoded_len: usize, partition_key_len: usize) -> usize {
    MAGIC.len() + encoded_len + DIGEST_SIZE + partition_key_len
}

/// How many bytes an `AggregatedRecord` body whose key tables hold `partition_keys` and
/// `explicit_hash_keys` grows by when this record is added: the same arithmetic as prost's
/// encoder, so the size limit holds without encoding anything.
fn body_growth(
    partition_keys: &HashMap<String, u64>,
    explicit_hash_keys: &HashMap<String, u64>,
    partition_key: &str,
    explicit_hash_key: Option<&str>,
    data: &Bytes,
) -> usize {
    use prost::encoding::{encoded_len_varint, key_len};
    let string_field =
        |tag: u32, s: &str| key_len(tag) + encoded_len_varint(s.len() as u64) + s.len();
    // A key already in a table costs only its index; a new one takes the next index and an entry.
    let mut table_growth = 0;
    let mut index_len = |keys: &HashMap<String, u64>, key: &str, tag: u32| match keys.get(key) {
        Some(&index) => encoded_len_varint(index),
        None => {
            table_growth += string_field(tag, key);
            encoded_len_varint(keys.len() as u64)
        }
    };
    let mut record_len = key_len(1) + index_len(partition_keys, partition_key, 1);
    if let Some(ehk) = explicit_hash_key {
        record_len += key_len(2) + index_len(explicit_hash_keys, ehk, 2);
    }
    record_len += key_len(3) + encoded_len_varint(data.len() as u64) + data.len();
    table_growth + key_len(3) + encoded_len_varint(record_len as u64) + record_len
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn read(data: impl Into<Bytes>) -> Record {
        Record {
            sequence_number: "4242".parse().expect("digits"),
            sub_sequence_number: 0,
            partition_key: "outer".into(),
            data: data.into(),
            approximate_arrival_timestamp: Some(SystemTime::UNIX_EPOCH),
        }
    }

    fn whole_range() -> HashKeyRange {
        HashKeyRange {
            starting_hash_key: 0,
            ending_hash_key: u128::MAX,
        }
    }

    /// A well-formed aggregate of a hand-built body, as a producer that is not ours could send.
    fn framed(body: &proto::AggregatedRecord) -> Bytes {
        let body = body.encode_to_vec();
        [&MAGIC[..], &body, &Md5::digest(&body)[..]].concat().into()
    }

    fn aggregate_all(
        aggregator: &mut Aggregator,
        records: &[(String, Option<String>, Vec<u8>)],
    ) -> Vec<AggregatedRecord> {
        let mut out = Vec::new();
        for (pk, ehk, data) in records {
            let finished = aggregator
                .add(pk.clone(), ehk.clone(), data.clone())
                .expect("valid record");
            out.extend(finished);
        }
        out.extend(aggregator.flush());
        out
    }

    fn passed_through(users: &[UserRecord], original: &Record) -> bool {
        matches!(users, [user] if !user.aggregated
            && user.data == original.data
            && user.partition_key == original.partition_key
            && user.sub_sequence_number == 0
            && user.sequence_number == original.sequence_number)
    }

    #[test]
    fn round_trip_keeps_order_keys_and_payloads_and_numbers_sub_records() {
        let mut aggregator = Aggregator::new();
        for (pk, ehk, data) in [
            ("a", None, "one"),
            ("b", Some("7"), "two"),
            ("a", Some("7"), ""),
        ] {
            assert_eq!(aggregator.add(pk, ehk.map(String::from), data), Ok(None));
        }
        assert_eq!(aggregator.len(), 3);
        let aggregate = aggregator.flush().expect("pending");
        assert!(aggregator.is_empty() && aggregator.flush().is_none());
        assert_eq!(aggregate.user_records, 3);

        let users = deaggregate(read(aggregate.data));
        let got: Vec<_> = users
            .iter()
            .map(|u| {
                (
                    u.sub_sequence_number,
                    u.partition_key.as_str(),
                    u.explicit_hash_key.as_deref(),
                    &u.data[..],
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, "a", None, &b"one"[..]),
                (1, "b", Some("7"), b"two"),
                (2, "a", Some("7"), b""),
            ]
        );
        assert!(users.iter().all(|u| u.aggregated
            && u.sequence_number.as_str() == "4242"
            && u.approximate_arrival_timestamp == Some(SystemTime::UNIX_EPOCH)));
    }

    #[test]
    fn repeated_keys_are_stored_once() {
        let mut aggregator = Aggregator::new();
        for pk in ["x", "y", "x", "x"] {
            aggregator.add(pk, Some("5".into()), "d").expect("valid");
        }
        let aggregate = aggregator.flush().expect("pending");
        let body = &aggregate.data[MAGIC.len()..aggregate.data.len() - DIGEST_SIZE];
        let decoded = proto::AggregatedRecord::decode(body).expect("decodes");
        assert_eq!(decoded.partition_key_table, ["x", "y"]);
        assert_eq!(decoded.explicit_hash_key_table, ["5"]);
        let indexes: Vec<_> = decoded
            .records
            .iter()
            .map(|r| r.partition_key_index)
            .collect();
        assert_eq!(indexes, [Some(0), Some(1), Some(0), Some(0)]);
    }

    #[test]
    fn aggregate_is_routed_like_its_first_record() {
        let mut aggregator = Aggregator::new();
        aggregator.add("first", None, "a").expect("valid");
        aggregator
            .add("second", Some("1".into()), "b")
            .expect("valid");
        let aggregate = aggregator.flush().expect("pending");
        assert_eq!(aggregate.partition_key, "first");
        assert_eq!(
            aggregate.explicit_hash_key,
            partition_key_hash("first").to_string()
        );

        aggregator
            .add("third", Some("12345".into()), "c")
            .expect("valid");
        assert_eq!(
            aggregator.flush().expect("pending").explicit_hash_key,
            "12345"
        );
    }

    #[test]
    fn partition_key_hash_is_the_big_endian_md5() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(partition_key_hash(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn plain_records_pass_through() {
        let record = read(&b"just some json"[..]);
        assert!(passed_through(&deaggregate(record.clone()), &record));
        let empty = read(Bytes::new());
        assert!(passed_through(&deaggregate(empty.clone()), &empty));
    }

    #[test]
    fn corrupt_aggregates_pass_through_unchanged() {
        let good = proto::AggregatedRecord {
            partition_key_table: vec!["k".into()],
            explicit_hash_key_table: vec!["9".into()],
            records: vec![proto::Record {
                partition_key_index: Some(0),
                explicit_hash_key_index: Some(0),
                data: Some(Bytes::from_static(b"payload")),
                tags: vec![proto::Tag {
                    key: Some("t".into()),
                    value: None,
                }],
            }],
        };
        assert_eq!(deaggregate(read(framed(&good))).len(), 1);
        assert!(deaggregate(read(framed(&good)))[0].aggregated);

        let with = |change: fn(&mut proto::Record)| {
            let mut body = good.clone();
            change(&mut body.records[0]);
            framed(&body)
        };
        let mut bad_digest = framed(&good).to_vec();
        let last = bad_digest.len() - 1;
        bad_digest[last] ^= 1;
        let undecodable: Bytes = {
            // Wire type 7 does not exist, so no protobuf parser accepts this body.
            let body = [0x0f, 0x01];
            [&MAGIC[..], &body, &Md5::digest(body)[..]].concat().into()
        };
        let cases: Vec<(&str, Bytes)> = vec![
            ("magic only", Bytes::from_static(&MAGIC)),
            (
                "magic and a digest, no body",
                [&MAGIC[..], &[0; DIGEST_SIZE]].concat().into(),
            ),
            ("digest mismatch", bad_digest.into()),
            ("undecodable protobuf", undecodable),
            (
                "partition key index past the table",
                with(|r| r.partition_key_index = Some(1)),
            ),
            (
                "huge partition key index",
                with(|r| r.partition_key_index = Some(u64::MAX)),
            ),
            (
                "explicit hash key index past the table",
                with(|r| r.explicit_hash_key_index = Some(3)),
            ),
            (
                "missing partition key index",
                with(|r| r.partition_key_index = None),
            ),
            ("missing data", with(|r| r.data = None)),
            ("tag without a key", with(|r| r.tags[0].key = None)),
        ];
        for (name, data) in cases {
            let record = read(data);
            assert!(
                passed_through(&deaggregate(record.clone()), &record),
                "{name}"
            );
        }
    }

    #[test]
    fn an_aggregate_without_records_yields_none() {
        // Nothing to deliver, as in the Java KCL; the batch's other records still advance the
        // checkpoint past it.
        let no_records = proto::AggregatedRecord {
            partition_key_table: vec!["k".into()],
            ..Default::default()
        };
        assert!(deaggregate(read(framed(&no_records))).is_empty());
        // An empty body is too short to be an aggregate at all, as the Java KCL judges it.
        let empty = read(framed(&proto::AggregatedRecord::default()));
        assert!(passed_through(&deaggregate(empty.clone()), &empty));
    }

    #[test]
    fn records_are_split_at_the_size_limit_counting_the_partition_key() {
        let max = 1000;
        let mut aggregator = Aggregator::with_max_record_size(max);
        let records: Vec<_> = (0..100)
            .map(|i| (format!("key-{}", i % 7), None, vec![i as u8; 37]))
            .collect();
        let aggregates = aggregate_all(&mut aggregator, &records);
        assert!(aggregates.len() > 1);
        for (i, aggregate) in aggregates.iter().enumerate() {
            let size = aggregate.data.len() + aggregate.partition_key.len();
            assert!(size <= max, "{size} > {max}");
            // Filled: one more 37-byte record (about 45 bytes with framing) would not have fit.
            // The last one holds whatever was left.
            assert!(
                i == aggregates.len() - 1 || size > max - 60,
                "{size} is wastefully small"
            );
        }
        let data: Vec<_> = aggregates
            .into_iter()
            .flat_map(|a| deaggregate(read(a.data)))
            .map(|u| u.data.to_vec())
            .collect();
        assert_eq!(data, records.into_iter().map(|r| r.2).collect::<Vec<_>>());
    }

    #[test]
    fn the_default_limit_is_the_kinesis_record_limit() {
        let mut aggregator = Aggregator::new();
        let big = vec![0u8; 600 * 1024];
        assert_eq!(aggregator.add("k", None, big.clone()), Ok(None));
        let first = aggregator
            .add("k", None, big)
            .expect("valid")
            .expect("first is full");
        assert!(first.data.len() + first.partition_key.len() <= MAX_RECORD_SIZE);
        assert_eq!(
            Aggregator::with_max_record_size(usize::MAX).max_record_size,
            MAX_RECORD_SIZE
        );
    }

    #[test]
    fn invalid_user_records_are_refused_and_leave_the_pending_aggregate_alone() {
        let mut aggregator = Aggregator::with_max_record_size(2000);
        aggregator.add("k", None, "kept").expect("valid");
        assert_eq!(
            aggregator.add("", None, "x"),
            Err(AggregationError::InvalidPartitionKey(0))
        );
        assert_eq!(
            aggregator.add("é".repeat(257), None, "x"),
            Err(AggregationError::InvalidPartitionKey(257))
        );
        assert!(aggregator.add("é".repeat(256), None, "x").is_ok());
        for ehk in [
            "",
            "-1",
            "+1",
            "01",
            "1.0",
            "abc",
            "340282366920938463463374607431768211456",
        ] {
            assert_eq!(
                aggregator.add("k", Some(ehk.into()), "x"),
                Err(AggregationError::InvalidExplicitHashKey(ehk.into())),
                "{ehk:?}"
            );
        }
        assert!(
            aggregator
                .add("k", Some(u128::MAX.to_string()), "x")
                .is_ok()
        );
        assert!(matches!(
            aggregator.add("k", None, vec![0; 2000]),
            Err(AggregationError::RecordTooLarge { max: 2000, .. })
        ));
        let kept = aggregator.flush().expect("pending");
        assert_eq!(kept.user_records, 3);
        assert_eq!(&deaggregate(read(kept.data))[0].data[..], b"kept");
    }

    #[test]
    fn shard_filter_drops_an_aggregate_with_any_sub_record_outside_the_range() {
        let mut aggregator = Aggregator::new();
        aggregator
            .add("a", Some("100".into()), "in")
            .expect("valid");
        aggregator
            .add("b", Some("200".into()), "edge")
            .expect("valid");
        let aggregate = read(aggregator.flush().expect("pending").data);
        let range = |start, end| HashKeyRange {
            starting_hash_key: start,
            ending_hash_key: end,
        };

        assert_eq!(
            deaggregate_for_shard(aggregate.clone(), &range(100, 200)).len(),
            2
        );
        assert!(deaggregate_for_shard(aggregate.clone(), &range(101, u128::MAX)).is_empty());
        assert!(deaggregate_for_shard(aggregate.clone(), &range(0, 199)).is_empty());

        // Without an explicit hash key, the partition key's MD5 decides.
        aggregator.add("pk", None, "x").expect("valid");
        let by_pk = read(aggregator.flush().expect("pending").data);
        let h = partition_key_hash("pk");
        assert_eq!(deaggregate_for_shard(by_pk.clone(), &range(h, h)).len(), 1);
        assert!(deaggregate_for_shard(by_pk, &range(h.wrapping_add(1), u128::MAX)).is_empty());

        // Plain records carry no sub-record keys and are never filtered.
        let plain = read(&b"plain"[..]);
        assert!(passed_through(
            &deaggregate_for_shard(plain.clone(), &range(0, 0)),
            &plain
        ));
    }

    #[test]
    fn shard_filter_passes_through_an_aggregate_with_a_malformed_explicit_hash_key() {
        let body = proto::AggregatedRecord {
            partition_key_table: vec!["k".into()],
            explicit_hash_key_table: vec!["not a number".into()],
            records: vec![proto::Record {
                partition_key_index: Some(0),
                explicit_hash_key_index: Some(0),
                data: Some(Bytes::from_static(b"d")),
                tags: Vec::new(),
            }],
        };
        let record = read(framed(&body));
        // Unfiltered, the key is just a string to hand on; filtered, it cannot be placed.
        assert!(deaggregate(record.clone())[0].aggregated);
        assert!(passed_through(
            &deaggregate_for_shard(record.clone(), &whole_range()),
            &record
        ));
    }

    #[test]
    fn user_records_convert_to_processor_records_at_their_position() {
        let mut aggregator = Aggregator::new();
        aggregator.add("a", None, "0").expect("valid");
        aggregator.add("b", None, "1").expect("valid");
        let users = deaggregate(read(aggregator.flush().expect("pending").data));
        let second = Record::from(users[1].clone());
        assert_eq!(
            second.position(),
            crate::ExtendedSequenceNumber::record("4242".parse().expect("digits"), 1)
        );
        assert_eq!(second.partition_key, "b");
    }

    fn user_record() -> impl Strategy<Value = (String, Option<String>, Vec<u8>)> {
        (
            // A small alphabet so that keys repeat and the tables are shared.
            "[abc]{1,3}|[\\PC]{1,20}",
            proptest::option::of(any::<u128>().prop_map(|k| k.to_string())),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
    }

    proptest! {
        #[test]
        fn aggregate_then_deaggregate_is_byte_exact(
            records in proptest::collection::vec(user_record(), 1..60),
            max in 600usize..4000,
        ) {
            let mut aggregator = Aggregator::with_max_record_size(max);
            let aggregates = aggregate_all(&mut aggregator, &records);
            let mut got = Vec::new();
            for aggregate in aggregates {
                prop_assert!(aggregate.data.len() + aggregate.partition_key.len() <= max);
                let users = deaggregate_for_shard(read(aggregate.data), &whole_range());
                prop_assert_eq!(users.len(), aggregate.user_records);
                for (i, user) in users.into_iter().enumerate() {
                    prop_assert!(user.aggregated);
                    prop_assert_eq!(user.sub_sequence_number, i as u64);
                    got.push((user.partition_key, user.explicit_hash_key, user.data.to_vec()));
                }
            }
            prop_assert_eq!(got, records);
        }

        #[test]
        fn arbitrary_bytes_pass_through(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let record = read(data);
            prop_assert!(passed_through(&deaggregate(record.clone()), &record));
        }

        #[test]
        fn arbitrary_bodies_with_a_valid_digest_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let data: Bytes = [&MAGIC[..], &body, &Md5::digest(&body)[..]].concat().into();
            let record = read(data);
            let users = deaggregate_for_shard(record.clone(), &whole_range());
            prop_assert!(
                passed_through(&users, &record) || users.iter().all(|u| u.aggregated),
                "either a pass-through or a decoded aggregate"
            );
        }

        #[test]
        fn a_flipped_bit_makes_an_aggregate_pass_through(
            records in proptest::collection::vec(user_record(), 1..10),
            bit in any::<proptest::sample::Index>(),
        ) {
            let mut aggregator = Aggregator::new();
            let aggregate = aggregate_all(&mut aggregator, &records).remove(0);
            let mut data = aggregate.data.to_vec();
            let bit = bit.index(data.len() * 8);
            data[bit / 8] ^= 1 << (bit % 8);
            let record = read(data);
            prop_assert!(passed_through(&deaggregate(record.clone()), &record));
        }

        #[test]
        fn shard_filter_keeps_an_aggregate_exactly_when_every_sub_record_is_in_range(
            keys in proptest::collection::vec(any::<u128>(), 1..10),
            a in any::<u128>(),
            b in any::<u128>(),
        ) {
            let shard = HashKeyRange { starting_hash_key: a.min(b), ending_hash_key: a.max(b) };
            let mut aggregator = Aggregator::new();
            for key in &keys {
                aggregator.add("k", Some(key.to_string()), "d").expect("valid");
            }
            let record = read(aggregator.flush().expect("pending").data);
            let kept = deaggregate_for_shard(record, &shard);
            let all_in = keys.iter().all(|k| (shard.starting_hash_key..=shard.ending_hash_key).contains(k));
            prop_assert_eq!(kept.len(), if all_in { keys.len() } else { 0 });
        }
    }

    /// The Rust half of `scripts/kpl-compat.sh` (does nothing unless `KPL_COMPAT_DIR` is set):
    /// de-aggregates what aws-kinesis-agg aggregated (`py-manifest.json`) and writes the outcome to
    /// `rs-results.json`, then aggregates the script's `cases.json` into `rs/*.bin` and
    /// `rs-manifest.json` for aws-kinesis-agg to de-aggregate.
    #[test]
    fn kpl_compat_files() {
        use serde_json::{Value, json};
        use std::path::Path;

        let Some(dir) = std::env::var_os("KPL_COMPAT_DIR") else {
            return;
        };
        let dir = Path::new(&dir);
        let load = |name: &str| -> Value {
            let text = std::fs::read_to_string(dir.join(name)).expect("written by kpl_compat.py");
            serde_json::from_str(&text).expect("valid JSON")
        };
        let text = |v: &Value| v.as_str().expect("a string").to_owned();
        let hex = |v: &Value| -> Vec<u8> {
            let s = v.as_str().expect("hex");
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits"))
                .collect()
        };

        // aws-kinesis-agg aggregated, we de-aggregate.
        let mut results = Vec::new();
        for input in load("py-manifest.json")["inputs"]
            .as_array()
            .expect("inputs")
        {
            let name = text(&input["name"]);
            let data = std::fs::read(dir.join(text(&input["file"]))).expect("aggregate file");
            let mut record = read(data);
            record.partition_key = text(&input["partition_key"]);
            let got: Vec<Value> = deaggregate(record)
                .into_iter()
                .map(|u| {
                    json!({
                        "pk": u.partition_key,
                        "ehk": u.explicit_hash_key,
                        "data": u.data.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                        "sub": u.sub_sequence_number,
                        "aggregated": u.aggregated,
                    })
                })
                .collect();
            let expected = input["expected"].as_array().expect("expected records");
            let ok = &got == expected;
            let detail = if ok {
                format!("{} user records", got.len())
            } else {
                format!("expected {expected:?}, got {got:?}")
            };
            results.push(json!({ "name": name, "ok": ok, "detail": detail }));
        }
        std::fs::write(
            dir.join("rs-results.json"),
            json!({ "results": results }).to_string(),
        )
        .expect("write rs-results.json");

        // We aggregate, aws-kinesis-agg de-aggregates.
        std::fs::create_dir_all(dir.join("rs")).expect("create rs/");
        let mut aggregates = Vec::new();
        for case in load("cases.json")["cases"].as_array().expect("cases") {
            let name = text(&case["name"]);
            let max = case["max_size"].as_u64().expect("max_size") as usize;
            let records: Vec<_> = case["records"]
                .as_array()
                .expect("records")
                .iter()
                .map(|r| {
                    (
                        text(&r["pk"]),
                        r["ehk"].as_str().map(String::from),
                        hex(&r["data"]),
                    )
                })
                .collect();
            let mut aggregator = Aggregator::with_max_record_size(max);
            for (i, aggregate) in aggregate_all(&mut aggregator, &records)
                .into_iter()
                .enumerate()
            {
                let file = format!("rs/{name}-{i}.bin");
                std::fs::write(dir.join(&file), &aggregate.data).expect("write aggregate");
                aggregates.push(json!({
                    "case": name,
                    "file": file,
                    "partition_key": aggregate.partition_key,
                    "explicit_hash_key": aggregate.explicit_hash_key,
                    "user_records": aggregate.user_records,
                }));
            }
        }
        std::fs::write(
            dir.join("rs-manifest.json"),
            json!({ "aggregates": aggregates }).to_string(),
        )
        .expect("write rs-manifest.json");

        let failed: Vec<_> = results.iter().filter(|r| r["ok"] != true).collect();
        assert!(
            failed.is_empty(),
            "de-aggregation differs from aws-kinesis-agg: {failed:#?}"
        );
    }
}
