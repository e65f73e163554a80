//! GetMedia and GetMediaForFragmentList: stored fragments out as Matroska chunks.
//!
//! Each fragment becomes one standalone MKV document (consumers split the payload on the EBML
//! header): EBML header, Segment, Info, the producer's Tracks, a Tags element with
//! `AWS_KINESISVIDEO_FRAGMENT_NUMBER`, `_SERVER_TIMESTAMP` and `_PRODUCER_TIMESTAMP` (the AWS
//! parser library builds fragment metadata from it when the Cluster starts), the Cluster, the
//! producer's metadata Tags, and a Tags element with `_MILLIS_BEHIND_NOW` and
//! `_CONTINUATION_TOKEN` (which marks the fragment complete for that library).

use super::api::{self, invalid_argument, seconds_to_millis};
use super::fragments::{Fragment, FragmentStore, Frame, parse_number};
use super::mkv::write;
use crate::http::error::ApiResult;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::time::Duration;

/// What GetMedia answers in `Content-Type`.
pub const CONTENT_TYPE: &str = "video/webm";
/// The application named in each chunk's Info.
const APP: &str = "local-broker";
/// How long GetMedia waits for a new fragment before it ends the response.
pub const TAIL_IDLE: Duration = Duration::from_secs(2);

/// Formats epoch milliseconds as KVS tag values do: seconds with three decimals.
fn seconds_text(millis: i64) -> String {
    format!("{}.{:03}", millis.div_euclid(1000), millis.rem_euclid(1000))
}

/// One fragment (with its `frames`) as a standalone MKV chunk.
pub fn chunk(fragment: &Fragment, frames: &[Frame], now_millis: i64) -> Bytes {
    let size: usize = frames.iter().map(|f| f.data.len() + 16).sum();
    let mut out = Vec::with_capacity(size + fragment.tracks.raw.len() + 512);
    write::ebml_header(&mut out);
    write::segment_start(&mut out, APP, &fragment.tracks);
    let number = fragment.number();
    let (server, producer) = (
        seconds_text(fragment.server_millis),
        seconds_text(fragment.producer_millis),
    );
    write::tags(
        &mut out,
        [
            ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", number.as_str()),
            ("AWS_KINESISVIDEO_SERVER_TIMESTAMP", server.as_str()),
            ("AWS_KINESISVIDEO_PRODUCER_TIMESTAMP", producer.as_str()),
        ],
    );
    write::cluster(
        &mut out,
        fragment.producer_millis.max(0) as u64,
        frames.iter().map(|f| {
            let relative = f.offset_millis.clamp(i16::MIN.into(), i16::MAX.into()) as i16;
            (f.track, relative, f.flags, f.data.as_ref())
        }),
    );
    for (name, value) in &fragment.metadata {
        write::tags(&mut out, [(name.as_str(), value.as_str())]);
    }
    let behind = (now_millis - fragment.server_millis).max(0).to_string();
    write::tags(
        &mut out,
        [
            ("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", behind.as_str()),
            ("AWS_KINESISVIDEO_CONTINUATION_TOKEN", number.as_str()),
        ],
    );
    Bytes::from(out)
}

/// Where GetMedia starts: the sequence number of the last fragment *not* to send, or the
/// first fragment to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    After(u64),
    At(u64),
    /// Nothing stored matches yet: send what arrives from now on.
    Newer,
}

/// Resolves a StartSelector against the stored fragments.
fn start(selector: &api::StartSelector, store: &FragmentStore) -> ApiResult<Start> {
    let kind = selector
        .start_selector_type
        .as_deref()
        .ok_or_else(|| invalid_argument("StartSelector.StartSelectorType must be specified."))?;
    let number = |text: Option<&String>, member: &str| -> ApiResult<u64> {
        let text = text.ok_or_else(|| invalid_argument(format!("{member} must be specified.")))?;
        parse_number(text)
            .ok_or_else(|| invalid_argument(format!("{member} {text} is not a fragment number.")))
    };
    let all = store.all();
    let at_or_newer =
        |found: Option<&Arc<Fragment>>| found.map_or(Start::Newer, |f| Start::At(f.sequence));
    Ok(match kind {
        "EARLIEST" => at_or_newer(all.first()),
        "NOW" => at_or_newer(all.last()),
        "FRAGMENT_NUMBER" => Start::After(number(
            selector.after_fragment_number.as_ref(),
            "AfterFragmentNumber",
        )?),
        "CONTINUATION_TOKEN" => Start::After(number(
            selector.continuation_token.as_ref(),
            "ContinuationToken",
        )?),
        "SERVER_TIMESTAMP" | "PRODUCER_TIMESTAMP" => {
            let at = seconds_to_millis(
                selector
                    .start_timestamp
                    .ok_or_else(|| invalid_argument("StartTimestamp must be specified."))?,
            );
            let time = |f: &Fragment| {
                if kind == "SERVER_TIMESTAMP" {
                    f.server_millis
                } else {
                    f.producer_millis
                }
            };
            // The fragment containing the time, else the first one after it.
            at_or_newer(
                all.iter()
                    .find(|f| {
                        time(f) <= at && at < time(f).saturating_add(f.duration_millis.max(1))
                    })
                    .or_else(|| all.iter().find(|f| time(f) >= at)),
            )
        }
        other => {
            return Err(invalid_argument(format!(
                "StartSelectorType {other} is not one of FRAGMENT_NUMBER, SERVER_TIMESTAMP, PRODUCER_TIMESTAMP, NOW, EARLIEST, CONTINUATION_TOKEN."
            )));
        }
    })
}

/// The GetMedia payload: chunks from the selected start, then new fragments as they arrive,
/// until none has arrived for [`TAIL_IDLE`]. A fragment that cannot be read ends the payload.
pub fn get_media(
    store: Arc<FragmentStore>,
    selector: &api::StartSelector,
    clock: Arc<dyn crate::clock::Clock>,
) -> ApiResult<BoxStream<'static, Bytes>> {
    let start = start(selector, &store)?;
    let mut newest = store.subscribe();
    let last_sent = match start {
        Start::After(sequence) => sequence,
        Start::At(sequence) => sequence.saturating_sub(1),
        Start::Newer => *newest.borrow_and_update(),
    };
    let state = (store, newest, last_sent, clock);
    Ok(Box::pin(futures::stream::unfold(
        state,
        |(store, mut newest, last_sent, clock)| async move {
            loop {
                newest.borrow_and_update();
                if let Some(next) = store.next_after(last_sent) {
                    let frames = store.frames(&next).ok()?;
                    let chunk = chunk(&next, &frames, clock.now_millis());
                    return Some((chunk, (store, newest, next.sequence, clock)));
                }
                match tokio::time::timeout(TAIL_IDLE, newest.changed()).await {
                    Ok(Ok(())) => continue,
                    _ => return None,
                }
            }
        },
    )))
}

/// The GetMediaForFragmentList payload: one chunk per listed fragment, in the order listed.
pub fn fragment_list(
    store: &FragmentStore,
    numbers: &[String],
    now_millis: i64,
) -> ApiResult<Vec<u8>> {
    if numbers.is_empty() || numbers.len() > 1000 {
        return Err(invalid_argument(
            "Fragments must list 1 to 1000 fragment numbers.",
        ));
    }
    let mut out = Vec::new();
    for number in numbers {
        let fragment = store.by_number(number)?;
        let frames = store.frames(&fragment)?;
        out.extend_from_slice(&chunk(&fragment, &frames, now_millis));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::ebml::{self, Read, id};
    use crate::video::ingest::tests::video_with_stream;
    use crate::video::ingest::{Session, TimecodeType};
    use crate::video::mkv::tests::MkvBuilder;
    use crate::video::mkv::{Demuxer, Event};
    use futures::StreamExt;

    fn store_with_two_fragments() -> Arc<FragmentStore> {
        let (video, stream) = video_with_stream(1);
        let mut session = Session::new(video, stream.clone(), TimecodeType::Absolute, 0);
        session.push(
            &MkvBuilder::new(&[1])
                .cluster(1_000, &[(1, 0), (1, 40)])
                .tag("camera", "front")
                .cluster(2_000, &[(1, 0)])
                .bytes,
        );
        session.finish();
        Arc::clone(&stream.fragments)
    }

    /// The chunks of a payload, split on the EBML header like consumers do, each demuxed.
    fn demux_chunks(payload: &[u8]) -> Vec<Vec<Event>> {
        let mut chunks = Vec::new();
        let mut at = 0;
        while at < payload.len() {
            let Read::Done(header, len) = ebml::read_header(&payload[at..]) else {
                panic!("chunk header")
            };
            assert_eq!(header.id, id::EBML);
            let next = payload[at + len..]
                .windows(4)
                .position(|w| w == [0x1A, 0x45, 0xDF, 0xA3])
                .map_or(payload.len(), |p| at + len + p);
            let mut demuxer = Demuxer::new(1 << 20);
            let mut events = Vec::new();
            demuxer
                .push(&payload[at..next], &mut events)
                .expect("valid chunk");
            demuxer.finish(&mut events).expect("complete chunk");
            chunks.push(events);
            at = next;
        }
        chunks
    }

    fn tag_values(events: &[Event]) -> Vec<(String, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Tags(pairs) => Some(pairs.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[tokio::test]
    async fn get_media_sends_one_tagged_chunk_per_fragment_from_earliest() {
        let store = store_with_two_fragments();
        let selector: api::StartSelector =
            api::parse(br#"{"StartSelectorType":"EARLIEST"}"#).expect("selector");
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let payload: Vec<u8> = get_media(Arc::clone(&store), &selector, clock)
            .expect("stream")
            .collect::<Vec<_>>()
            .await
            .concat();
        let chunks = demux_chunks(&payload);
        assert_eq!(chunks.len(), 2);
        let first = &chunks[0];
        assert!(first.contains(&Event::ClusterTimecode(1_000)));
        assert_eq!(
            first
                .iter()
                .filter(|e| matches!(e, Event::Block(_)))
                .count(),
            2
        );
        let tags = tag_values(first);
        let names: Vec<&str> = tags.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "AWS_KINESISVIDEO_FRAGMENT_NUMBER",
                "AWS_KINESISVIDEO_SERVER_TIMESTAMP",
                "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP",
                "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW",
                "AWS_KINESISVIDEO_CONTINUATION_TOKEN",
            ]
        );
        assert_eq!(tags[2].1, "1.000");
        assert_eq!(tags[0].1, store.all()[0].number());
        // The metadata sent before the second Cluster belongs to the second fragment.
        assert!(tag_values(&chunks[1]).contains(&("camera".into(), "front".into())));
    }

    #[tokio::test]
    async fn selectors_pick_where_get_media_starts() {
        let store = store_with_two_fragments();
        let all = store.all();
        let first_of = |json: String| {
            let selector: api::StartSelector = api::parse(json.as_bytes()).expect("selector");
            start(&selector, &store)
        };
        assert_eq!(
            first_of(r#"{"StartSelectorType":"NOW"}"#.into()),
            Ok(Start::At(all[1].sequence))
        );
        assert_eq!(
            first_of(format!(
                r#"{{"StartSelectorType":"FRAGMENT_NUMBER","AfterFragmentNumber":"{}"}}"#,
                all[0].number()
            )),
            Ok(Start::After(all[0].sequence))
        );
        assert_eq!(
            first_of(r#"{"StartSelectorType":"PRODUCER_TIMESTAMP","StartTimestamp":1.5}"#.into()),
            Ok(Start::At(all[1].sequence))
        );
        assert_eq!(
            first_of(r#"{"StartSelectorType":"FRAGMENT_NUMBER"}"#.into()).map_err(|e| e.code),
            Err("InvalidArgumentException")
        );
    }

    #[tokio::test]
    async fn get_media_tails_fragments_that_arrive_later() {
        let (video, stream) = video_with_stream(1);
        let selector: api::StartSelector =
            api::parse(br#"{"StartSelectorType":"NOW"}"#).expect("selector");
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let mut media = get_media(Arc::clone(&stream.fragments), &selector, clock).expect("stream");
        let mut session = Session::new(video, stream, TimecodeType::Absolute, 0);
        session.push(&MkvBuilder::new(&[1]).cluster(7_000, &[(1, 0)]).bytes);
        session.finish();
        let chunk = media.next().await.expect("the new fragment");
        assert!(demux_chunks(&chunk)[0].contains(&Event::ClusterTimecode(7_000)));
    }

    #[test]
    fn fragment_list_keeps_the_requested_order_and_rejects_unknown_numbers() {
        let store = store_with_two_fragments();
        let all = store.all();
        let payload =
            fragment_list(&store, &[all[1].number(), all[0].number()], 0).expect("payload");
        let chunks = demux_chunks(&payload);
        assert!(chunks[0].contains(&Event::ClusterTimecode(2_000)));
        assert!(chunks[1].contains(&Event::ClusterTimecode(1_000)));
        let missing = fragment_list(&store, &["1".into()], 0).expect_err("unknown");
        assert_eq!(missing.code, "ResourceNotFoundException");
    }
}
