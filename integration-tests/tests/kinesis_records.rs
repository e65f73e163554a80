//! Producing and consuming through the real aws-sdk-kinesis client: routing by hash key, every
//! iterator type, and nothing lost or reordered under concurrent writers.

use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, Shard, ShardIteratorType};
use integration_tests::{broker_with_kinesis, create_stream, get_records, shard_iterator};
use std::collections::{HashMap, HashSet};

async fn shards(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<Shard> {
    client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap()
        .shards
        .unwrap_or_default()
}

/// Reads a shard from an iterator until a read comes back empty.
async fn drain(client: &aws_sdk_kinesis::Client, mut it: String) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let page = get_records(client, &it).await;
        let records = page.records;
        if records.is_empty() {
            return out;
        }
        for r in records {
            out.push((r.sequence_number, r.data.into_inner()));
        }
        match page.next_shard_iterator {
            Some(next) => it = next,
            None => return out,
        }
    }
}

#[tokio::test]
async fn records_route_to_the_shard_owning_their_hash_key() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "routing", 4).await;
    let shards = shards(&client, "routing").await;
    for shard in &shards {
        let range = shard.hash_key_range.as_ref().unwrap();
        let put = client
            .put_record()
            .stream_name("routing")
            .partition_key("ignored-when-explicit")
            .explicit_hash_key(&range.ending_hash_key)
            .data(Blob::new("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(put.shard_id, shard.shard_id);
    }
    // Without an explicit hash key, MD5 of the partition key decides.
    let key = "customer-42";
    let hash = u128::from_be_bytes(md5_digest(key.as_bytes()));
    let expected = shards
        .iter()
        .find(|s| {
            let r = s.hash_key_range.as_ref().unwrap();
            r.starting_hash_key.parse::<u128>().unwrap() <= hash
                && hash <= r.ending_hash_key.parse::<u128>().unwrap()
        })
        .unwrap();
    let put = client
        .put_record()
        .stream_name("routing")
        .partition_key(key)
        .data(Blob::new("y"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.shard_id, expected.shard_id);
}

/// MD5 computed independently of the broker, so routing is checked against the definition.
fn md5_digest(input: &[u8]) -> [u8; 16] {
    // A compact RFC 1321 implementation; the broker uses the md-5 crate.
    let s: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32)
        .collect();
    let (mut a0, mut b0, mut c0, mut d0) =
        (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(s[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, word) in [a0, b0, c0, d0].iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    out
}

#[test]
fn md5_reference_matches_rfc_1321() {
    assert_eq!(
        md5_digest(b"abc"),
        0x900150983cd24fb0d6963f7d28e17f72u128.to_be_bytes()
    );
}

#[tokio::test]
async fn every_iterator_type_starts_where_it_says() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "iterators", 1).await;
    let shard = "shardId-000000000000";
    let mut sequences = Vec::new();
    for i in 0..5 {
        let put = client
            .put_record()
            .stream_name("iterators")
            .partition_key("k")
            .data(Blob::new(format!("r{i}")))
            .send()
            .await
            .unwrap();
        sequences.push(put.sequence_number);
    }
    let latest = shard_iterator(
        &client,
        "iterators",
        shard,
        ShardIteratorType::Latest,
        None,
        None,
    )
    .await;
    let data = |records: Vec<(String, Vec<u8>)>| -> Vec<String> {
        records
            .into_iter()
            .map(|(_, d)| String::from_utf8(d).unwrap())
            .collect()
    };

    let all = drain(
        &client,
        shard_iterator(
            &client,
            "iterators",
            shard,
            ShardIteratorType::TrimHorizon,
            None,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(data(all.clone()), ["r0", "r1", "r2", "r3", "r4"]);
    assert_eq!(
        all.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(),
        sequences
    );

    let at = shard_iterator(
        &client,
        "iterators",
        shard,
        ShardIteratorType::AtSequenceNumber,
        Some(&sequences[2]),
        None,
    )
    .await;
    assert_eq!(data(drain(&client, at).await), ["r2", "r3", "r4"]);

    let after = shard_iterator(
        &client,
        "iterators",
        shard,
        ShardIteratorType::AfterSequenceNumber,
        Some(&sequences[2]),
        None,
    )
    .await;
    assert_eq!(data(drain(&client, after).await), ["r3", "r4"]);

    // AT_TIMESTAMP in the past reads everything; in the future, nothing yet.
    let past = DateTime::from_secs(0);
    let from_start = shard_iterator(
        &client,
        "iterators",
        shard,
        ShardIteratorType::AtTimestamp,
        None,
        Some(past),
    )
    .await;
    assert_eq!(drain(&client, from_start).await.len(), 5);
    let future = DateTime::from_secs(4_000_000_000);
    let from_future = shard_iterator(
        &client,
        "iterators",
        shard,
        ShardIteratorType::AtTimestamp,
        None,
        Some(future),
    )
    .await;
    assert!(drain(&client, from_future).await.is_empty());

    // LATEST, taken before the next put, sees exactly the records written after it.
    client
        .put_record()
        .stream_name("iterators")
        .partition_key("k")
        .data(Blob::new("r5"))
        .send()
        .await
        .unwrap();
    assert_eq!(data(drain(&client, latest).await), ["r5"]);
}

#[tokio::test]
async fn get_records_honours_limit_and_reports_lag() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "limits", 1).await;
    let entries: Vec<PutRecordsRequestEntry> = (0..20)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key("k")
                .data(Blob::new(vec![i as u8; 10]))
                .build()
                .unwrap()
        })
        .collect();
    client
        .put_records()
        .stream_name("limits")
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    let it = shard_iterator(
        &client,
        "limits",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
        None,
        None,
    )
    .await;
    let page = client
        .get_records()
        .shard_iterator(&it)
        .limit(7)
        .send()
        .await
        .unwrap();
    assert_eq!(page.records.len(), 7);
    assert!(page.millis_behind_latest.is_some());
    let rest = drain(&client, page.next_shard_iterator.unwrap()).await;
    assert_eq!(rest.len(), 13);
    // Caught up: no lag.
    let it = shard_iterator(
        &client,
        "limits",
        "shardId-000000000000",
        ShardIteratorType::Latest,
        None,
        None,
    )
    .await;
    let page = client
        .get_records()
        .shard_iterator(&it)
        .send()
        .await
        .unwrap();
    assert_eq!(page.millis_behind_latest, Some(0));
    assert!(
        page.next_shard_iterator.is_some(),
        "an open shard always has a next iterator"
    );
}

/// Sequence numbers are decimal strings of up to 129 digits: order them as numbers.
fn numeric(sequence: &String) -> (usize, &String) {
    (sequence.len(), sequence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing_and_keep_per_shard_order() {
    let (_broker, client) = broker_with_kinesis().await;
    create_stream(&client, "concurrent", 3).await;
    const WRITERS: usize = 6;
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 50;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for batch in 0..BATCHES {
                let entries: Vec<PutRecordsRequestEntry> = (0..PER_BATCH)
                    .map(|i| {
                        PutRecordsRequestEntry::builder()
                            .partition_key(format!("w{writer}-k{}", i % 7))
                            .data(Blob::new(format!("{writer}:{batch}:{i}")))
                            .build()
                            .unwrap()
                    })
                    .collect();
                let out = client
                    .put_records()
                    .stream_name("concurrent")
                    .set_records(Some(entries))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(out.failed_record_count, Some(0));
                for (i, r) in out.records.into_iter().enumerate() {
                    acknowledged.push((
                        r.shard_id.unwrap(),
                        r.sequence_number.unwrap(),
                        format!("{writer}:{batch}:{i}"),
                    ));
                }
                // Single puts interleave with batches from other writers.
                let single = client
                    .put_record()
                    .stream_name("concurrent")
                    .partition_key(format!("w{writer}-single"))
                    .data(Blob::new(format!("{writer}:{batch}:single")))
                    .send()
                    .await
                    .unwrap();
                acknowledged.push((
                    single.shard_id,
                    single.sequence_number,
                    format!("{writer}:{batch}:single"),
                ));
            }
            acknowledged
        }));
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    assert_eq!(acknowledged.len(), WRITERS * BATCHES * (PER_BATCH + 1));
    let unique: HashSet<(&String, &String)> = acknowledged.iter().map(|(s, q, _)| (s, q)).collect();
    assert_eq!(
        unique.len(),
        acknowledged.len(),
        "sequence numbers are never reused"
    );

    let mut read: HashMap<(String, String), String> = HashMap::new();
    for shard in shards(&client, "concurrent").await {
        let it = shard_iterator(
            &client,
            "concurrent",
            &shard.shard_id,
            ShardIteratorType::TrimHorizon,
            None,
            None,
        )
        .await;
        let records = drain(&client, it).await;
        let sequences: Vec<(usize, &String)> = records.iter().map(|(s, _)| numeric(s)).collect();
        assert!(
            sequences.windows(2).all(|w| w[0] < w[1]),
            "sequence numbers strictly increase within a shard"
        );
        for (seq, data) in records {
            read.insert(
                (shard.shard_id.clone(), seq),
                String::from_utf8(data).unwrap(),
            );
        }
    }
    assert_eq!(
        read.len(),
        acknowledged.len(),
        "everything acknowledged is readable"
    );
    for (shard, seq, data) in &acknowledged {
        assert_eq!(read.get(&(shard.clone(), seq.clone())), Some(data));
    }
    // Per partition key, the read order (sequence order) is the write order.
    /// (sequence as a number, batch, position in batch)
    type Written = ((usize, String), usize, usize);
    let mut by_key: HashMap<String, Vec<Written>> = HashMap::new();
    for ((_, seq), data) in &read {
        let parts: Vec<&str> = data.split(':').collect();
        let (writer, batch, item) = (parts[0], parts[1], parts[2]);
        let (key, position) = match item.parse::<usize>() {
            Ok(i) => (format!("w{writer}-k{}", i % 7), i),
            Err(_) => (format!("w{writer}-single"), 0),
        };
        by_key.entry(key).or_default().push((
            (seq.len(), seq.clone()),
            batch.parse().unwrap(),
            position,
        ));
    }
    for (key, mut records) in by_key {
        records.sort();
        let written: Vec<(usize, usize)> = records.iter().map(|r| (r.1, r.2)).collect();
        let mut expected = written.clone();
        expected.sort();
        assert_eq!(
            written, expected,
            "records of key {key} are read in write order"
        );
    }
}
