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

#[cfg(test)]
mod tests {
    use crate::video::hls::tests::{AUDIO_OFFSETS, stored_with_audio};
    use crate::video::mp4::tests::{boxes, u32_at};
    use crate::video::{mp4, remux};

    #[test]
    fn clips_of_h264_and_aac_have_a_video_and_a_sound_track() {
        let store = stored_with_audio(3);
        let tracks = remux::clip_samples(&store, &store.all()).expect("playable");
        let file = mp4::progressive(&tracks);
        assert_eq!(boxes(&file, b"trak").len(), 2);
        let handlers: Vec<&[u8]> = boxes(&file, b"hdlr").iter().map(|h| &h[8..12]).collect();
        assert_eq!(handlers, [b"vide", b"soun"]);
        assert_eq!(boxes(&file, b"smhd").len(), 1);
        assert_eq!(
            boxes(&file, b"stss").len(),
            1,
            "audio frames are all sync samples"
        );
        // mdhd: timescale at 12, duration at 16.
        let mdhd = boxes(&file, b"mdhd");
        assert_eq!((u32_at(mdhd[0], 12), u32_at(mdhd[0], 16)), (1000, 3000));
        let audio_frames = 3 * AUDIO_OFFSETS.len() as u32;
        // Up to the last fragment's start (2 s), then its 43 frames; the 68-sample gaps at
        // fragment starts are within millisecond rounding, so they may be absorbed (±2 ms).
        assert_eq!(u32_at(mdhd[1], 12), 44_100);
        let expected = 2 * 44_100 + 43 * 1024;
        assert!(
            u32_at(mdhd[1], 16).abs_diff(expected) <= 89,
            "{}",
            u32_at(mdhd[1], 16)
        );
        // stsz: sample counts at 8.
        let stsz = boxes(&file, b"stsz");
        assert_eq!((u32_at(stsz[0], 8), u32_at(stsz[1], 8)), (6, audio_frames));
        // The audio stts starts with a run of 1024-sample frames.
        let stts = boxes(&file, b"stts");
        assert!(u32_at(stts[1], 8) >= 42 && u32_at(stts[1], 12) == 1024);
        let mp4a = boxes(&file, b"mp4a");
        assert_eq!(
            u32_at(mp4a[0], 24),
            44_100 << 16,
            "sample rate in the entry"
        );
        // stco: the audio chunk follows the video's six 6-byte frames.
        let stco = boxes(&file, b"stco");
        assert_eq!(u32_at(stco[1], 8), u32_at(stco[0], 8) + 6 * 6);
    }
}
