//! GetClip: the fragments of a time range as one progressive MP4 file (H.264, and AAC when
//! the stream has it).

use super::api::{self, invalid_argument};
use super::archive::Selection;
use super::fragments::FragmentStore;
use super::{mp4, remux};
use crate::http::error::ApiResult;

/// What GetClip answers in `Content-Type`.
pub const CONTENT_TYPE: &str = "video/mp4";
/// A clip holds at most this many fragments ...
pub const MAX_FRAGMENTS: usize = 200;
/// ... and at most this many bytes of media.
pub const MAX_BYTES: u64 = 100 * 1024 * 1024;
/// The range may span at most 24 hours.
const MAX_RANGE_MILLIS: i64 = 24 * 3_600_000;

/// Builds the MP4 for a GetClip request.
pub fn get_clip(store: &FragmentStore, input: &api::GetClipInput) -> ApiResult<Vec<u8>> {
    let selection = Selection::from_selector(
        input.clip_fragment_selector.as_ref(),
        "ClipFragmentSelector",
    )?;
    if selection.end.saturating_sub(selection.start) > MAX_RANGE_MILLIS {
        return Err(invalid_argument(
            "EndTimestamp must be within 24 hours of StartTimestamp.",
        ));
    }
    let mut fragments = selection.fragments(store);
    fragments.sort_by_key(|f| (f.producer_millis, f.sequence));
    let mut bytes = 0;
    let fragments: Vec<_> = fragments
        .into_iter()
        .take(MAX_FRAGMENTS)
        .take_while(|f| {
            bytes += f.size_bytes;
            bytes <= MAX_BYTES
        })
        .collect();
    Ok(mp4::progressive(&remux::clip_samples(store, &fragments)?))
}
