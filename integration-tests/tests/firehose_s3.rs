//! Firehose to S3 (a local directory tree): objects appear with Firehose's keys and the records'
//! bytes, delimited and compressed as configured, when the buffer fills or its interval passes.

mod firehose_support;

use aws_sdk_firehose::types::{
    CompressionFormat, ExtendedS3DestinationUpdate, S3BackupMode, S3DestinationConfiguration,
};
use firehose_support::{
    buffered_s3, create_s3_stream, description, hints, record, update_s3_destination,
};
use integration_tests::{
    FIREHOSE_ROLE_ARN, TempDir, broker_with_firehose, files_under, newline_delimited,
    put_record_batch, wait_for_files,
};
use std::io::Read as _;

/// Checks `key` is `YYYY/MM/DD/HH/<stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid><ext>` after
/// `prefix`, with matching hour folders and name timestamp.
fn assert_default_key(key: &str, prefix: &str, stream: &str, version: u32, extension: &str) {
    let rest = key
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{key} starts with {prefix}"));
    let (folders, name) = rest.rsplit_once('/').unwrap();
    let folders: Vec<&str> = folders.split('/').collect();
    assert_eq!(folders.len(), 4, "{key}");
    let name = name
        .strip_suffix(extension)
        .unwrap_or_else(|| panic!("{key} ends with {extension}"));
    let tail = name
        .strip_prefix(&format!("{stream}-{version}-"))
        .unwrap_or_else(|| panic!("{key} names {stream} version {version}"));
    let parts: Vec<&str> = tail.splitn(7, '-').collect();
    assert_eq!(
        &parts[..4],
        &folders[..],
        "{key}: hour folders match the name's timestamp"
    );
    assert!(uuid_like(parts[6]), "{key} ends in a uuid");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn records_become_an_object_with_firehose_default_key() {
    let root = TempDir::new("fh-default");
    let (broker, client) = broker_with_firehose(&root).await;
    create_s3_stream(&client, "clicks", buffered_s3("my-bucket", 1, 1)).await;
    put_record_batch(&client, "clicks", &[b"one", b"two", b"three"]).await;
    let files = wait_for_files(&root.0, 1).await;
    assert_eq!(files.len(), 1);
    let (key, body) = &files[0];
    assert_default_key(key, "my-bucket/", "clicks", 1, "");
    // No delimiter unless AppendDelimiterToRecord: bytes are concatenated.
    assert_eq!(body, b"onetwothree");
    broker.shutdown().await;
}

#[tokio::test]
async fn delimiter_and_every_compression_format_round_trip() {
    let root = TempDir::new("fh-compression");
    let (broker, client) = broker_with_firehose(&root).await;
    let formats = [
        (CompressionFormat::Uncompressed, "plain", ""),
        (CompressionFormat::Gzip, "gzip", ".gz"),
        (CompressionFormat::Zip, "zip", ".zip"),
        (CompressionFormat::Snappy, "snappy", ".snappy"),
        (CompressionFormat::HadoopSnappy, "hsnappy", ".hsnappy"),
    ];
    for (format, bucket, _) in &formats {
        let config = buffered_s3(bucket, 1, 1)
            .compression_format(format.clone())
            .processing_configuration(newline_delimited());
        create_s3_stream(&client, bucket, config).await;
        put_record_batch(&client, bucket, &[br#"{"n":1}"#, br#"{"n":2}"#]).await;
    }
    let files = wait_for_files(&root.0, formats.len()).await;
    for (_, bucket, extension) in formats {
        let (key, body) = files
            .iter()
            .find(|(k, _)| k.starts_with(&format!("{bucket}/")))
            .unwrap_or_else(|| panic!("an object in {bucket}"));
        assert_default_key(key, &format!("{bucket}/"), bucket, 1, extension);
        let plain = decompress(extension, body);
        assert_eq!(plain, b"{\"n\":1}\n{\"n\":2}\n", "{key}");
    }
    broker.shutdown().await;
}

fn decompress(extension: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match extension {
        "" => out = body.to_vec(),
        ".gz" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        ".zip" => {
            let mut archive = zip::ZipArchive::new(std::io::Cursor::new(body)).unwrap();
            assert_eq!(archive.len(), 1);
            archive.by_index(0).unwrap().read_to_end(&mut out).unwrap();
        }
        ".snappy" => {
            snap::read::FrameDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        ".hsnappy" => {
            // Hadoop block format: [raw length][compressed length][raw snappy block]...
            let mut rest = body;
            while rest.len() >= 8 {
                let compressed = u32::from_be_bytes(rest[4..8].try_into().unwrap()) as usize;
                let block = snap::raw::Decoder::new()
                    .decompress_vec(&rest[8..8 + compressed])
                    .unwrap();
                out.extend(block);
                rest = &rest[8 + compressed..];
            }
        }
        other => panic!("unexpected extension {other}"),
    }
    out
}

#[tokio::test]
async fn a_full_buffer_is_delivered_at_once_and_the_rest_at_shutdown() {
    let root = TempDir::new("fh-size");
    let (broker, client) = broker_with_firehose(&root).await;
    // 1 MiB or 15 minutes: only size (or shutdown) can deliver within this test.
    create_s3_stream(&client, "big", buffered_s3("sized", 1, 900)).await;
    let first = vec![b'a'; 600 * 1024];
    let second = vec![b'b'; 600 * 1024];
    put_record_batch(&client, "big", &[&first, &second]).await;
    let files = wait_for_files(&root.0, 1).await;
    assert_eq!(files.len(), 1, "only the first MiB is due");
    assert_eq!(files[0].1, first);
    broker.shutdown().await;
    let files = files_under(&root.0);
    assert_eq!(files.len(), 2, "shutdown delivers what was buffered");
    let delivered: Vec<u8> = files.iter().flat_map(|(_, body)| body.clone()).collect();
    assert_eq!(delivered.len(), first.len() + second.len());
    assert!(files.iter().any(|(_, body)| *body == second));
}

#[tokio::test]
async fn a_small_buffer_is_delivered_when_its_interval_passes() {
    let root = TempDir::new("fh-interval");
    let (broker, client) = broker_with_firehose(&root).await;
    create_s3_stream(&client, "slow", buffered_s3("timed", 128, 1)).await;
    client
        .put_record()
        .delivery_stream_name("slow")
        .record(record("tick"))
        .send()
        .await
        .unwrap();
    let files = wait_for_files(&root.0, 1).await;
    assert_eq!(files[0].1, b"tick");
    broker.shutdown().await;
}

#[tokio::test]
async fn custom_prefixes_evaluate_timestamp_and_firehose_namespaces() {
    let root = TempDir::new("fh-prefix");
    let (broker, client) = broker_with_firehose(&root).await;
    let config = buffered_s3("lake", 1, 1)
        .prefix("events/year=!{timestamp:yyyy}/month=!{timestamp:MM}/!{firehose:random-string}/")
        .error_output_prefix("errors/!{firehose:error-output-type}/!{timestamp:yyyy}/");
    create_s3_stream(&client, "prefixed", config).await;
    put_record_batch(&client, "prefixed", &[b"x"]).await;
    let files = wait_for_files(&root.0, 1).await;
    let key = &files[0].0;
    let parts: Vec<&str> = key.split('/').collect();
    assert_eq!(parts[0], "lake");
    assert_eq!(parts[1], "events");
    assert!(
        parts[2].starts_with("year=") && parts[2].len() == 9,
        "{key}"
    );
    assert!(
        parts[3].starts_with("month=") && parts[3].len() == 8,
        "{key}"
    );
    assert_eq!(parts[4].len(), 11, "random-string is 11 characters: {key}");
    assert!(
        parts[5].starts_with("prefixed-1-"),
        "no hour folders when the prefix has a timestamp: {key}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn update_destination_bumps_the_version_in_object_names() {
    let root = TempDir::new("fh-update");
    let (broker, client) = broker_with_firehose(&root).await;
    create_s3_stream(&client, "evolving", buffered_s3("first", 1, 1)).await;
    let update = ExtendedS3DestinationUpdate::builder()
        .bucket_arn("arn:aws:s3:::second")
        .prefix("v2/")
        .build();
    update_s3_destination(&client, "evolving", "1", update)
        .await
        .expect("UpdateDestination succeeds");
    put_record_batch(&client, "evolving", &[b"after"]).await;
    let files = wait_for_files(&root.0, 1).await;
    assert_default_key(&files[0].0, "second/v2/", "evolving", 2, "");
    let description = description(&client, "evolving").await;
    assert_eq!(description.version_id(), "2");
    let s3 = description.destinations()[0]
        .extended_s3_destination_description()
        .unwrap();
    assert_eq!(s3.bucket_arn(), "arn:aws:s3:::second");
    assert_eq!(s3.prefix(), Some("v2/"));
    // Unchanged members keep their values.
    assert_eq!(s3.buffering_hints().unwrap().interval_in_seconds(), Some(1));
    broker.shutdown().await;
}

#[tokio::test]
async fn source_backup_keeps_the_records_as_they_arrived() {
    let root = TempDir::new("fh-backup");
    let (broker, client) = broker_with_firehose(&root).await;
    let backup = S3DestinationConfiguration::builder()
        .role_arn(FIREHOSE_ROLE_ARN)
        .bucket_arn("arn:aws:s3:::raw")
        .buffering_hints(hints(1, 1))
        .build()
        .unwrap();
    let config = buffered_s3("processed", 1, 1)
        .processing_configuration(newline_delimited())
        .s3_backup_mode(S3BackupMode::Enabled)
        .s3_backup_configuration(backup);
    create_s3_stream(&client, "backed", config).await;
    put_record_batch(&client, "backed", &[b"a", b"b"]).await;
    let files = wait_for_files(&root.0, 2).await;
    let body = |bucket: &str| {
        files
            .iter()
            .find(|(k, _)| k.starts_with(bucket))
            .map(|(_, b)| b.clone())
            .unwrap()
    };
    assert_eq!(body("processed/"), b"a\nb\n");
    assert_eq!(body("raw/"), b"ab");
    broker.shutdown().await;
}
