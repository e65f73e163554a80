//! ISO BMFF (MP4) boxes for H.264 video and AAC audio: a progressive file for GetClip, and
//! fragmented-MP4 init and media segments for HLS and DASH.
//!
//! Only what these outputs need is written: an AVC video track with timescale 1 ms (KVS
//! fragments carry millisecond timecodes), samples in decode order with composition offsets for
//! B-frames, and optionally an AAC audio track whose timescale is its sample rate. Matroska
//! stores H.264 as length-prefixed NAL units with an AVCDecoderConfigurationRecord, exactly
//! MP4's `avc1`/`avcC` layout, and AAC as raw frames with an AudioSpecificConfig, exactly
//! `mp4a`/`esds`'s, so samples are copied without rewriting.

use bytes::Bytes;

/// Ticks per second of the movie and of video tracks: milliseconds.
pub const TIMESCALE: u32 = 1000;

/// PCM samples per AAC frame (AAC-LC; what every KVS producer sends).
pub const AAC_FRAME_SAMPLES: u32 = 1024;

/// The video track: its size and AVCDecoderConfigurationRecord (Matroska CodecPrivate).
#[derive(Debug, Clone)]
pub struct VideoTrack {
    pub width: u16,
    pub height: u16,
    pub avc_config: Bytes,
}

impl VideoTrack {
    /// The RFC 6381 codec string, e.g. `avc1.42C01E`, from the configuration record.
    pub fn codec(&self) -> String {
        match self.avc_config.get(1..4) {
            Some(p) => format!("avc1.{:02X}{:02X}{:02X}", p[0], p[1], p[2]),
            None => "avc1".to_owned(),
        }
    }
}

/// The audio track: AAC with its AudioSpecificConfig (Matroska CodecPrivate).
#[derive(Debug, Clone)]
pub struct AudioTrack {
    /// Samples per second: the track's timescale.
    pub sample_rate: u32,
    pub channels: u16,
    pub audio_config: Bytes,
}

impl AudioTrack {
    /// The RFC 6381 codec string, e.g. `mp4a.40.2` for AAC-LC, from the configuration.
    pub fn codec(&self) -> String {
        match self.audio_config.first() {
            Some(first) if first >> 3 != 31 => format!("mp4a.40.{}", first >> 3),
            _ => "mp4a.40.2".to_owned(),
        }
    }
}

/// What a track carries.
#[derive(Debug, Clone)]
pub enum Media {
    Video(VideoTrack),
    Audio(AudioTrack),
}

/// One output track: its `track_ID` and media.
#[derive(Debug, Clone)]
pub struct MediaTrack {
    pub id: u32,
    pub media: Media,
}

impl MediaTrack {
    /// Ticks per second of the track's sample times.
    pub fn timescale(&self) -> u32 {
        match &self.media {
            Media::Video(_) => TIMESCALE,
            Media::Audio(audio) => audio.sample_rate.max(1),
        }
    }

    /// The RFC 6381 codec string.
    pub fn codec(&self) -> String {
        match &self.media {
            Media::Video(video) => video.codec(),
            Media::Audio(audio) => audio.codec(),
        }
    }
}

/// One sample in decode order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode time in milliseconds on the output's timeline.
    pub decode_time: i64,
    pub duration: u32,
    /// Presentation time minus decode time (never negative).
    pub composition_offset: u32,
    pub keyframe: bool,
    pub data: Bytes,
}

/// Turns frames in decode order with presentation times into samples with decode times:
/// the sorted presentation times, shifted so no frame is presented before it is decoded.
/// `start` is the decode time of the first sample; `last_duration` the duration of the last.
pub fn samples(frames: &[(i64, bool, Bytes)], start: i64, last_duration: u32) -> Vec<Sample> {
    let mut sorted: Vec<i64> = frames.iter().map(|(pts, _, _)| *pts).collect();
    sorted.sort_unstable();
    let delay = frames
        .iter()
        .zip(&sorted)
        .map(|((pts, _, _), dts)| dts.saturating_sub(*pts))
        .max()
        .unwrap_or(0)
        .max(0);
    let base = sorted.first().copied().unwrap_or(0);
    let decode: Vec<i64> = sorted
        .iter()
        .map(|dts| dts.saturating_sub(base).saturating_sub(delay))
        .collect();
    frames
        .iter()
        .enumerate()
        .map(|(i, (pts, keyframe, data))| {
            let duration = match decode.get(i + 1) {
                Some(next) => clamp_u32(next.saturating_sub(decode[i])),
                None => last_duration,
            };
            Sample {
                decode_time: start.saturating_add(decode[i].saturating_add(delay)),
                duration,
                composition_offset: clamp_u32(pts.saturating_sub(base).saturating_sub(decode[i])),
                keyframe: *keyframe,
                data: data.clone(),
            }
        })
        .collect()
}

/// Turns AAC frames `(time in ms, data)` in order into samples whose decode times are in
/// `sample_rate` ticks from `origin_millis`. Matroska times are whole milliseconds, so a frame's
/// exact start is only known to within a millisecond; a gap that is one frame give or take that
/// rounding is taken to be exactly one frame (1024 samples), so durations do not jitter and
/// the timeline does not drift. Real gaps are kept. The last frame lasts one frame.
pub fn audio_samples(frames: &[(i64, Bytes)], origin_millis: i64, sample_rate: u32) -> Vec<Sample> {
    let rate = i64::from(sample_rate.max(1));
    let ticks = |millis: i64| {
        i64::try_from(i128::from(millis.saturating_sub(origin_millis)) * i128::from(rate) / 1000)
            .unwrap_or(i64::MAX)
    };
    let frame = i64::from(AAC_FRAME_SAMPLES);
    let rounding = (rate * 2 / 1000 + 1).unsigned_abs();
    let mut starts: Vec<i64> = Vec::with_capacity(frames.len());
    for (millis, _) in frames {
        let exact = ticks(*millis);
        let start = match starts.last() {
            Some(previous) if exact.abs_diff(previous.saturating_add(frame)) <= rounding => {
                previous.saturating_add(frame)
            }
            _ => exact,
        };
        starts.push(start);
    }
    frames
        .iter()
        .enumerate()
        .map(|(i, (_, data))| Sample {
            decode_time: starts[i],
            duration: starts.get(i + 1).map_or(AAC_FRAME_SAMPLES, |next| {
                clamp_u32(next.saturating_sub(starts[i]))
            }),
            composition_offset: 0,
            keyframe: true,
            data: data.clone(),
        })
        .collect()
}

/// A tick count as the 32-bit field it is written to: negative as 0, too large as the most.
fn clamp_u32(ticks: i64) -> u32 {
    u32::try_from(ticks.max(0)).unwrap_or(u32::MAX)
}

/// Appends a box whose content `fill` writes.
fn boxed(out: &mut Vec<u8>, kind: &[u8; 4], fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(kind);
    fill(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends a full box (version and flags first).
fn full(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    fill: impl FnOnce(&mut Vec<u8>),
) {
    boxed(out, kind, |b| {
        b.extend_from_slice(&((u32::from(version) << 24) | flags).to_be_bytes());
        fill(b);
    });
}

fn u16be(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn u32be(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn ftyp(out: &mut Vec<u8>, major: &[u8; 4], compatible: &[&[u8; 4]]) {
    boxed(out, b"ftyp", |b| {
        b.extend_from_slice(major);
        u32be(b, 0x200);
        for brand in compatible {
            b.extend_from_slice(*brand);
        }
    });
}

/// Appends an MPEG-4 descriptor (ISO 14496-1) with a 4-byte size field.
fn descriptor(out: &mut Vec<u8>, tag: u8, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut data = Vec::new();
    fill(&mut data);
    let size = data.len() as u32;
    out.push(tag);
    out.extend_from_slice(&[
        0x80 | ((size >> 21) & 0x7F) as u8,
        0x80 | ((size >> 14) & 0x7F) as u8,
        0x80 | ((size >> 7) & 0x7F) as u8,
        (size & 0x7F) as u8,
    ]);
    out.extend_from_slice(&data);
}

/// `duration` ticks of `timescale` in milliseconds (the movie timescale).
fn to_movie(duration: u32, timescale: u32) -> u32 {
    (u64::from(duration) * u64::from(TIMESCALE) / u64::from(timescale.max(1))) as u32
}

fn mvhd(out: &mut Vec<u8>, duration: u32, next_track_id: u32) {
    full(out, b"mvhd", 0, 0, |b| {
        u32be(b, 0);
        u32be(b, 0);
        u32be(b, TIMESCALE);
        u32be(b, duration);
        u32be(b, 0x0001_0000);
        u16be(b, 0x0100);
        b.extend_from_slice(&[0; 10]);
        MATRIX.iter().for_each(|m| u32be(b, *m));
        b.extend_from_slice(&[0; 24]);
        u32be(b, next_track_id);
    });
}

/// The sample table boxes that follow `stsd`; empty for fragmented output.
struct Table<'a> {
    samples: &'a [Sample],
    chunk_offset: u32,
}

/// A track; `duration` is in the track's timescale.
fn trak(out: &mut Vec<u8>, track: &MediaTrack, duration: u32, table: Option<Table<'_>>) {
    let (width, height, volume) = match &track.media {
        Media::Video(video) => (video.width, video.height, 0),
        Media::Audio(_) => (0, 0, 0x0100),
    };
    boxed(out, b"trak", |trak| {
        full(trak, b"tkhd", 0, 3, |b| {
            u32be(b, 0);
            u32be(b, 0);
            u32be(b, track.id);
            u32be(b, 0);
            u32be(b, to_movie(duration, track.timescale()));
            b.extend_from_slice(&[0; 8]);
            u16be(b, 0);
            u16be(b, 0);
            u16be(b, volume);
            u16be(b, 0);
            MATRIX.iter().for_each(|m| u32be(b, *m));
            u32be(b, u32::from(width) << 16);
            u32be(b, u32::from(height) << 16);
        });
        boxed(trak, b"mdia", |mdia| {
            full(mdia, b"mdhd", 0, 0, |b| {
                u32be(b, 0);
                u32be(b, 0);
                u32be(b, track.timescale());
                u32be(b, duration);
                u16be(b, 0x55C4); // "und"
                u16be(b, 0);
            });
            let (handler, name): (&[u8; 4], &[u8]) = match track.media {
                Media::Video(_) => (b"vide", b"VideoHandler\0"),
                Media::Audio(_) => (b"soun", b"SoundHandler\0"),
            };
            full(mdia, b"hdlr", 0, 0, |b| {
                u32be(b, 0);
                b.extend_from_slice(handler);
                b.extend_from_slice(&[0; 12]);
                b.extend_from_slice(name);
            });
            boxed(mdia, b"minf", |minf| {
                match track.media {
                    Media::Video(_) => full(minf, b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8])),
                    Media::Audio(_) => full(minf, b"smhd", 0, 0, |b| u32be(b, 0)),
                }
                boxed(minf, b"dinf", |dinf| {
                    full(dinf, b"dref", 0, 0, |b| {
                        u32be(b, 1);
                        full(b, b"url ", 0, 1, |_| {});
                    });
                });
                boxed(minf, b"stbl", |stbl| {
                    stsd(stbl, track);
                    // Every AAC frame is a sync sample, which no `stss` says.
                    let sync_table = matches!(track.media, Media::Video(_));
                    sample_table(stbl, table, sync_table);
                });
            });
        });
    });
}

fn stsd(out: &mut Vec<u8>, track: &MediaTrack) {
    full(out, b"stsd", 0, 0, |b| {
        u32be(b, 1);
        match &track.media {
            Media::Video(video) => avc1(b, video),
            Media::Audio(audio) => mp4a(b, track.id, audio),
        }
    });
}

fn avc1(out: &mut Vec<u8>, track: &VideoTrack) {
    boxed(out, b"avc1", |e| {
        e.extend_from_slice(&[0; 6]);
        u16be(e, 1);
        e.extend_from_slice(&[0; 16]);
        u16be(e, track.width);
        u16be(e, track.height);
        u32be(e, 0x0048_0000);
        u32be(e, 0x0048_0000);
        u32be(e, 0);
        u16be(e, 1);
        e.extend_from_slice(&[0; 32]);
        u16be(e, 0x0018);
        u16be(e, 0xFFFF);
        boxed(e, b"avcC", |c| c.extend_from_slice(&track.avc_config));
    });
}

/// The AAC sample entry: an AudioSampleEntry whose `esds` carries the AudioSpecificConfig.
fn mp4a(out: &mut Vec<u8>, id: u32, track: &AudioTrack) {
    boxed(out, b"mp4a", |e| {
        e.extend_from_slice(&[0; 6]);
        u16be(e, 1);
        e.extend_from_slice(&[0; 8]);
        u16be(e, track.channels);
        u16be(e, 16);
        u32be(e, 0);
        // 16.16 fixed point; rates above 65535 Hz do not fit, and players read the esds.
        u32be(
            e,
            if track.sample_rate <= 0xFFFF {
                track.sample_rate << 16
            } else {
                0
            },
        );
        full(e, b"esds", 0, 0, |b| {
            descriptor(b, 0x03, |es| {
                u16be(es, u16::try_from(id).unwrap_or(0));
                es.push(0);
                descriptor(es, 0x04, |config| {
                    config.push(0x40); // MPEG-4 Audio
                    config.push(0x15); // audio stream
                    config.extend_from_slice(&[0; 3]);
                    u32be(config, 0);
                    u32be(config, 0);
                    descriptor(config, 0x05, |specific| {
                        specific.extend_from_slice(&track.audio_config)
                    });
                });
                descriptor(es, 0x06, |sl| sl.push(0x02));
            });
        });
    });
}

fn sample_table(stbl: &mut Vec<u8>, table: Option<Table<'_>>, sync_table: bool) {
    let Some(Table {
        samples,
        chunk_offset,
    }) = table
    else {
        for kind in [b"stts", b"stsc", b"stco"] {
            full(stbl, kind, 0, 0, |b| u32be(b, 0));
        }
        full(stbl, b"stsz", 0, 0, |b| {
            u32be(b, 0);
            u32be(b, 0);
        });
        return;
    };
    run_length_box(stbl, b"stts", samples.iter().map(|s| s.duration));
    if samples.iter().any(|s| s.composition_offset != 0) {
        run_length_box(stbl, b"ctts", samples.iter().map(|s| s.composition_offset));
    }
    if sync_table {
        stss(stbl, samples);
    }
    full(stbl, b"stsc", 0, 0, |b| {
        u32be(b, 1);
        u32be(b, 1);
        u32be(b, samples.len() as u32);
        u32be(b, 1);
    });
    full(stbl, b"stsz", 0, 0, |b| {
        u32be(b, 0);
        u32be(b, samples.len() as u32);
        samples.iter().for_each(|s| u32be(b, s.data.len() as u32));
    });
    full(stbl, b"stco", 0, 0, |b| {
        u32be(b, 1);
        u32be(b, chunk_offset);
    });
}

fn stss(stbl: &mut Vec<u8>, samples: &[Sample]) {
    full(stbl, b"stss", 0, 0, |b| {
        let sync: Vec<u32> = (1..)
            .zip(samples)
            .filter(|(_, s)| s.keyframe)
            .map(|(i, _)| i)
            .collect();
        u32be(b, sync.len() as u32);
        sync.iter().for_each(|i| u32be(b, *i));
    });
}

/// A box of run-length encoded per-sample values (`stts`, `ctts`): `(count, value)` entries.
fn run_length_box(out: &mut Vec<u8>, kind: &[u8; 4], values: impl Iterator<Item = u32>) {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for value in values {
        match runs.last_mut() {
            Some((count, last)) if *last == value => *count += 1,
            _ => runs.push((1, value)),
        }
    }
    full(out, kind, 0, 0, |b| {
        u32be(b, runs.len() as u32);
        for (count, value) in runs {
            u32be(b, count);
            u32be(b, value);
        }
    });
}

fn total_duration(samples: &[Sample]) -> u32 {
    match (samples.first(), samples.last()) {
        (Some(first), Some(last)) => clamp_u32(
            last.decode_time
                .saturating_add(i64::from(last.duration))
                .saturating_sub(first.decode_time),
        ),
        _ => 0,
    }
}

/// A complete, non-fragmented MP4 file (GetClip): each track with its samples, as one chunk
/// after the previous track's.
pub fn progressive(tracks: &[(MediaTrack, Vec<Sample>)]) -> Vec<u8> {
    let movie_duration = tracks
        .iter()
        .map(|(track, samples)| to_movie(total_duration(samples), track.timescale()))
        .max()
        .unwrap_or(0);
    let next_track_id = tracks.iter().map(|(t, _)| t.id).max().unwrap_or(0) + 1;
    let moov = |mdat_data: u32| {
        let mut moov = Vec::new();
        boxed(&mut moov, b"moov", |m| {
            mvhd(m, movie_duration, next_track_id);
            let mut chunk_offset = mdat_data;
            for (track, samples) in tracks {
                let table = Table {
                    samples,
                    chunk_offset,
                };
                trak(m, track, total_duration(samples), Some(table));
                chunk_offset += samples.iter().map(|s| s.data.len() as u32).sum::<u32>();
            }
        });
        moov
    };
    let mut out = Vec::new();
    ftyp(&mut out, b"isom", &[b"isom", b"iso2", b"avc1", b"mp41"]);
    // The moov's size does not depend on the offsets it records, so measure it first.
    let offset = out.len() + moov(0).len() + 8;
    out.extend_from_slice(&moov(offset as u32));
    boxed(&mut out, b"mdat", |b| {
        for (_, samples) in tracks {
            samples.iter().for_each(|s| b.extend_from_slice(&s.data));
        }
    });
    out
}

/// The fMP4 initialization segment of one track: `ftyp` and a `moov` with no samples and `mvex`.
pub fn init_segment(track: &MediaTrack) -> Vec<u8> {
    let mut out = Vec::new();
    ftyp(&mut out, b"iso5", &[b"iso5", b"iso6", b"mp41"]);
    boxed(&mut out, b"moov", |m| {
        mvhd(m, 0, track.id + 1);
        trak(m, track, 0, None);
        boxed(m, b"mvex", |mvex| {
            full(mvex, b"trex", 0, 0, |b| {
                u32be(b, track.id);
                u32be(b, 1);
                u32be(b, 0);
                u32be(b, 0);
                u32be(b, 0);
            });
        });
    });
    out
}

/// One fMP4 media segment (`moof` + `mdat`) holding `samples` of the track `track_id`.
pub fn media_segment(sequence: u32, track_id: u32, samples: &[Sample]) -> Vec<u8> {
    const TRUN_FLAGS: u32 = 0x001 | 0x100 | 0x200 | 0x400 | 0x800;
    let base = samples.first().map_or(0, |s| s.decode_time.max(0) as u64);
    let moof = |data_offset: u32| {
        let mut moof = Vec::new();
        boxed(&mut moof, b"moof", |m| {
            full(m, b"mfhd", 0, 0, |b| u32be(b, sequence));
            boxed(m, b"traf", |traf| {
                full(traf, b"tfhd", 0, 0x02_0000, |b| u32be(b, track_id));
                full(traf, b"tfdt", 1, 0, |b| {
                    b.extend_from_slice(&base.to_be_bytes())
                });
                full(traf, b"trun", 0, TRUN_FLAGS, |b| {
                    u32be(b, samples.len() as u32);
                    u32be(b, data_offset);
                    for sample in samples {
                        u32be(b, sample.duration);
                        u32be(b, sample.data.len() as u32);
                        u32be(
                            b,
                            if sample.keyframe {
                                0x0200_0000
                            } else {
                                0x0101_0000
                            },
                        );
                        u32be(b, sample.composition_offset);
                    }
                });
            });
        });
        moof
    };
    let offset = moof(0).len() + 8;
    let mut out = moof(offset as u32);
    boxed(&mut out, b"mdat", |b| {
        samples.iter().for_each(|s| b.extend_from_slice(&s.data));
    });
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The payload of each `kind` box in `file` (boxes found by their type bytes).
    pub(crate) fn boxes<'a>(file: &'a [u8], kind: &[u8; 4]) -> Vec<&'a [u8]> {
        file.windows(4)
            .enumerate()
            .filter(|(at, w)| *w == kind && *at >= 4)
            .map(|(at, _)| {
                let size = u32::from_be_bytes(file[at - 4..at].try_into().expect("4")) as usize;
                &file[at + 4..at - 4 + size]
            })
            .collect()
    }

    /// The big-endian 32-bit field `at` bytes into `data`.
    pub(crate) fn u32_at(data: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"))
    }

    fn frame(pts: i64, keyframe: bool) -> (i64, bool, Bytes) {
        (pts, keyframe, Bytes::from_static(&[0, 0, 0, 1, 0x65]))
    }

    #[test]
    fn b_frames_get_decode_times_before_their_presentation() {
        // Decode order I P B B with presentation 0, 120, 40, 80.
        let frames = [
            frame(0, true),
            frame(120, false),
            frame(40, false),
            frame(80, false),
        ];
        let samples = samples(&frames, 1000, 40);
        let decode: Vec<i64> = samples.iter().map(|s| s.decode_time).collect();
        assert_eq!(decode, [1000, 1040, 1080, 1120]);
        for (sample, (pts, _, _)) in samples.iter().zip(&frames) {
            assert_eq!(
                sample.decode_time - 1000 + i64::from(sample.composition_offset) - 40,
                *pts
            );
        }
    }

    /// Reads the top-level boxes: `(type, size)`.
    fn top_level(file: &[u8]) -> Vec<(String, usize)> {
        let mut boxes = Vec::new();
        let mut at = 0;
        while at + 8 <= file.len() {
            let size =
                u32::from_be_bytes([file[at], file[at + 1], file[at + 2], file[at + 3]]) as usize;
            boxes.push((
                String::from_utf8_lossy(&file[at + 4..at + 8]).into_owned(),
                size,
            ));
            assert!(size >= 8);
            at += size;
        }
        assert_eq!(at, file.len(), "boxes tile the file");
        boxes
    }

    #[test]
    fn progressive_files_are_ftyp_moov_mdat_with_the_chunk_offset_at_the_samples() {
        let track = VideoTrack {
            width: 320,
            height: 240,
            avc_config: Bytes::from_static(&[1, 0x42, 0xC0, 0x1E, 0xFF]),
        };
        let samples = samples(&[frame(0, true), frame(40, false)], 0, 40);
        let file = progressive(&[(
            MediaTrack {
                id: 1,
                media: Media::Video(track.clone()),
            },
            samples,
        )]);
        let boxes = top_level(&file);
        let names: Vec<&str> = boxes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ftyp", "moov", "mdat"]);
        let stco = file.windows(4).position(|w| w == b"stco").expect("stco");
        let offset = u32::from_be_bytes(file[stco + 12..stco + 16].try_into().expect("4 bytes"));
        assert_eq!(offset as usize, boxes[0].1 + boxes[1].1 + 8);
        assert_eq!(
            &file[offset as usize..offset as usize + 5],
            &[0, 0, 0, 1, 0x65]
        );
        assert_eq!(track.codec(), "avc1.42C01E");
    }

    #[test]
    fn aac_frames_last_1024_samples_despite_millisecond_rounding_and_gaps_stay() {
        // 44.1 kHz frames are 23.22 ms apart; Matroska rounds them to whole ms.
        let data = Bytes::from_static(&[0x21, 0x10]);
        let frames: Vec<(i64, Bytes)> = [1000, 1023, 1046, 1070, 1500]
            .iter()
            .map(|ms| (*ms, data.clone()))
            .collect();
        let samples = audio_samples(&frames, 1000, 44_100);
        let decode: Vec<i64> = samples.iter().map(|s| s.decode_time).collect();
        assert_eq!(decode, [0, 1024, 2048, 3072, 22_050]);
        let durations: Vec<u32> = samples.iter().map(|s| s.duration).collect();
        assert_eq!(durations, [1024, 1024, 1024, 18_978, 1024]);
        assert!(
            samples
                .iter()
                .all(|s| s.keyframe && s.composition_offset == 0)
        );
        let audio = AudioTrack {
            sample_rate: 44_100,
            channels: 1,
            audio_config: Bytes::from_static(&[0x12, 0x08]),
        };
        assert_eq!(audio.codec(), "mp4a.40.2");
    }

    #[test]
    fn media_segments_point_trun_at_their_mdat() {
        let samples = samples(&[frame(0, true), frame(40, false)], 2000, 40);
        let segment = media_segment(3, 1, &samples);
        let boxes = top_level(&segment);
        assert_eq!(boxes[0].0, "moof");
        let trun = segment.windows(4).position(|w| w == b"trun").expect("trun");
        let offset = u32::from_be_bytes(segment[trun + 12..trun + 16].try_into().expect("4 bytes"));
        assert_eq!(offset as usize, boxes[0].1 + 8);
    }
}
