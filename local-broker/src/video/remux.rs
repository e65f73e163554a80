//! From stored fragments to MP4 samples: picks the H.264 track (and the AAC track, if there is
//! one), checks their codec private data, and lays their frames on one timeline, video in
//! milliseconds and audio in its sample rate (used by GetClip, HLS and DASH).

use super::api;
use super::fragments::{Fragment, FragmentStore, Frame};
use super::mkv::Track;
use super::mp4::{self, AudioTrack, Media, MediaTrack, Sample, VideoTrack};
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

/// The audio track played beside the video: the first AAC track, with its AudioSpecificConfig.
/// `None` when the stream has no AAC track (other audio codecs are left out of the output).
pub fn audio_track(fragment: &Fragment) -> ApiResult<Option<(u64, AudioTrack)>> {
    let Some(track) = fragment.tracks.tracks.iter().find(|t| t.is_aac()) else {
        return Ok(None);
    };
    if track.codec_private.is_empty() {
        return Err(ApiError::new(
            "MissingCodecPrivateDataException",
            "The AAC track has no CodecPrivate (AudioSpecificConfig).",
        ));
    }
    let (config_rate, config_channels) =
        audio_specific_config(&track.codec_private).ok_or_else(|| {
            ApiError::new(
                "InvalidCodecPrivateDataException",
                "The AAC CodecPrivate is not an AudioSpecificConfig.",
            )
        })?;
    // The configuration's rate is the one AAC frames are counted in (HE-AAC producers may
    // declare the doubled output rate in SamplingFrequency).
    let sample_rate = config_rate.unwrap_or(track.sample_rate);
    if sample_rate == 0 {
        return Err(ApiError::new(
            "InvalidCodecPrivateDataException",
            "The AAC track declares no sampling frequency.",
        ));
    }
    let channels = match track.channels {
        0 => config_channels,
        n => u16::try_from(n).unwrap_or(2),
    };
    Ok(Some((
        track.number,
        AudioTrack {
            sample_rate,
            channels: channels.max(1),
            audio_config: track.codec_private.clone(),
        },
    )))
}

/// The sampling frequency (when the config names one) and channel configuration of an
/// AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1), or `None` if it is too short to be one.
fn audio_specific_config(config: &[u8]) -> Option<(Option<u32>, u16)> {
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    let bits = config
        .iter()
        .take(6)
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        << (8 * (8 - config.len().min(6)));
    if config.len() < 2 {
        return None;
    }
    let field = |at: u32, len: u32| ((bits << at) >> (64 - len)) as u32;
    let mut at = 5;
    if field(0, 5) == 31 {
        at += 6; // escaped object type
    }
    let index = field(at, 4);
    at += 4;
    let rate = if index == 15 {
        at += 24;
        (config.len() >= 5).then(|| field(at - 24, 24))
    } else {
        RATES.get(index as usize).copied()
    };
    Some((rate, field(at, 4) as u16))
}

/// The tracks GetClip, HLS and DASH play, with their Matroska track numbers: the video track
/// (output track 1) and, when the stream has one, the AAC track (output track 2).
pub fn playable_tracks(fragment: &Fragment) -> ApiResult<Vec<(u64, MediaTrack)>> {
    let (number, video) = video_track(fragment)?;
    let mut tracks = vec![(
        number,
        MediaTrack {
            id: 1,
            media: Media::Video(video),
        },
    )];
    if let Some((number, audio)) = audio_track(fragment)? {
        tracks.push((
            number,
            MediaTrack {
                id: 2,
                media: Media::Audio(audio),
            },
        ));
    }
    Ok(tracks)
}

fn unsupported(message: &str) -> ApiError {
    ApiError::new("UnsupportedStreamMediaTypeException", message)
}

/// The samples of one fragment's track (from its `frames`), decode times on the producer
/// clock: epoch ms for video, epoch sample counts for audio.
pub fn fragment_samples(
    fragment: &Fragment,
    frames: &[Frame],
    number: u64,
    track: &MediaTrack,
) -> Vec<Sample> {
    match &track.media {
        Media::Video(_) => video_samples(fragment, frames, number),
        Media::Audio(audio) => mp4::audio_samples(
            &audio_frames(fragment, frames, number),
            0,
            audio.sample_rate,
        ),
    }
}

fn video_samples(fragment: &Fragment, frames: &[Frame], track: u64) -> Vec<Sample> {
    let frames: Vec<(i64, bool, Bytes)> = frames
        .iter()
        .filter(|f| f.track == track)
        .map(|f| (f.offset_millis, f.is_keyframe(), f.data.clone()))
        .collect();
    let last_offset = frames.iter().map(|(pts, _, _)| *pts).max().unwrap_or(0);
    let first = frames.iter().map(|(pts, _, _)| *pts).min().unwrap_or(0);
    let end = first + fragment.track_duration_millis(track);
    let last_duration = (end - last_offset).max(1) as u32;
    mp4::samples(
        &frames,
        fragment.producer_millis.saturating_add(first),
        last_duration,
    )
}

/// A fragment's frames of an audio track: `(producer time in ms, data)`.
fn audio_frames(fragment: &Fragment, frames: &[Frame], track: u64) -> Vec<(i64, Bytes)> {
    frames
        .iter()
        .filter(|f| f.track == track)
        .map(|f| {
            (
                fragment.producer_millis.saturating_add(f.offset_millis),
                f.data.clone(),
            )
        })
        .collect()
}

/// The tracks of consecutive fragments (duplicates by producer timestamp dropped) with their
/// samples, as the first fragment declares them, with decode times starting at 0 at its
/// producer timestamp; the frames are read from `store`.
pub fn clip_samples(
    store: &FragmentStore,
    fragments: &[Arc<Fragment>],
) -> ApiResult<Vec<(MediaTrack, Vec<Sample>)>> {
    let first = fragments
        .first()
        .ok_or_else(|| api::not_found("No fragments were found in the requested time range."))?;
    let tracks = playable_tracks(first)?;
    let origin = first.producer_millis;
    let mut video = Vec::new();
    let mut audio = Vec::new();
    let mut previous = None;
    for fragment in fragments {
        if previous == Some(fragment.producer_millis) {
            continue;
        }
        previous = Some(fragment.producer_millis);
        let frames = store.frames(fragment)?;
        for (number, track) in &tracks {
            match track.media {
                Media::Video(_) => {
                    video.extend(video_samples(fragment, &frames, *number).into_iter().map(
                        |mut s| {
                            s.decode_time = s.decode_time.saturating_sub(origin);
                            s
                        },
                    ))
                }
                Media::Audio(_) => audio.extend(audio_frames(fragment, &frames, *number)),
            }
        }
    }
    Ok(tracks
        .into_iter()
        .map(|(_, track)| {
            let samples = match &track.media {
                Media::Video(_) => std::mem::take(&mut video),
                // One run over the whole clip, so fragment boundaries do not jitter.
                Media::Audio(config) => mp4::audio_samples(&audio, origin, config.sample_rate),
            };
            (track, samples)
        })
        .collect())
}
