//! From stored fragments to MP4 samples: picks the H.264 track, checks its codec private data,
//! and lays the frames on one millisecond timeline (used by GetClip and HLS).

use super::api;
use super::fragments::{Fragment, FragmentStore, Frame};
use super::mkv::Track;
use super::mp4::{self, Sample, VideoTrack};
use crate::http::error::{ApiError, ApiResult};
use bytes::Bytes;
use std::sync::Arc;

/// The track HLS, DASH and GetClip play: track 1, which must be H.264 with an AVC configuration.
pub fn video_track(fragment: &Fragment) -> ApiResult<(u64, VideoTrack)> {
    let track: &Track = fragment
        .tracks
        .tracks
        .iter()
        .find(|t| t.track_type == 1 || t.number == 1)
        .ok_or_else(|| unsupported("The stream has no video track."))?;
    if !track.is_h264() {
        return Err(unsupported(&format!(
            "Codec {} is not supported; track 1 must be H.264 (V_MPEG4/ISO/AVC).",
            track.codec_id
        )));
    }
    if track.codec_private.is_empty() {
        return Err(ApiError::new(
            "MissingCodecPrivateDataException",
            "The H.264 track has no CodecPrivate (AVCDecoderConfigurationRecord).",
        ));
    }
    if track.codec_private.len() < 7 || track.codec_private[0] != 1 {
        return Err(ApiError::new(
            "InvalidCodecPrivateDataException",
            "The H.264 CodecPrivate is not an AVCDecoderConfigurationRecord.",
        ));
    }
    Ok((
        track.number,
        VideoTrack {
            width: u16::try_from(track.width).unwrap_or(u16::MAX),
            height: u16::try_from(track.height).unwrap_or(u16::MAX),
            avc_config: track.codec_private.clone(),
        },
    ))
}

fn unsupported(message: &str) -> ApiError {
    ApiError::new("UnsupportedStreamMediaTypeException", message)
}

/// The samples of one fragment's track (from its `frames`), decode times on the producer
/// clock (epoch ms).
pub fn fragment_samples(fragment: &Fragment, frames: &[Frame], track: u64) -> Vec<Sample> {
    let frames: Vec<(i64, bool, Bytes)> = frames
        .iter()
        .filter(|f| f.track == track)
        .map(|f| (f.offset_millis, f.is_keyframe(), f.data.clone()))
        .collect();
    let last_offset = frames.iter().map(|(pts, _, _)| *pts).max().unwrap_or(0);
    let last_duration = (fragment.duration_millis - last_offset).max(1) as u32;
    let first = frames.iter().map(|(pts, _, _)| *pts).min().unwrap_or(0);
    mp4::samples(
        &frames,
        fragment.producer_millis.saturating_add(first),
        last_duration,
    )
}

/// The samples of consecutive fragments (duplicates by producer timestamp dropped), and the
/// video track of the first, with decode times starting at 0; the frames are read from `store`.
pub fn clip_samples(
    store: &FragmentStore,
    fragments: &[Arc<Fragment>],
) -> ApiResult<(VideoTrack, Vec<Sample>)> {
    let first = fragments
        .first()
        .ok_or_else(|| api::not_found("No fragments were found in the requested time range."))?;
    let (number, track) = video_track(first)?;
    let origin = first.producer_millis;
    let mut samples = Vec::new();
    let mut previous = None;
    for fragment in fragments {
        if previous == Some(fragment.producer_millis) {
            continue;
        }
        previous = Some(fragment.producer_millis);
        let frames = store.frames(fragment)?;
        samples.extend(
            fragment_samples(fragment, &frames, number)
                .into_iter()
                .map(|mut s| {
                    s.decode_time = s.decode_time.saturating_sub(origin);
                    s
                }),
        );
    }
    Ok((track, samples))
}
