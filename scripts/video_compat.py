#!/usr/bin/env python3
"""Kinesis Video Streams compatibility checks of local-broker with real media.

ffmpeg makes a few seconds of H.264 (testsrc, a keyframe every second, so each Matroska Cluster is
one fragment); curl streams it to /putMedia with chunked transfer; boto3 reads it back with
GetMedia, ListFragments, GetMediaForFragmentList and GetClip; ffprobe reads the clip and the HLS
and DASH session URLs. Bad input (corrupt EBML, oversized fragments, wrong track numbers, out-of-order
timecodes) must get the documented error acks and leave the stream usable.

    python scripts/video_compat.py --endpoint http://127.0.0.1:4567

Prints one line per check and ends with `N passed, M failed` alone on a line (or writes the counts
to --counts-file as JSON). Exits non-zero if any check failed.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

SECONDS = 4
FPS = 25
REGION = "us-east-1"


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}: {detail}", flush=True)
        return ok


# ---- a minimal EBML walker (enough to read clusters, blocks and tags) ----------------------------

MASTERS = {0x18538067, 0x1F43B675, 0x1254C367, 0x7373, 0x67C8, 0xA0}  # Segment Cluster Tags Tag SimpleTag BlockGroup
EBML_ID = 0x1A45DFA3


def read_vint(data, at, keep_marker):
    first = data[at]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8 or at + length > len(data):
        raise ValueError("bad vint")
    value = first if keep_marker else first & (0xFF >> length)
    for b in data[at + 1:at + length]:
        value = (value << 8) | b
    return value, length


def walk(data):
    """Yields (id, payload) for leaves, descending into master elements."""
    at = 0
    while at < len(data):
        element, n = read_vint(data, at, True)
        size, m = read_vint(data, at + n, False)
        at += n + m
        unknown = size == (1 << (7 * m)) - 1
        if element in MASTERS:
            if element == 0x1F43B675:
                yield ("cluster", None)
            continue
        if element == EBML_ID:
            yield ("ebml", None)
        if unknown:
            raise ValueError(f"unknown-size leaf {element:#x}")
        yield (element, data[at:at + size])
        at += size


def media_events(data):
    """Clusters as dicts: timecode, frames [(track, bytes)], tags [(name, value)] that follow."""
    clusters, tags, name = [], [], None
    for element, payload in walk(data):
        if element == "cluster":
            clusters.append({"timecode": None, "frames": [], "tags_before": list(tags)})
            tags = []
        elif element == 0xE7 and clusters:
            clusters[-1]["timecode"] = int.from_bytes(payload, "big")
        elif element in (0xA3, 0xA1) and clusters:
            track, n = read_vint(payload, 0, False)
            clusters[-1]["frames"].append((track, bytes(payload[n + 3:])))
        elif element == 0x45A3:
            name = payload.decode()
        elif element == 0x4487:
            tags.append((name, payload.decode()))
        elif element == "ebml":
            pass
    if clusters:
        clusters[-1]["tags_after"] = tags
    return clusters


def split_chunks(payload):
    """A GetMedia payload split on the EBML header, like KVS consumer libraries do."""
    marker = bytes.fromhex("1A45DFA3")
    starts = [i for i in range(len(payload)) if payload.startswith(marker, i)]
    return [payload[s:e] for s, e in zip(starts, starts[1:] + [len(payload)])]


# ---- helpers ---------------------------------------------------------------------------------------


def ffmpeg_h264(path, live):
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
           f"testsrc=duration={SECONDS}:size=320x240:rate={FPS}",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", str(FPS), "-keyint_min", str(FPS),
           "-sc_threshold", "0", "-f", "matroska"]
    if live:
        cmd += ["-live", "1"]
    subprocess.run(cmd + [path], check=True)


def ffmpeg_h264_aac(path):
    """H.264 + AAC (44.1 kHz sine), a keyframe every second so each Cluster is ~1 s."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=duration={SECONDS}:size=320x240:rate={FPS}", "-f", "lavfi", "-i",
                    f"sine=frequency=1000:sample_rate=44100:duration={SECONDS}",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", str(FPS), "-keyint_min", str(FPS),
                    "-sc_threshold", "0", "-c:a", "aac", "-cluster_time_limit", "2000",
                    "-f", "matroska", path], check=True)


def ffprobe_streams(target):
    """{codec_type: stream} and the format duration of everything ffprobe finds."""
    out = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries",
         "stream=codec_type,codec_name,sample_rate,duration:format=duration", "-of", "json", target],
        check=True, capture_output=True, text=True, timeout=120).stdout)
    return {s["codec_type"]: s for s in out["streams"]}, float(out["format"]["duration"])


def ffprobe(target, *extra):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", *extra, "-show_entries",
         "stream=codec_name,width,height,nb_read_frames:format=duration", "-of", "json", target],
        check=True, capture_output=True, text=True, timeout=120).stdout
    return json.loads(out)


def put_media(endpoint, stream, body, timecode_type="RELATIVE", start=None):
    """Streams `body` to /putMedia with chunked transfer (curl reading stdin); returns the acks."""
    start = time.time() if start is None else start
    cmd = ["curl", "-sS", "-N", "--max-time", "120", "-X", "POST", "-T", "-",
           "-H", "Transfer-Encoding: chunked", "-H", "Expect:",
           "-H", f"x-amzn-stream-name: {stream}",
           "-H", f"x-amzn-fragment-timecode-type: {timecode_type}",
           "-H", f"x-amzn-producer-start-timestamp: {start:.3f}",
           "-w", "\n%{http_code}", f"{endpoint}/putMedia"]
    out = subprocess.run(cmd, input=body, capture_output=True, check=True, timeout=150).stdout
    *lines, status = out.decode().rstrip("\n").split("\n")
    return int(status), [json.loads(line) for line in lines if line.strip()]


def by_event(acks, event):
    return [a for a in acks if a["EventType"] == event]


def error_code(call):
    try:
        call()
    except ClientError as err:
        return err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


def ts(seconds):
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


# ---- the checks ------------------------------------------------------------------------------------


def run(endpoint, work, results):
    config = Config(retries={"max_attempts": 1})
    kv = boto3.client("kinesisvideo", endpoint_url=endpoint, region_name=REGION, config=config)
    name = f"cam-{uuid.uuid4().hex[:8]}"
    check = results.check

    # Control plane.
    arn = kv.create_stream(StreamName=name, DataRetentionInHours=1, MediaType="video/h264")["StreamARN"]
    check("create_stream returns a stream ARN", arn.startswith("arn:aws:kinesisvideo:") and f"/{name}/" in arn, arn)
    info = kv.describe_stream(StreamName=name)["StreamInfo"]
    check("describe_stream ACTIVE with a version", info["Status"] == "ACTIVE" and info["Version"], info)
    check("create twice is ResourceInUseException",
          error_code(lambda: kv.create_stream(StreamName=name))[0] == "ResourceInUseException")
    check("describe of a missing stream is ResourceNotFoundException (404)",
          error_code(lambda: kv.describe_stream(StreamName=name + "-missing")) == ("ResourceNotFoundException", 404))
    check("a stale CurrentVersion is VersionMismatchException",
          error_code(lambda: kv.update_data_retention(
              StreamName=name, CurrentVersion="stale", Operation="INCREASE_DATA_RETENTION",
              DataRetentionChangeInHours=1))[0] == "VersionMismatchException")
    kv.tag_resource(ResourceARN=arn, Tags=[{"Key": "team", "Value": "video"}])
    check("TagResource / ListTagsForResource",
          kv.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"team": "video"})
    check("list_streams finds the stream",
          any(s["StreamName"] == name for s in kv.list_streams(
              StreamNameCondition={"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": name})["StreamInfoList"]))
    data_endpoint = kv.get_data_endpoint(StreamName=name, APIName="PUT_MEDIA")["DataEndpoint"]
    check("get_data_endpoint is the broker", data_endpoint == endpoint, data_endpoint)

    # Media from ffmpeg.
    src = os.path.join(work, "src.mkv")
    live = os.path.join(work, "live.mkv")
    ffmpeg_h264(src, live=False)
    ffmpeg_h264(live, live=True)
    source = open(src, "rb").read()
    source_clusters = media_events(source)
    source_frames = [f for c in source_clusters for f in c["frames"]]
    probe = ffprobe(src, "-count_frames")
    source_count = int(probe["streams"][0]["nb_read_frames"])
    check(f"ffmpeg made {SECONDS} clusters of {FPS} frames",
          len(source_clusters) == SECONDS and len(source_frames) == source_count == SECONDS * FPS,
          (len(source_clusters), len(source_frames), source_count))

    start = time.time() - 60
    status, acks = put_media(endpoint, name, source, start=start)
    check("PutMedia answers 200", status == 200, status)
    timecodes = [c["timecode"] for c in source_clusters]
    for event in ("BUFFERING", "RECEIVED", "PERSISTED"):
        got = [a["FragmentTimecode"] for a in by_event(acks, event)]
        check(f"one {event} ack per cluster with its timecode", got == timecodes, (got, timecodes))
    check("acks: FragmentTimecode a number, FragmentNumber a string of digits",
          all(isinstance(a["FragmentTimecode"], int) and isinstance(a["FragmentNumber"], str)
              and a["FragmentNumber"].isdigit() for a in acks if a["EventType"] != "IDLE"), acks[:2])
    check("no ERROR acks for good media", not by_event(acks, "ERROR"), by_event(acks, "ERROR"))

    # GetMedia round trip.
    kvm = boto3.client("kinesis-video-media", endpoint_url=kv.get_data_endpoint(
        StreamName=name, APIName="GET_MEDIA")["DataEndpoint"], region_name=REGION, config=config)
    got = kvm.get_media(StreamName=name, StartSelector={"StartSelectorType": "EARLIEST"})
    payload = got["Payload"].read()
    chunks = split_chunks(payload)
    out_frames = [f for chunk in chunks for c in media_events(chunk) for f in c["frames"]]
    check("GetMedia: one chunk per fragment", len(chunks) == SECONDS, len(chunks))
    check("GetMedia: every frame round-trips byte for byte", out_frames == source_frames,
          (len(out_frames), len(source_frames)))
    first = media_events(chunks[0])[0]
    # ffmpeg's own header Tags (ENCODER, DURATION) arrive as producer metadata of the first
    # fragment and come back between the cluster and the closing KVS tags.
    names = [n for n, _ in first["tags_before"] + first["tags_after"] if n.startswith("AWS_KINESISVIDEO")]
    check("GetMedia: AWS_KINESISVIDEO_* tags before and after the cluster",
          names == ["AWS_KINESISVIDEO_FRAGMENT_NUMBER", "AWS_KINESISVIDEO_SERVER_TIMESTAMP",
                    "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP", "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW",
                    "AWS_KINESISVIDEO_CONTINUATION_TOKEN"], names)
    producer = float(dict(first["tags_before"])["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"])
    check("GetMedia: producer timestamp = start header + cluster timecode",
          abs(producer - (start + timecodes[0] / 1000)) < 0.002, (producer, start))
    chunk_file = os.path.join(work, "chunk.mkv")
    open(chunk_file, "wb").write(chunks[1])
    check("ffprobe reads a GetMedia chunk as H.264",
          int(ffprobe(chunk_file, "-count_frames")["streams"][0]["nb_read_frames"]) == FPS)
    token = dict(first["tags_after"])["AWS_KINESISVIDEO_CONTINUATION_TOKEN"]
    rest = kvm.get_media(StreamName=name, StartSelector={
        "StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": token})["Payload"].read()
    check("GetMedia CONTINUATION_TOKEN resumes after that fragment", len(split_chunks(rest)) == SECONDS - 1)

    # Archived media.
    am = boto3.client("kinesis-video-archived-media", endpoint_url=endpoint, region_name=REGION, config=config)
    selector = {"FragmentSelectorType": "PRODUCER_TIMESTAMP",
                "TimestampRange": {"StartTimestamp": ts(start - 1), "EndTimestamp": ts(start + SECONDS + 1)}}
    fragments, token = [], None
    while True:
        page = am.list_fragments(StreamName=name, MaxResults=3, **(
            {"NextToken": token} if token else {"FragmentSelector": selector}))
        fragments += page["Fragments"]
        token = page.get("NextToken")
        if not token:
            break
    fragments.sort(key=lambda f: f["ProducerTimestamp"])
    check("ListFragments pages through every fragment", len(fragments) == SECONDS, len(fragments))
    check("ListFragments lengths add up to the source duration",
          abs(sum(f["FragmentLengthInMilliseconds"] for f in fragments) - SECONDS * 1000) <= 40,
          [f["FragmentLengthInMilliseconds"] for f in fragments])
    listed = am.get_media_for_fragment_list(
        StreamName=name, Fragments=[fragments[2]["FragmentNumber"]])["Payload"].read()
    check("GetMediaForFragmentList returns that fragment's frames",
          [f for c in media_events(listed) for f in c["frames"]] == source_clusters[2]["frames"])

    clip = am.get_clip(StreamName=name, ClipFragmentSelector=selector)
    clip_file = os.path.join(work, "clip.mp4")
    open(clip_file, "wb").write(clip["Payload"].read())
    clip_probe = ffprobe(clip_file, "-count_frames")
    stream = clip_probe["streams"][0]
    check("GetClip is an H.264 MP4 ffprobe reads, same frame count",
          clip["ContentType"] == "video/mp4" and stream["codec_name"] == "h264"
          and int(stream["nb_read_frames"]) == source_count, stream)
    check("GetClip duration matches the source",
          abs(float(clip_probe["format"]["duration"]) - float(probe["format"]["duration"])) < 0.1,
          (clip_probe["format"]["duration"], probe["format"]["duration"]))

    url = am_url = am.get_hls_streaming_session_url(
        StreamName=name, PlaybackMode="ON_DEMAND", HLSFragmentSelector=selector)["HLSStreamingSessionURL"]
    check("HLS URL points at this broker", am_url.startswith(endpoint + "/hls/v1/getHLSMasterPlaylist.m3u8?"), url)
    hls_probe = ffprobe(url, "-count_frames")
    stream = hls_probe["streams"][0]
    check("ffprobe plays the ON_DEMAND HLS session: same frames",
          stream["codec_name"] == "h264" and int(stream["nb_read_frames"]) == source_count, stream)
    check("HLS duration matches the source",
          abs(float(hls_probe["format"]["duration"]) - float(probe["format"]["duration"])) < 0.1,
          (hls_probe["format"]["duration"], probe["format"]["duration"]))
    dash_url = am.get_dash_streaming_session_url(
        StreamName=name, PlaybackMode="ON_DEMAND", DASHFragmentSelector=selector)["DASHStreamingSessionURL"]
    dash_probe = ffprobe(dash_url, "-count_frames")
    stream = dash_probe["streams"][0]
    check("ffprobe plays the ON_DEMAND DASH session: same frames",
          stream["codec_name"] == "h264" and int(stream["nb_read_frames"]) == source_count, stream)
    live_url = am.get_hls_streaming_session_url(StreamName=name, PlaybackMode="LIVE")["HLSStreamingSessionURL"]
    live_probe = ffprobe(live_url)
    check("ffprobe opens the LIVE HLS session", live_probe["streams"][0]["codec_name"] == "h264", live_probe)
    check("archived media needs retention: NoDataRetentionException",
          error_code(lambda: (kv.create_stream(StreamName=name + "-noret"),
                              am.get_clip(StreamName=name + "-noret", ClipFragmentSelector=selector)))[0]
          == "NoDataRetentionException")

    # Unknown-size Segment and Clusters (ffmpeg -live 1), as real producers send them.
    live_body = open(live, "rb").read()
    status, acks = put_media(endpoint, name, live_body, start=time.time())
    check("live-style MKV (unknown sizes): every cluster persisted",
          len(by_event(acks, "PERSISTED")) == SECONDS and not by_event(acks, "ERROR"), acks)

    audio_and_video(kv, am, endpoint, work, results)
    bad_input(endpoint, name, live_body, results)


def audio_and_video(kv, am, endpoint, work, results):
    """H.264 track 1 + AAC track 2 in; GetClip and HLS carry both."""
    check = results.check
    name = f"av-{uuid.uuid4().hex[:8]}"
    kv.create_stream(StreamName=name, DataRetentionInHours=1, MediaType="video/h264,audio/aac")
    src = os.path.join(work, "av.mkv")
    ffmpeg_h264_aac(src)
    source = open(src, "rb").read()
    clusters = media_events(source)
    _, source_duration = ffprobe_streams(src)
    start = time.time() - 60
    status, acks = put_media(endpoint, name, source, start=start)
    check("H.264+AAC PutMedia: every cluster persisted, no errors",
          status == 200 and len(by_event(acks, "PERSISTED")) == len(clusters) > 1
          and not by_event(acks, "ERROR"), acks)
    selector = {"FragmentSelectorType": "PRODUCER_TIMESTAMP",
                "TimestampRange": {"StartTimestamp": ts(start - 1), "EndTimestamp": ts(start + SECONDS + 1)}}
    clip_file = os.path.join(work, "av.mp4")
    open(clip_file, "wb").write(am.get_clip(StreamName=name, ClipFragmentSelector=selector)["Payload"].read())
    url = am.get_hls_streaming_session_url(
        StreamName=name, PlaybackMode="ON_DEMAND", HLSFragmentSelector=selector)["HLSStreamingSessionURL"]
    for what, target in (("GetClip", clip_file), ("HLS", url)):
        streams, duration = ffprobe_streams(target)
        audio, video = streams.get("audio", {}), streams.get("video", {})
        check(f"{what}: an h264 video stream and an aac 44100 Hz audio stream",
              video.get("codec_name") == "h264" and audio.get("codec_name") == "aac"
              and audio.get("sample_rate") == "44100", streams)
        check(f"{what}: duration close to the source", abs(duration - source_duration) < 0.15,
              (duration, source_duration))


def bad_input(endpoint, name, live_body, results):
    check = results.check
    clusters_at = [i for i in range(len(live_body)) if live_body.startswith(bytes.fromhex("1F43B675"), i)]
    header = live_body[:clusters_at[0]]

    def cluster(timecode, blocks):
        out = bytes.fromhex("1F43B675") + b"\x01" + b"\xff" * 7
        out += bytes.fromhex("E7") + b"\x88" + timecode.to_bytes(8, "big")
        for track, frame, key in blocks:
            body = bytes([0x80 | track]) + (0).to_bytes(2, "big") + bytes([0x80 if key else 0]) + frame
            out += bytes.fromhex("A3") + b"\x01" + len(body).to_bytes(7, "big") + body
        return out

    frame = b"\x00\x00\x00\x02\x65\x88"
    body = (header + cluster(1000, [(1, frame, True)]) + cluster(2000, [(2, frame, True)])
            + cluster(500, [(1, frame, True)])
            + cluster(3000, [(1, b"\x00" * (9 * 1024 * 1024), True)] * 6)
            + cluster(4000, [(1, frame, True)]))
    status, acks = put_media(endpoint, name, body, timecode_type="RELATIVE", start=time.time())
    errors = [(a["FragmentTimecode"], a["ErrorId"], a.get("ErrorCode")) for a in by_event(acks, "ERROR")]
    check("wrong track number / out-of-order timecode / oversized fragment: error acks",
          errors == [(2000, 4010, "TRACK_NUMBER_MISMATCH"), (500, 4004, "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS"),
                     (3000, 4001, "MAX_FRAGMENT_SIZE_REACHED")], errors)
    check("good fragments around bad ones are persisted",
          [a["FragmentTimecode"] for a in by_event(acks, "PERSISTED")] == [1000, 4000], acks)

    corrupt = header + cluster(1000, [(1, frame, True)]) + b"\x1f\x43\xb6\x75\xff\xe7\x81\x05\x00\x00\x00"
    status, acks = put_media(endpoint, name, corrupt, start=time.time())
    last = acks[-1] if acks else {}
    check("corrupt EBML: ERROR 4006 INVALID_MKV_DATA, after the good fragment was persisted",
          last.get("ErrorId") == 4006 and last.get("ErrorCode") == "INVALID_MKV_DATA"
          and by_event(acks, "PERSISTED"), acks)

    status, acks = put_media(endpoint, name, live_body, start=time.time())
    check("the stream stays usable after bad input",
          status == 200 and len(by_event(acks, "PERSISTED")) == SECONDS and not by_event(acks, "ERROR"), acks)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--counts-file")
    args = parser.parse_args()
    results = Results()
    with tempfile.TemporaryDirectory() as work:
        try:
            run(args.endpoint.rstrip("/"), work, results)
        except Exception:  # noqa: BLE001 - a crash is one failed check, with its traceback
            traceback.print_exc()
            results.check("video suite ran to the end", False, "crashed")
    if args.counts_file:
        with open(args.counts_file, "w") as out:
            json.dump({"passed": results.passed, "failed": results.failed}, out)
    else:
        print(f"{results.passed} passed, {results.failed} failed")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
