//! HLS and DASH playback: GetHLSStreamingSessionURL and GetDASHStreamingSessionURL, and the
//! playlists, manifests and fMP4 segments their URLs lead to (`/hls/v1/getHLSMasterPlaylist.m3u8`,
//! `getHLSMediaPlaylist.m3u8`, `/dash/v1/getDASHManifest.mpd`, `getMP4InitFragment.mp4`,
//! `getMP4MediaFragment.mp4`), in LIVE, LIVE_REPLAY and ON_DEMAND modes. Each KVS fragment is
//! one media segment per track, remuxed from the stored H.264 (and AAC) frames.
//!
//! Tracks are served separately, as KVS does: `TrackNumber=1` is the video, `TrackNumber=2`
//! the AAC audio when the stream has it. The HLS master playlist names the audio as an
//! `EXT-X-MEDIA` rendition of the video variant; the DASH manifest has an AdaptationSet each.

use super::api::{self, StreamRef, invalid_argument, seconds_to_millis};
use super::archive::{Selection, TimestampKind};
use super::fragments::{Fragment, FragmentStore, fragment_not_found};
use super::{mp4, remux};
use crate::clock::civil_from_days;
use crate::http::error::{ApiError, ApiResult};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Content types of what the HLS endpoints serve.
pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
pub const MP4_TYPE: &str = "video/mp4";
pub const DASH_TYPE: &str = "application/dash+xml";

/// How a session picks fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaybackMode {
    /// The newest fragments, refreshed as new ones arrive.
    Live,
    /// From a start time onwards, growing as new ones arrive.
    LiveReplay,
    /// A fixed range; the playlist ends.
    OnDemand,
}

/// One HLS streaming session.
#[derive(Debug, Clone)]
struct Session {
    stream: StreamRef,
    mode: PlaybackMode,
    kind: TimestampKind,
    start: Option<i64>,
    end: Option<i64>,
    discontinuities: bool,
    display_timestamps: bool,
    max_results: usize,
    expires_millis: i64,
}

/// The open HLS sessions of a broker, by token.
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn locked(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a session; answers the token. `store` is the stream's, checked for playable media.
    pub fn open(
        &self,
        input: api::GetHlsSessionInput,
        store: &FragmentStore,
        now_millis: i64,
    ) -> ApiResult<String> {
        let mode = match input.playback_mode.as_deref() {
            None | Some("LIVE") => PlaybackMode::Live,
            Some("LIVE_REPLAY") => PlaybackMode::LiveReplay,
            Some("ON_DEMAND") => PlaybackMode::OnDemand,
            Some(other) => {
                return Err(invalid_argument(format!(
                    "PlaybackMode {other} is not LIVE, LIVE_REPLAY or ON_DEMAND."
                )));
            }
        };
        if input
            .container_format
            .as_deref()
            .is_some_and(|f| f != "FRAGMENTED_MP4")
        {
            return Err(invalid_argument(
                "Only ContainerFormat FRAGMENTED_MP4 is supported by this server.",
            ));
        }
        let selector = input.hls_fragment_selector.as_ref();
        let kind = TimestampKind::parse(
            selector.and_then(|s| s.fragment_selector_type.as_deref()),
            Some(TimestampKind::Server),
        )?;
        let range = selector.and_then(|s| s.timestamp_range.as_ref());
        let start = range.and_then(|r| r.start_timestamp).map(seconds_to_millis);
        let end = range.and_then(|r| r.end_timestamp).map(seconds_to_millis);
        match (mode, start, end) {
            (PlaybackMode::OnDemand, Some(_), Some(_)) | (PlaybackMode::LiveReplay, Some(_), _) => {
            }
            (PlaybackMode::OnDemand | PlaybackMode::LiveReplay, _, _) => {
                return Err(invalid_argument(
                    "ON_DEMAND needs StartTimestamp and EndTimestamp; LIVE_REPLAY needs StartTimestamp.",
                ));
            }
            (PlaybackMode::Live, _, _) => {}
        }
        if let (Some(start), Some(end)) = (start, end)
            && (end < start || end.saturating_sub(start) > 24 * 3_600_000)
        {
            return Err(invalid_argument(
                "EndTimestamp must be after StartTimestamp and within 24 hours of it.",
            ));
        }
        let expires = input.expires.unwrap_or(300);
        if !(300..=43_200).contains(&expires) {
            return Err(invalid_argument(
                "Expires must be between 300 and 43200 seconds.",
            ));
        }
        let default_results = if mode == PlaybackMode::OnDemand {
            1000
        } else {
            5
        };
        let max_results = input
            .max_media_playlist_fragment_results
            .unwrap_or(default_results);
        if !(1..=5000).contains(&max_results) {
            return Err(invalid_argument(
                "MaxMediaPlaylistFragmentResults must be between 1 and 5000.",
            ));
        }
        let discontinuities = match input.discontinuity_mode.as_deref() {
            Some("ALWAYS") => true,
            Some("NEVER" | "ON_DISCONTINUITY") => false,
            None => kind == TimestampKind::Server,
            Some(other) => {
                return Err(invalid_argument(format!(
                    "DiscontinuityMode {other} is not ALWAYS, NEVER or ON_DISCONTINUITY."
                )));
            }
        };
        // A session is only handed out for a stream whose media can be played.
        if let Some(newest) = store.newest() {
            remux::playable_tracks(&newest)?;
        }
        let session = Session {
            stream: input.stream,
            mode,
            kind,
            start,
            end,
            discontinuities,
            display_timestamps: input.display_fragment_timestamp.as_deref() == Some("ALWAYS"),
            max_results: max_results as usize,
            expires_millis: now_millis + expires * 1000,
        };
        let token = format!("hls-{}", uuid::Uuid::new_v4().simple());
        self.locked().insert(token.clone(), session);
        Ok(token)
    }

    /// The session behind a token, unless it is unknown or expired.
    fn session(&self, token: Option<&str>, now_millis: i64) -> ApiResult<Session> {
        let mut sessions = self.locked();
        sessions.retain(|_, s| s.expires_millis > now_millis);
        token
            .and_then(|t| sessions.get(t))
            .cloned()
            .ok_or_else(|| api::not_authorized("The streaming session is unknown or has expired."))
    }
}

/// An HLS endpoint request: the resource and its query parameters.
pub struct Resource<'a> {
    pub name: &'a str,
    pub query: HashMap<&'a str, &'a str>,
}

impl<'a> Resource<'a> {
    /// Parses `/hls/v1/<name>?<query>`.
    pub fn parse(path: &'a str, query: Option<&'a str>) -> Self {
        Self {
            name: path
                .strip_prefix("/hls/v1/")
                .or_else(|| path.strip_prefix("/dash/v1/"))
                .unwrap_or(path),
            query: query
                .unwrap_or("")
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .collect(),
        }
    }
}

/// Looks up a session's stream: the caller resolves a [`StreamRef`] to its fragment store.
pub trait StreamLookup {
    fn fragments(&self, stream: &StreamRef) -> ApiResult<Arc<FragmentStore>>;
}

/// Serves one HLS resource: `(content type, body)`.
pub fn serve(
    sessions: &Sessions,
    streams: &impl StreamLookup,
    resource: &Resource<'_>,
    now_millis: i64,
) -> ApiResult<(&'static str, Vec<u8>)> {
    let token = resource.query.get("SessionToken").copied();
    let session = sessions.session(token, now_millis)?;
    let token = token.unwrap_or_default();
    let store = streams.fragments(&session.stream)?;
    let fragments = session_fragments(&session, &store);
    let track_id = match resource.query.get("TrackNumber").copied() {
        None | Some("1") => 1,
        Some("2") => 2,
        Some(track) => return Err(api::not_found(format!("Track {track} is not served."))),
    };
    // The output track asked for, with its Matroska track number, as `fragment` declares it.
    let track_of = |fragment: &Fragment| -> ApiResult<(u64, mp4::MediaTrack)> {
        remux::playable_tracks(fragment)?
            .into_iter()
            .find(|(_, track)| track.id == track_id)
            .ok_or_else(|| api::not_found(format!("Track {track_id} is not served.")))
    };
    match resource.name {
        "getHLSMasterPlaylist.m3u8" => Ok((
            PLAYLIST_TYPE,
            master_playlist(token, &fragments)?.into_bytes(),
        )),
        "getDASHManifest.mpd" => Ok((
            DASH_TYPE,
            dash_manifest(token, &session, &fragments)?.into_bytes(),
        )),
        "getHLSMediaPlaylist.m3u8" => {
            let number = match fragments.first() {
                Some(first) => track_of(first)?.0,
                None => 1,
            };
            Ok((
                PLAYLIST_TYPE,
                media_playlist(token, &session, &fragments, track_id, number).into_bytes(),
            ))
        }
        "getMP4InitFragment.mp4" => {
            let fragment = fragments
                .first()
                .ok_or_else(|| api::not_found("No fragments are available yet."))?;
            let (_, track) = track_of(fragment)?;
            Ok((MP4_TYPE, mp4::init_segment(&track)))
        }
        "getMP4MediaFragment.mp4" => {
            // Only the fragments the session lists: its time range and MaxResults bound what
            // its token may read, not the whole stream.
            let number = resource.query.get("FragmentNumber").copied().unwrap_or("");
            let fragment = store.by_number(number)?;
            if !fragments.iter().any(|f| f.sequence == fragment.sequence) {
                return Err(fragment_not_found(number));
            }
            let (number, track) = track_of(&fragment)?;
            let frames = store.frames(&fragment)?;
            let samples = remux::fragment_samples(&fragment, &frames, number, &track);
            let sequence = u32::try_from(fragment.ordinal.saturating_add(1)).unwrap_or(u32::MAX);
            Ok((MP4_TYPE, mp4::media_segment(sequence, track.id, &samples)))
        }
        other => Err(ApiError::unknown_operation(other)),
    }
}

/// The fragments a session's playlist lists now, oldest first.
fn session_fragments(session: &Session, store: &FragmentStore) -> Vec<Arc<Fragment>> {
    let mut fragments: Vec<Arc<Fragment>> = match (session.start, session.end) {
        (Some(start), end) => Selection {
            kind: session.kind,
            start,
            end: end.unwrap_or(i64::MAX),
        }
        .fragments(store),
        (None, _) => store.all(),
    };
    fragments.sort_by_key(|f| (session.kind.of(f), f.sequence));
    match session.mode {
        PlaybackMode::Live => {
            let skip = fragments.len().saturating_sub(session.max_results);
            fragments.split_off(skip)
        }
        PlaybackMode::LiveReplay | PlaybackMode::OnDemand => {
            fragments.truncate(session.max_results);
            fragments
        }
    }
}

/// What playlists and manifests say about a session's media: its tracks and rates.
struct Summary {
    number: u64,
    track: mp4::VideoTrack,
    /// The AAC track, if any: its Matroska track number and configuration.
    audio: Option<(u64, mp4::AudioTrack)>,
    frame_rate: f64,
    bandwidth: u64,
    total_millis: i64,
}

impl Summary {
    fn of(fragments: &[Arc<Fragment>]) -> ApiResult<Self> {
        let first = fragments
            .first()
            .ok_or_else(|| api::not_found("No fragments are available yet."))?;
        let (number, track) = remux::video_track(first)?;
        let audio = remux::audio_track(first)?;
        let frames = first.frame_count(number);
        let bits: u64 = fragments.iter().map(|f| f.size_bytes * 8).sum();
        let total_millis: i64 = fragments.iter().map(|f| f.duration_millis).sum();
        Ok(Self {
            number,
            track,
            audio,
            frame_rate: frames as f64 * 1000.0 / first.duration_millis.max(1) as f64,
            bandwidth: bits * 1000 / total_millis.max(1) as u64,
            total_millis,
        })
    }
}

fn master_playlist(token: &str, fragments: &[Arc<Fragment>]) -> ApiResult<String> {
    let Summary {
        track,
        audio,
        frame_rate,
        bandwidth,
        ..
    } = Summary::of(fragments)?;
    let mut out = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n".to_owned();
    let mut codecs = track.codec();
    let mut group = String::new();
    if let Some((_, audio)) = &audio {
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"{}\",\
             URI=\"getHLSMediaPlaylist.m3u8?SessionToken={token}&TrackNumber=2\"",
            audio.channels
        );
        let _ = write!(codecs, ",{}", audio.codec());
        group.push_str(",AUDIO=\"audio\"");
    }
    let _ = write!(
        out,
        "#EXT-X-STREAM-INF:CODECS=\"{codecs}\",RESOLUTION={}x{},FRAME-RATE={frame_rate:.3},BANDWIDTH={bandwidth}{group}\n\
         getHLSMediaPlaylist.m3u8?SessionToken={token}&TrackNumber=1\n",
        track.width, track.height,
    );
    Ok(out)
}

/// The DASH manifest: a video AdaptationSet (and an audio one for AAC) whose SegmentList
/// names a segment per fragment, with a SegmentTimeline of their start times and durations
/// (ms). Both count from the video's first frame, so they stay in sync.
fn dash_manifest(token: &str, session: &Session, fragments: &[Arc<Fragment>]) -> ApiResult<String> {
    let Summary {
        number,
        track,
        audio,
        frame_rate,
        bandwidth,
        total_millis: total,
    } = Summary::of(fragments)?;
    let origin = fragments
        .first()
        .map_or(0, |f| f.track_start_millis(number));
    let kind = if session.mode == PlaybackMode::OnDemand {
        format!(
            "type=\"static\" mediaPresentationDuration=\"PT{:.3}S\"",
            total as f64 / 1000.0
        )
    } else {
        format!(
            "type=\"dynamic\" availabilityStartTime=\"{}\" minimumUpdatePeriod=\"PT1S\" timeShiftBufferDepth=\"PT{:.3}S\"",
            rfc3339_millis(origin),
            total as f64 / 1000.0
        )
    };
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" {kind} minBufferTime=\"PT2S\">\n\
         <Period id=\"0\" start=\"PT0S\">\n\
         <AdaptationSet mimeType=\"video/mp4\" contentType=\"video\" segmentAlignment=\"true\" startWithSAP=\"1\">\n\
         <Representation id=\"1\" codecs=\"{}\" bandwidth=\"{bandwidth}\" width=\"{}\" height=\"{}\" frameRate=\"{frame_rate:.3}\">\n",
        track.codec(),
        track.width,
        track.height,
    );
    segment_list(&mut out, token, fragments, 1, number, origin);
    out.push_str("</Representation>\n</AdaptationSet>\n");
    if let Some((number, audio)) = audio {
        let _ = write!(
            out,
            "<AdaptationSet mimeType=\"audio/mp4\" contentType=\"audio\" segmentAlignment=\"true\" startWithSAP=\"1\">\n\
             <Representation id=\"2\" codecs=\"{}\" bandwidth=\"{bandwidth}\" audioSamplingRate=\"{}\">\n\
             <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{}\"/>\n",
            audio.codec(),
            audio.sample_rate,
            audio.channels,
        );
        segment_list(&mut out, token, fragments, 2, number, origin);
        out.push_str("</Representation>\n</AdaptationSet>\n");
    }
    out.push_str("</Period>\n</MPD>\n");
    Ok(out)
}

/// A Representation's SegmentList: the init segment and a segment per fragment of the output
/// track `track_id` (Matroska track `number`), times in ms from `origin`.
fn segment_list(
    out: &mut String,
    token: &str,
    fragments: &[Arc<Fragment>],
    track_id: u32,
    number: u64,
    origin: i64,
) {
    let _ = write!(
        out,
        "<SegmentList timescale=\"1000\" presentationTimeOffset=\"{origin}\">\n\
         <Initialization sourceURL=\"getMP4InitFragment.mp4?SessionToken={token}&amp;TrackNumber={track_id}\"/>\n\
         <SegmentTimeline>\n"
    );
    for fragment in fragments {
        let _ = writeln!(
            out,
            "<S t=\"{}\" d=\"{}\"/>",
            fragment.track_start_millis(number),
            fragment.track_duration_millis(number)
        );
    }
    out.push_str("</SegmentTimeline>\n");
    for fragment in fragments {
        let _ = writeln!(
            out,
            "<SegmentURL media=\"getMP4MediaFragment.mp4?FragmentNumber={}&amp;SessionToken={token}&amp;TrackNumber={track_id}\"/>",
            fragment.number()
        );
    }
    out.push_str("</SegmentList>\n");
}

/// The media playlist of output track `track_id` (Matroska track `number`).
fn media_playlist(
    token: &str,
    session: &Session,
    fragments: &[Arc<Fragment>],
    track_id: u32,
    number: u64,
) -> String {
    let target = fragments
        .iter()
        .map(|f| (f.track_duration_millis(number) + 999) / 1000)
        .max()
        .unwrap_or(1)
        .max(1);
    let sequence = fragments.first().map_or(0, |f| f.ordinal);
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{sequence}\n"
    );
    if session.mode == PlaybackMode::OnDemand {
        out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = writeln!(
        out,
        "#EXT-X-MAP:URI=\"getMP4InitFragment.mp4?SessionToken={token}&TrackNumber={track_id}\""
    );
    for fragment in fragments {
        if session.discontinuities {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if session.display_timestamps {
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                rfc3339_millis(session.kind.of(fragment))
            );
        }
        let _ = writeln!(
            out,
            "#EXTINF:{:.3},\ngetMP4MediaFragment.mp4?FragmentNumber={}&SessionToken={token}&TrackNumber={track_id}",
            fragment.track_duration_millis(number) as f64 / 1000.0,
            fragment.number()
        );
    }
    if session.mode == PlaybackMode::OnDemand {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// Epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339_millis(millis: i64) -> String {
    let days = millis.div_euclid(86_400_000);
    let rest = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::video::ingest::tests::video_with_stream;
    use crate::video::ingest::{Session as Ingest, TimecodeType};
    use crate::video::mkv::tests::MkvBuilder;
    use crate::video::mp4::tests::{boxes, u32_at};

    struct One(Arc<FragmentStore>);

    impl StreamLookup for One {
        fn fragments(&self, _: &StreamRef) -> ApiResult<Arc<FragmentStore>> {
            Ok(Arc::clone(&self.0))
        }
    }

    /// `seconds` one-second fragments of `body`'s tracks, each second's frames given by `frames`.
    fn ingested(seconds: u64, mut body: MkvBuilder, frames: &[(u64, i16)]) -> Arc<FragmentStore> {
        let (video, stream) = video_with_stream(1);
        let mut session = Ingest::new(video, stream.clone(), TimecodeType::Absolute, 0);
        for second in 1..=seconds {
            body = body.cluster(second * 1000, frames);
        }
        session.push(&body.bytes);
        session.finish();
        Arc::clone(&stream.fragments)
    }

    /// `seconds` one-second fragments of 2 video frames.
    fn stored(seconds: u64) -> Arc<FragmentStore> {
        ingested(seconds, MkvBuilder::new(&[1]), &[(1, 0), (1, 500)])
    }

    /// `seconds` one-second fragments of 2 video frames and 44.1 kHz AAC frames (23.22 ms
    /// apart, rounded to ms) from track 2, interleaved as muxers write them.
    pub(crate) fn stored_with_audio(seconds: u64) -> Arc<FragmentStore> {
        let mut frames = vec![(1, 0), (1, 500)];
        frames.extend(AUDIO_OFFSETS.iter().map(|ms| (2, *ms)));
        frames.sort_by_key(|(_, ms)| *ms);
        ingested(seconds, MkvBuilder::video_and_audio(), &frames)
    }

    /// The AAC frame times (ms) within a second: 43 frames of 1024 samples at 44.1 kHz.
    pub(crate) const AUDIO_OFFSETS: [i16; 43] = {
        let mut offsets = [0; 43];
        let mut i = 0;
        while i < 43 {
            offsets[i] = (i as i64 * 1024 * 1000 / 44_100) as i16;
            i += 1;
        }
        offsets
    };

    /// An on-demand selection of producer timestamps 0–9 s, as HLS and DASH sessions take it.
    const ALL_OF_IT: &str = r#""FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":0,"EndTimestamp":9}"#;

    /// The stored fragments of one stream and the playback sessions opened on them.
    struct Playback {
        sessions: Sessions,
        store: Arc<FragmentStore>,
    }

    impl Playback {
        fn of(store: Arc<FragmentStore>) -> Self {
            Self {
                sessions: Sessions::default(),
                store,
            }
        }

        /// Opens an HLS session from a GetHLSStreamingSessionURL body; answers its token.
        fn open(&self, json: &str) -> ApiResult<String> {
            self.sessions
                .open(api::parse(json.as_bytes())?, &self.store, 0)
        }

        /// Opens an on-demand DASH session over all fragments; answers its token.
        fn open_dash(&self) -> String {
            let json = format!(
                r#"{{"StreamName":"cam","PlaybackMode":"ON_DEMAND","DASHFragmentSelector":{{{ALL_OF_IT}}}}}"#
            );
            let dash: api::GetDashSessionInput = api::parse(json.as_bytes()).expect("input");
            self.sessions
                .open(dash.into(), &self.store, 0)
                .expect("session")
        }

        /// Opens a live DASH session; answers its token, if there are fragments to play.
        fn open_live_dash(&self) -> ApiResult<String> {
            let dash: api::GetDashSessionInput = api::parse(br#"{"StreamName":"cam"}"#)?;
            self.sessions.open(dash.into(), &self.store, 0)
        }

        /// The body served for a session URL (path and query).
        fn get_bytes(&self, url: &str) -> ApiResult<Vec<u8>> {
            let (path, query) = url.split_once('?').unwrap_or((url, ""));
            let resource = Resource::parse(path, Some(query));
            serve(&self.sessions, &One(Arc::clone(&self.store)), &resource, 0).map(|(_, body)| body)
        }

        /// The playlist or manifest served for a session URL.
        fn get(&self, url: &str) -> ApiResult<String> {
            self.get_bytes(url)
                .map(|body| String::from_utf8_lossy(&body).into_owned())
        }
    }

    #[test]
    fn on_demand_lists_the_range_and_ends() {
        let playback = Playback::of(stored(5));
        let token = playback
            .open(r#"{"StreamName":"cam","PlaybackMode":"ON_DEMAND","HLSFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":2,"EndTimestamp":4}}}"#)
            .expect("session");
        let master = playback
            .get(&format!("getHLSMasterPlaylist.m3u8?SessionToken={token}"))
            .expect("master");
        assert!(master.contains("CODECS=\"avc1.42C01E\",RESOLUTION=320x240,FRAME-RATE=2.000"));
        let media = playback
            .get(&format!(
                "getHLSMediaPlaylist.m3u8?SessionToken={token}&TrackNumber=1"
            ))
            .expect("media");
        assert_eq!(media.matches("#EXTINF:1.000,").count(), 3);
        assert!(media.contains("#EXT-X-PLAYLIST-TYPE:VOD") && media.ends_with("#EXT-X-ENDLIST\n"));
        assert!(media.contains("#EXT-X-MEDIA-SEQUENCE:1\n"));
        assert!(!media.contains("DISCONTINUITY"));
    }

    #[test]
    fn aac_audio_is_a_second_rendition_with_its_own_init_and_segments() {
        let playback = Playback::of(stored_with_audio(3));
        let token = playback
            .open(&format!(
                r#"{{"StreamName":"cam","PlaybackMode":"ON_DEMAND","HLSFragmentSelector":{{{ALL_OF_IT}}}}}"#
            ))
            .expect("session");
        let master = playback
            .get(&format!("getHLSMasterPlaylist.m3u8?SessionToken={token}"))
            .expect("master");
        assert!(master.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\""));
        assert!(master.contains(&format!(
            "URI=\"getHLSMediaPlaylist.m3u8?SessionToken={token}&TrackNumber=2\""
        )));
        assert!(master.contains("CODECS=\"avc1.42C01E,mp4a.40.2\""));
        assert!(master.contains("AUDIO=\"audio\""));
        let audio = playback
            .get(&format!(
                "getHLSMediaPlaylist.m3u8?SessionToken={token}&TrackNumber=2"
            ))
            .expect("audio playlist");
        assert_eq!(audio.matches("&TrackNumber=2").count(), 4, "{audio}");
        // 42 gaps of 23.2 ms plus one more frame: 998 ms.
        assert_eq!(audio.matches("#EXTINF:0.998,").count(), 3, "{audio}");

        let init = playback
            .get_bytes(&format!(
                "getMP4InitFragment.mp4?SessionToken={token}&TrackNumber=2"
            ))
            .expect("init");
        assert_eq!(u32_at(boxes(&init, b"hdlr")[0], 8).to_be_bytes(), *b"soun");
        assert_eq!(u32_at(boxes(&init, b"mdhd")[0], 12), 44_100, "timescale");
        assert_eq!(u32_at(boxes(&init, b"tkhd")[0], 12), 2, "track_ID");
        assert!(init.windows(4).any(|w| w == b"smhd"));
        let esds = init.windows(4).position(|w| w == b"esds").expect("esds");
        assert!(
            init[esds..]
                .windows(4)
                .any(|w| w == [0x05, 0x80, 0x80, 0x80])
        );
        assert!(init[esds..].windows(3).any(|w| w == [0x02, 0x12, 0x08]));

        let second = playback.store.all()[1].number();
        let segment = |track: u64| {
            playback
                .get_bytes(&format!(
                    "getMP4MediaFragment.mp4?FragmentNumber={second}&SessionToken={token}&TrackNumber={track}"
                ))
                .expect("segment")
        };
        let audio = segment(2);
        assert_eq!(u32_at(boxes(&audio, b"tfhd")[0], 4), 2, "track_ID");
        // tfdt (version 1): the fragment's start at 2 s, in samples.
        let tfdt = audio.windows(4).position(|w| w == b"tfdt").expect("tfdt");
        let base = u64::from_be_bytes(audio[tfdt + 8..tfdt + 16].try_into().expect("8"));
        assert_eq!(base, 88_200);
        assert_eq!(u32_at(boxes(&audio, b"trun")[0], 4), 43, "sample count");
        assert_eq!(
            u32_at(boxes(&audio, b"trun")[0], 12),
            1024,
            "first duration"
        );
        assert_eq!(u32_at(boxes(&segment(1), b"trun")[0], 4), 2);
        let token = playback.open_dash();
        let mpd = playback
            .get(&format!(
                "/dash/v1/getDASHManifest.mpd?SessionToken={token}"
            ))
            .expect("manifest");
        assert!(mpd.contains("contentType=\"audio\""));
        assert!(mpd.contains("audioSamplingRate=\"44100\""));
        assert_eq!(
            mpd.matches("TrackNumber=2\"/>").count(),
            4,
            "init and 3 segments"
        );
    }

    #[test]
    fn a_session_serves_only_the_fragments_it_lists() {
        let playback = Playback::of(stored(5));
        let token = playback
            .open(r#"{"StreamName":"cam","PlaybackMode":"ON_DEMAND","HLSFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":2,"EndTimestamp":3}},"MaxMediaPlaylistFragmentResults":1}"#)
            .expect("session");
        let dash = playback.open_dash();
        let all = playback.store.all();
        for (session, listed) in [(&token, 1), (&dash, 0)] {
            for (at, fragment) in all.iter().enumerate() {
                let segment = playback.get_bytes(&format!(
                    "getMP4MediaFragment.mp4?FragmentNumber={}&SessionToken={session}",
                    fragment.number()
                ));
                // The DASH session lists all five; the HLS one only the fragment at 2 s.
                if session == &dash || at == listed {
                    segment.expect("listed");
                } else {
                    let err = segment.expect_err("not listed");
                    assert_eq!(err.code, "ResourceNotFoundException");
                    assert_eq!(err.status, http::StatusCode::NOT_FOUND);
                }
            }
        }
    }

    #[test]
    fn video_only_streams_serve_no_audio_track() {
        let playback = Playback::of(stored(2));
        let token = playback.open(r#"{"StreamName":"cam"}"#).expect("session");
        let master = playback
            .get(&format!("getHLSMasterPlaylist.m3u8?SessionToken={token}"))
            .expect("master");
        assert!(!master.contains("EXT-X-MEDIA") && master.contains("CODECS=\"avc1.42C01E\","));
        let missing = playback
            .get(&format!(
                "getMP4InitFragment.mp4?SessionToken={token}&TrackNumber=2"
            ))
            .expect_err("no audio");
        assert_eq!(missing.code, "ResourceNotFoundException");
    }

    #[test]
    fn dash_manifests_list_a_segment_per_fragment_with_its_time() {
        let playback = Playback::of(stored(3));
        let token = playback.open_dash();
        let mpd = playback
            .get(&format!(
                "/dash/v1/getDASHManifest.mpd?SessionToken={token}"
            ))
            .expect("manifest");
        assert!(mpd.contains("type=\"static\" mediaPresentationDuration=\"PT3.000S\""));
        assert!(mpd.contains("<S t=\"2000\" d=\"1000\"/>"));
        assert_eq!(mpd.matches("<SegmentURL ").count(), 3);
    }

    #[test]
    fn live_lists_the_newest_fragments_without_an_end() {
        let playback = Playback::of(stored(8));
        let token = playback.open(r#"{"StreamName":"cam"}"#).expect("session");
        let media = playback
            .get(&format!("getHLSMediaPlaylist.m3u8?SessionToken={token}"))
            .expect("media");
        assert_eq!(media.matches("#EXTINF").count(), 5);
        assert!(media.contains("#EXT-X-MEDIA-SEQUENCE:3\n"));
        assert!(!media.contains("ENDLIST"));
        assert_eq!(media.matches("#EXT-X-DISCONTINUITY").count(), 5);
    }

    #[test]
    fn unknown_tokens_and_bad_modes_are_refused() {
        let playback = Playback::of(stored(1));
        let missing = playback
            .get("getHLSMasterPlaylist.m3u8?SessionToken=nope")
            .expect_err("unknown");
        assert_eq!(missing.code, "NotAuthorizedException");
        let bad = playback
            .open(r#"{"StreamName":"cam","PlaybackMode":"ON_DEMAND"}"#)
            .expect_err("no range");
        assert_eq!(bad.code, "InvalidArgumentException");
    }

    proptest::proptest! {
        #[test]
        fn any_timecodes_never_panic_through_playlists_segments_and_clips(
            clusters in proptest::collection::vec(
                (
                    proptest::prop_oneof![0..100_000u64, proptest::prelude::any::<u64>()],
                    proptest::collection::vec(proptest::prelude::any::<i16>(), 1..4),
                ),
                1..5,
            ),
            start in proptest::prop_oneof![0..100_000i64, proptest::prelude::any::<i64>()],
            relative in proptest::prelude::any::<bool>(),
        ) {
            let (video, stream) = video_with_stream(1);
            let mode = if relative { TimecodeType::Relative } else { TimecodeType::Absolute };
            let mut session = Ingest::new(video, stream.clone(), mode, start);
            let mut body = MkvBuilder::video_and_audio();
            for (timecode, offsets) in &clusters {
                let mut frames: Vec<(u64, i16)> = offsets.iter().flat_map(|o| [(1, *o), (2, *o)]).collect();
                frames.sort_by_key(|(_, o)| *o);
                body = body.cluster(*timecode, &frames);
            }
            session.push(&body.bytes);
            session.finish();
            let playback = Playback::of(Arc::clone(&stream.fragments));
            let hls = playback.open(r#"{"StreamName":"cam"}"#);
            let dash = playback.open_live_dash();
            for token in hls.iter().chain(&dash) {
                let _ = playback.get(&format!("getHLSMasterPlaylist.m3u8?SessionToken={token}"));
                let _ = playback.get(&format!("getDASHManifest.mpd?SessionToken={token}"));
                for track in [1, 2] {
                    let _ = playback.get(&format!("getHLSMediaPlaylist.m3u8?SessionToken={token}&TrackNumber={track}"));
                    let _ = playback.get_bytes(&format!("getMP4InitFragment.mp4?SessionToken={token}&TrackNumber={track}"));
                    for fragment in stream.fragments.all() {
                        let _ = playback.get_bytes(&format!(
                            "getMP4MediaFragment.mp4?FragmentNumber={}&SessionToken={token}&TrackNumber={track}",
                            fragment.number()
                        ));
                    }
                }
            }
            let stored = stream.fragments.all();
            let _ = remux::clip_samples(&stream.fragments, &stored)
                .map(|tracks| mp4::progressive(&tracks));
        }
    }

    #[test]
    fn timestamps_print_as_rfc3339() {
        assert_eq!(
            rfc3339_millis(1_711_124_585_823),
            "2024-03-22T16:23:05.823Z"
        );
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
    }
}
