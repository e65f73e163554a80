#!/usr/bin/env python3
"""Kinesis Data Streams compatibility checks through boto3, against any endpoint.

Runs the same scenarios as the Rust integration tests, but through the client most people use
(boto3/botocore), so wire-level differences that the Rust SDK tolerates still show up here.

    python scripts/kinesis_compat.py --endpoint http://127.0.0.1:4567

Prints one line per check (PASS/FAIL/XFAIL) and ends with `N passed, M failed` alone on a line
(unless --counts-file is given: then the counts go to that file as JSON and the caller prints the
total, so that a wrapper adding its own checks prints exactly one closing line). Exits non-zero if
any check failed.

Stream names carry a random run id, so the script can run twice against one broker.
"""

import argparse
import datetime
import hashlib
import json
import os
import sys
import time
import traceback
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError, WaiterError

MAX_HASH = 2**128 - 1
REGION = "us-east-1"

# Checks known to fail against local-broker, with the reason; they print XFAIL and are counted
# neither as passed nor as failed. Keep this empty unless a failure is understood and tracked.
EXPECTED_FAILURES = {}


class Results:
    """Counts and prints check outcomes."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.xfailed = 0
        self.failures = []

    def record(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {name}", flush=True)
        elif name in EXPECTED_FAILURES:
            self.xfailed += 1
            print(f"XFAIL {name}: {detail} (expected: {EXPECTED_FAILURES[name]})", flush=True)
        else:
            self.failed += 1
            self.failures.append(name)
            print(f"FAIL {name}: {detail}", flush=True)
        return ok

    def eq(self, name, actual, expected):
        return self.record(name, actual == expected, f"expected {expected!r}, got {actual!r}")

    def true(self, name, cond, detail=""):
        return self.record(name, bool(cond), detail)

    def error(self, name, code, fn, *args, **kwargs):
        """Calls fn and checks it fails with `code` and HTTP 400; returns the ClientError."""
        try:
            out = fn(*args, **kwargs)
        except ClientError as e:
            got = e.response.get("Error", {}).get("Code")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            self.record(
                name,
                got == code and status == 400,
                f"expected {code}/400, got {got}/{status}: {e.response.get('Error', {}).get('Message')}",
            )
            return e
        except ParamValidationError as e:
            self.record(name, False, f"rejected client-side, never sent: {e}")
            return None
        out = dict(out or {})
        out.pop("ResponseMetadata", None)
        self.record(name, False, f"expected {code}, call succeeded: {str(out)[:300]}")
        return None


class Suite:
    def __init__(self, endpoint, account_id):
        self.r = Results()
        self.endpoint = endpoint
        self.account_id = account_id
        self.run_id = uuid.uuid4().hex[:8]
        self.created = []
        common = dict(
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id="AKIDCOMPAT",
            aws_secret_access_key="compat-secret",
        )
        # No retries: a retried error would hide the first response and slow the run down.
        config = Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=20,
        )
        self.k = boto3.client("kinesis", config=config, **common)
        # For requests botocore itself would refuse (missing members, out-of-range numbers):
        # the point is what the server answers.
        self.raw = boto3.client(
            "kinesis", config=config.merge(Config(parameter_validation=False)), **common
        )

    # ---- helpers -------------------------------------------------------------------------

    def name(self, suffix):
        return f"compat-{self.run_id}-{suffix}"

    def arn(self, stream):
        return f"arn:aws:kinesis:{REGION}:{self.account_id}:stream/{stream}"

    def create(self, stream, **kwargs):
        self.k.create_stream(StreamName=stream, **kwargs)
        self.created.append(stream)
        self.k.get_waiter("stream_exists").wait(
            StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 10}
        )

    def shards(self, stream, **kwargs):
        """All shards of a stream through ListShards pagination (NextToken alone on later pages)."""
        out = []
        resp = self.k.list_shards(StreamName=stream, **kwargs)
        for _ in range(1000):
            out.extend(resp["Shards"])
            token = resp.get("NextToken")
            if not token:
                break
            resp = self.k.list_shards(NextToken=token)
        return out

    def read_all(self, iterator, limit=None, max_calls=200):
        """Reads a shard from an iterator until it is caught up (an empty page) or closed.

        Returns (records, last response)."""
        records = []
        resp = {}
        for _ in range(max_calls):
            kwargs = {"ShardIterator": iterator}
            if limit:
                kwargs["Limit"] = limit
            resp = self.k.get_records(**kwargs)
            records.extend(resp["Records"])
            iterator = resp.get("NextShardIterator")
            if iterator is None or not resp["Records"]:
                break
        return records, resp

    def iterator(self, stream, shard_id, kind, **kwargs):
        return self.k.get_shard_iterator(
            StreamName=stream, ShardId=shard_id, ShardIteratorType=kind, **kwargs
        )["ShardIterator"]

    @staticmethod
    def md5_hash(key):
        return int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16)

    @staticmethod
    def owner(shards, hash_key):
        for s in shards:
            r = s["HashKeyRange"]
            if int(r["StartingHashKey"]) <= hash_key <= int(r["EndingHashKey"]):
                return s["ShardId"]
        return None

    @staticmethod
    def ids(shards):
        return [s["ShardId"] for s in shards]

    @staticmethod
    def sid(i):
        return f"shardId-{i:012d}"

    @staticmethod
    def now():
        return datetime.datetime.now(datetime.timezone.utc)

    def same_records(self, name, got, expected):
        """Compares read records with (sequence number, partition key, data) triples, byte-exact."""
        got_triples = [(r["SequenceNumber"], r["PartitionKey"], bytes(r["Data"])) for r in got]
        if got_triples == expected:
            return self.r.record(name, True)
        detail = f"expected {len(expected)} records, got {len(got_triples)}"
        for i, (g, e) in enumerate(zip(got_triples, expected)):
            if g != e:
                detail += f"; first difference at #{i}: got {g[0]}/{g[1]}/{g[2][:16]!r}, expected {e[0]}/{e[1]}/{e[2][:16]!r}"
                break
        return self.r.record(name, False, detail)

    # ---- scenarios -----------------------------------------------------------------------

    def lifecycle(self):
        r, k = self.r, self.k
        prov, od = self.name("prov"), self.name("ondemand")
        k.create_stream(StreamName=prov, ShardCount=3)
        self.created.append(prov)
        k.create_stream(StreamName=od, StreamModeDetails={"StreamMode": "ON_DEMAND"})
        self.created.append(od)
        for stream in (prov, od):
            try:
                k.get_waiter("stream_exists").wait(
                    StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 10}
                )
                r.record(f"lifecycle: waiter stream_exists {stream.rsplit('-', 1)[1]}", True)
            except WaiterError as e:
                r.record(f"lifecycle: waiter stream_exists {stream.rsplit('-', 1)[1]}", False, str(e))

        d = k.describe_stream(StreamName=prov)["StreamDescription"]
        r.eq("lifecycle: describe StreamStatus", d["StreamStatus"], "ACTIVE")
        r.eq("lifecycle: describe StreamARN", d["StreamARN"], self.arn(prov))
        r.eq("lifecycle: describe StreamMode", d.get("StreamModeDetails", {}).get("StreamMode"), "PROVISIONED")
        r.eq("lifecycle: describe RetentionPeriodHours", d["RetentionPeriodHours"], 24)
        r.eq("lifecycle: describe HasMoreShards", d["HasMoreShards"], False)
        r.eq("lifecycle: describe shard ids", self.ids(d["Shards"]), [self.sid(i) for i in range(3)])
        ranges = [(int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in d["Shards"]]
        tiles = ranges[0][0] == 0 and ranges[-1][1] == MAX_HASH and all(
            a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:])
        )
        r.true("lifecycle: shard hash ranges tile 0..2^128-1", tiles, f"{ranges}")
        # AWS starts shard i of n at floor(i * 2^128 / n).
        r.eq("lifecycle: 3-shard layout matches AWS", [a for a, _ in ranges], [i * 2**128 // 3 for i in range(3)])
        r.true(
            "lifecycle: open shards have a StartingSequenceNumber and no EndingSequenceNumber",
            all(
                s["SequenceNumberRange"].get("StartingSequenceNumber")
                and "EndingSequenceNumber" not in s["SequenceNumberRange"]
                for s in d["Shards"]
            ),
            str([s["SequenceNumberRange"] for s in d["Shards"]]),
        )
        r.true(
            "lifecycle: describe StreamCreationTimestamp is recent",
            abs((self.now() - d["StreamCreationTimestamp"]).total_seconds()) < 120,
            str(d["StreamCreationTimestamp"]),
        )
        paged = [s["ShardId"] for page in k.get_paginator("describe_stream").paginate(
            StreamName=prov, PaginationConfig={"PageSize": 1}) for s in page["StreamDescription"]["Shards"]]
        r.eq("lifecycle: describe_stream paginator (Limit=1)", paged, [self.sid(i) for i in range(3)])
        first = k.describe_stream(StreamName=prov, Limit=2)["StreamDescription"]
        r.true("lifecycle: describe Limit=2 has HasMoreShards", first["HasMoreShards"] and len(first["Shards"]) == 2,
               f"{len(first['Shards'])} shards, HasMoreShards={first['HasMoreShards']}")

        s = k.describe_stream_summary(StreamName=od)["StreamDescriptionSummary"]
        r.eq("lifecycle: summary ON_DEMAND mode", s.get("StreamModeDetails", {}).get("StreamMode"), "ON_DEMAND")
        r.eq("lifecycle: summary ON_DEMAND OpenShardCount", s["OpenShardCount"], 4)
        r.eq("lifecycle: summary StreamStatus", s["StreamStatus"], "ACTIVE")
        r.eq("lifecycle: summary ConsumerCount", s.get("ConsumerCount"), 0)
        r.eq("lifecycle: summary EncryptionType", s.get("EncryptionType"), "NONE")
        s = k.describe_stream_summary(StreamARN=self.arn(prov))["StreamDescriptionSummary"]
        r.eq("lifecycle: summary by StreamARN", (s["StreamName"], s["OpenShardCount"]), (prov, 3))

        # Manual paging with Limit=1 / NextToken.
        names, pages, token = [], 0, None
        page_ok = True
        for _ in range(1000):
            resp = k.list_streams(Limit=1, NextToken=token) if token else k.list_streams(Limit=1)
            pages += 1
            page_ok &= len(resp["StreamNames"]) <= 1 and len(resp.get("StreamSummaries", [])) == len(resp["StreamNames"])
            names.extend(resp["StreamNames"])
            token = resp.get("NextToken")
            if not resp["HasMoreStreams"]:
                page_ok &= token is None
                break
            if not token:
                page_ok = False
                break
        r.true("lifecycle: list_streams Limit=1 pages hold at most one stream", page_ok)
        r.true("lifecycle: list_streams paging finds both streams", prov in names and od in names, f"{names}")
        r.eq("lifecycle: list_streams paging returns sorted unique names", names, sorted(set(names)))
        via_paginator = [n for p in k.get_paginator("list_streams").paginate(PaginationConfig={"PageSize": 1}) for n in p["StreamNames"]]
        r.eq("lifecycle: list_streams paginator agrees", via_paginator, names)
        summaries = {x["StreamName"]: x for x in k.list_streams()["StreamSummaries"]}
        r.true(
            "lifecycle: list_streams StreamSummaries carry ARN, status and mode",
            summaries.get(od, {}).get("StreamARN") == self.arn(od)
            and summaries.get(od, {}).get("StreamStatus") == "ACTIVE"
            and summaries.get(od, {}).get("StreamModeDetails", {}).get("StreamMode") == "ON_DEMAND",
            str(summaries.get(od)),
        )
        after = k.list_streams(ExclusiveStartStreamName=prov)["StreamNames"]
        r.true("lifecycle: list_streams ExclusiveStartStreamName", prov not in after and all(n > prov for n in after), f"{after}")

        self.r.error("lifecycle: duplicate create -> ResourceInUseException", "ResourceInUseException",
                     k.create_stream, StreamName=prov, ShardCount=1)

        for stream in (prov, od):
            k.delete_stream(StreamName=stream)
            try:
                k.get_waiter("stream_not_exists").wait(
                    StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 10}
                )
                r.record(f"lifecycle: delete + waiter stream_not_exists {stream.rsplit('-', 1)[1]}", True)
            except WaiterError as e:
                r.record(f"lifecycle: delete + waiter stream_not_exists {stream.rsplit('-', 1)[1]}", False, str(e))
        r.error("lifecycle: describe deleted stream -> ResourceNotFoundException", "ResourceNotFoundException",
                k.describe_stream, StreamName=prov)
        names = k.list_streams()["StreamNames"]
        r.true("lifecycle: deleted streams are not listed", prov not in names and od not in names, f"{names}")

    def routing(self):
        r, k = self.r, self.k
        stream = self.name("route")
        self.create(stream, ShardCount=4)
        shards = self.shards(stream)
        r.eq("routing: four shards", len(shards), 4)
        r.eq("routing: 4-shard layout matches AWS (shard i starts at i * 2^126)",
             [int(s["HashKeyRange"]["StartingHashKey"]) for s in shards], [i * 2**126 for i in range(4)])
        mismatches = []
        for s in shards:
            start = int(s["HashKeyRange"]["StartingHashKey"])
            end = int(s["HashKeyRange"]["EndingHashKey"])
            for h in (start, start + 12345, end):
                got = k.put_record(StreamName=stream, Data=b"ehk", PartitionKey="ignored-key", ExplicitHashKey=str(h))
                if got["ShardId"] != s["ShardId"]:
                    mismatches.append((h, s["ShardId"], got["ShardId"]))
        r.true("routing: ExplicitHashKey (range start, inside, end) lands in the owning shard", not mismatches, str(mismatches[:3]))

        mismatches, seen = [], set()
        for i in range(40):
            key = f"partition-{i}"
            expected = self.owner(shards, self.md5_hash(key))
            got = k.put_record(StreamName=stream, Data=f"v{i}".encode(), PartitionKey=key)["ShardId"]
            seen.add(got)
            if got != expected:
                mismatches.append((key, expected, got))
        r.true("routing: PutRecord partition keys route by MD5", not mismatches, str(mismatches[:3]))
        r.eq("routing: 40 keys reach all four shards", len(seen), 4)

        entries = [{"Data": os.urandom(100), "PartitionKey": f"batch-{i}"} for i in range(200)]
        entries[7]["ExplicitHashKey"] = str(MAX_HASH)
        resp = k.put_records(StreamName=stream, Records=entries)
        r.eq("routing: PutRecords FailedRecordCount", resp.get("FailedRecordCount"), 0)
        r.eq("routing: PutRecords one result per record", len(resp["Records"]), len(entries))
        wrong = []
        for e, out in zip(entries, resp["Records"]):
            h = int(e["ExplicitHashKey"]) if "ExplicitHashKey" in e else self.md5_hash(e["PartitionKey"])
            if out.get("ShardId") != self.owner(shards, h):
                wrong.append((e["PartitionKey"], out.get("ShardId")))
        r.true("routing: PutRecords entries route by MD5 / ExplicitHashKey", not wrong, str(wrong[:3]))
        last = {}
        ordered = True
        for out in resp["Records"]:
            seq = int(out["SequenceNumber"])
            ordered &= seq > last.get(out["ShardId"], -1)
            last[out["ShardId"]] = seq
        r.true("routing: PutRecords sequence numbers increase per shard in request order", ordered)

        # Reading every shard back returns each PutRecords record on the shard it was reported on.
        by_shard = {}
        for s in shards:
            recs, _ = self.read_all(self.iterator(stream, s["ShardId"], "TRIM_HORIZON"))
            for rec in recs:
                by_shard[rec["SequenceNumber"]] = (s["ShardId"], bytes(rec["Data"]))
        lost = [
            e["PartitionKey"]
            for e, out in zip(entries, resp["Records"])
            if by_shard.get(out["SequenceNumber"]) != (out["ShardId"], e["Data"])
        ]
        r.true("routing: every PutRecords record reads back on its shard, byte-exact", not lost, f"{len(lost)} missing/different, e.g. {lost[:3]}")

        r.error("routing: ExplicitHashKey 2^128 -> InvalidArgumentException", "InvalidArgumentException",
                k.put_record, StreamName=stream, Data=b"x", PartitionKey="k", ExplicitHashKey=str(MAX_HASH + 1))
        r.error("routing: MergeShards of non-adjacent shards -> InvalidArgumentException", "InvalidArgumentException",
                k.merge_shards, StreamName=stream, ShardToMerge=self.sid(0), AdjacentShardToMerge=self.sid(2))
        r.error("routing: PutRecords with 501 records -> ValidationException", "ValidationException",
                self.raw.put_records, StreamName=stream,
                Records=[{"Data": b"x", "PartitionKey": "k"}] * 501)

    def iterators(self):
        r, k = self.r, self.k
        stream = self.name("iter")
        self.create(stream, ShardCount=1)
        shard = self.sid(0)
        payloads_a = [bytes(range(256)), "ünïcødé ✓".encode("utf-8"), b"\x00" * 7 + b"\xff"]
        batch_a = []
        for i, data in enumerate(payloads_a):
            out = k.put_record(StreamName=stream, Data=data, PartitionKey=f"a{i}")
            batch_a.append((out["SequenceNumber"], f"a{i}", data))
        # A timestamp strictly between the two batches (arrival times have ms resolution).
        time.sleep(0.05)
        between = self.now()
        time.sleep(0.05)
        payloads_b = [os.urandom(1000), b"{\"json\": true}", os.urandom(1)]
        resp = k.put_records(StreamName=stream, Records=[{"Data": d, "PartitionKey": f"b{i}"} for i, d in enumerate(payloads_b)])
        batch_b = [(out["SequenceNumber"], f"b{i}", d) for i, (out, d) in enumerate(zip(resp["Records"], payloads_b))]
        everything = batch_a + batch_b

        seqs = [int(s) for s, _, _ in everything]
        r.true("iterators: sequence numbers strictly increase", seqs == sorted(seqs) and len(set(seqs)) == len(seqs), str(seqs))

        latest = self.iterator(stream, shard, "LATEST")
        recs, resp = self.read_all(self.iterator(stream, shard, "TRIM_HORIZON"))
        self.same_records("iterators: TRIM_HORIZON reads every record byte-for-byte", recs, everything)
        r.true("iterators: open shard keeps a NextShardIterator", resp.get("NextShardIterator") is not None)
        r.true("iterators: MillisBehindLatest present", isinstance(resp.get("MillisBehindLatest"), int), str(resp.get("MillisBehindLatest")))
        arrivals = [x["ApproximateArrivalTimestamp"] for x in recs]
        r.true("iterators: ApproximateArrivalTimestamp non-decreasing and recent",
               arrivals == sorted(arrivals) and all(abs((self.now() - a).total_seconds()) < 120 for a in arrivals), str(arrivals[:2]))
        r.true("iterators: records carry EncryptionType NONE", all(x.get("EncryptionType") == "NONE" for x in recs),
               str({x.get("EncryptionType") for x in recs}))

        recs, _ = self.read_all(self.iterator(stream, shard, "TRIM_HORIZON"), limit=2)
        self.same_records("iterators: GetRecords Limit=2 pages through the same records", recs, everything)
        one = k.get_records(ShardIterator=self.iterator(stream, shard, "TRIM_HORIZON"), Limit=1)
        r.true("iterators: Limit=1 returns one record and MillisBehindLatest >= 0",
               len(one["Records"]) == 1 and one["MillisBehindLatest"] >= 0, str(len(one["Records"])))

        seq2 = batch_a[1][0]
        recs, _ = self.read_all(self.iterator(stream, shard, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seq2))
        self.same_records("iterators: AT_SEQUENCE_NUMBER starts at that record", recs, everything[1:])
        recs, _ = self.read_all(self.iterator(stream, shard, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seq2))
        self.same_records("iterators: AFTER_SEQUENCE_NUMBER starts after that record", recs, everything[2:])
        last = everything[-1][0]
        recs, _ = self.read_all(self.iterator(stream, shard, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=last))
        self.same_records("iterators: AFTER_SEQUENCE_NUMBER of the last record reads nothing", recs, [])
        recs, _ = self.read_all(self.iterator(stream, shard, "AT_TIMESTAMP", Timestamp=between))
        self.same_records("iterators: AT_TIMESTAMP between batches reads the second batch", recs, batch_b)
        recs, _ = self.read_all(self.iterator(stream, shard, "AT_TIMESTAMP", Timestamp=between - datetime.timedelta(hours=1)))
        self.same_records("iterators: AT_TIMESTAMP before the first record reads everything", recs, everything)
        recs, _ = self.read_all(self.iterator(stream, shard, "AT_TIMESTAMP", Timestamp=self.now() + datetime.timedelta(seconds=5)))
        self.same_records("iterators: AT_TIMESTAMP in the future reads nothing yet", recs, [])

        # LATEST was taken before the new records: it sees exactly them.
        first = k.get_records(ShardIterator=latest)
        r.eq("iterators: LATEST (taken after both batches) reads nothing at first", first["Records"], [])
        batch_c = []
        for i, data in enumerate([b"late-1", b"late-2"]):
            out = k.put_record(StreamName=stream, Data=data, PartitionKey=f"c{i}")
            batch_c.append((out["SequenceNumber"], f"c{i}", data))
        recs, _ = self.read_all(first["NextShardIterator"])
        self.same_records("iterators: LATEST then reads exactly the records put after it", recs, batch_c)
        recs, _ = self.read_all(self.iterator(stream, shard, "LATEST"))
        self.same_records("iterators: a fresh LATEST reads nothing", recs, [])

        out = k.put_record(StreamName=stream, Data=b"ordered", PartitionKey="c0", SequenceNumberForOrdering=batch_c[-1][0])
        r.true("iterators: SequenceNumberForOrdering gives a larger sequence number",
               int(out["SequenceNumber"]) > int(batch_c[-1][0]), out["SequenceNumber"])

        # Bad input.
        r.error("iterators: AT_SEQUENCE_NUMBER with a bad sequence number -> InvalidArgumentException",
                "InvalidArgumentException", k.get_shard_iterator, StreamName=stream, ShardId=shard,
                ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber="12345")
        r.error("iterators: AT_SEQUENCE_NUMBER without a sequence number -> InvalidArgumentException",
                "InvalidArgumentException", k.get_shard_iterator, StreamName=stream, ShardId=shard,
                ShardIteratorType="AT_SEQUENCE_NUMBER")
        r.error("iterators: unknown ShardIteratorType -> ValidationException", "ValidationException",
                k.get_shard_iterator, StreamName=stream, ShardId=shard, ShardIteratorType="FROM_THE_TOP")
        r.error("iterators: unknown shard -> ResourceNotFoundException", "ResourceNotFoundException",
                k.get_shard_iterator, StreamName=stream, ShardId=self.sid(99), ShardIteratorType="TRIM_HORIZON")
        it = self.iterator(stream, shard, "TRIM_HORIZON")
        mid = len(it) // 2
        tampered = it[:mid] + ("A" if it[mid] != "A" else "B") + it[mid + 1:]
        r.error("iterators: tampered iterator -> InvalidArgumentException", "InvalidArgumentException",
                k.get_records, ShardIterator=tampered)
        r.error("iterators: garbage iterator -> InvalidArgumentException", "InvalidArgumentException",
                k.get_records, ShardIterator="not-an-iterator")
        r.error("iterators: GetRecords Limit=0 -> ValidationException", "ValidationException",
                self.raw.get_records, ShardIterator=it, Limit=0)
        r.error("iterators: GetRecords Limit=10001 -> ValidationException", "ValidationException",
                self.raw.get_records, ShardIterator=it, Limit=10001)
        return stream, everything

    def resharding(self):
        r, k = self.r, self.k
        stream = self.name("reshard")
        self.create(stream, ShardCount=1)
        put = []
        for i in range(3):
            out = k.put_record(StreamName=stream, Data=f"parent-{i}".encode(), PartitionKey=f"p{i}")
            put.append((out["SequenceNumber"], f"p{i}", f"parent-{i}".encode()))
        # Distinct times between reshard steps, for the timestamp filters of ListShards.
        time.sleep(0.05)
        t_open = self.now()
        time.sleep(0.05)
        half = 2**127
        k.split_shard(StreamName=stream, ShardToSplit=self.sid(0), NewStartingHashKey=str(half))
        shards = {s["ShardId"]: s for s in self.shards(stream)}
        r.eq("resharding: split creates two children", sorted(shards), [self.sid(i) for i in range(3)])
        parent = shards.get(self.sid(0), {})
        end_seq = parent.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
        r.true("resharding: split parent is closed with EndingSequenceNumber >= its last record",
               end_seq is not None and int(end_seq) >= int(put[-1][0]), str(parent.get("SequenceNumberRange")))
        children_ok = all(
            shards.get(c, {}).get("ParentShardId") == self.sid(0) and "AdjacentParentShardId" not in shards.get(c, {})
            for c in (self.sid(1), self.sid(2))
        )
        r.true("resharding: split children name ParentShardId", children_ok,
               str([(c, shards.get(c, {}).get("ParentShardId")) for c in (self.sid(1), self.sid(2))]))
        r.eq("resharding: split children hash ranges",
             [(shards[c]["HashKeyRange"]["StartingHashKey"], shards[c]["HashKeyRange"]["EndingHashKey"]) for c in (self.sid(1), self.sid(2)) if c in shards],
             [("0", str(half - 1)), (str(half), str(MAX_HASH))])
        low = k.put_record(StreamName=stream, Data=b"low", PartitionKey="x", ExplicitHashKey="1")
        high = k.put_record(StreamName=stream, Data=b"high", PartitionKey="x", ExplicitHashKey=str(half))
        r.eq("resharding: records after a split go to the children", (low["ShardId"], high["ShardId"]), (self.sid(1), self.sid(2)))

        recs, resp = self.read_all(self.iterator(stream, self.sid(0), "TRIM_HORIZON"))
        self.same_records("resharding: closed parent still serves its records", recs, put)
        r.true("resharding: reading a closed parent to the end -> NextShardIterator absent",
               "NextShardIterator" not in resp or resp["NextShardIterator"] is None, str(resp.get("NextShardIterator"))[:40])
        children = sorted((c["ShardId"], c["ParentShards"]) for c in resp.get("ChildShards") or [])
        r.eq("resharding: ... and ChildShards present", children, [(self.sid(1), [self.sid(0)]), (self.sid(2), [self.sid(0)])])
        latest = k.get_records(ShardIterator=self.iterator(stream, self.sid(0), "LATEST"))
        r.true("resharding: LATEST on a closed shard -> no records, no NextShardIterator, ChildShards",
               not latest["Records"] and latest.get("NextShardIterator") is None and latest.get("ChildShards"),
               str({key: v for key, v in latest.items() if key != "ResponseMetadata"})[:200])

        time.sleep(0.05)
        t_split = self.now()
        time.sleep(0.05)
        k.merge_shards(StreamName=stream, ShardToMerge=self.sid(1), AdjacentShardToMerge=self.sid(2))
        shards = {s["ShardId"]: s for s in self.shards(stream)}
        merged = shards.get(self.sid(3), {})
        r.eq("resharding: merge child has ParentShardId and AdjacentParentShardId",
             (merged.get("ParentShardId"), merged.get("AdjacentParentShardId")), (self.sid(1), self.sid(2)))
        r.eq("resharding: merge child covers both ranges",
             (merged.get("HashKeyRange", {}).get("StartingHashKey"), merged.get("HashKeyRange", {}).get("EndingHashKey")),
             ("0", str(MAX_HASH)))
        r.true("resharding: both merge parents closed",
               all("EndingSequenceNumber" in shards.get(self.sid(i), {}).get("SequenceNumberRange", {}) for i in (1, 2)))
        recs, resp = self.read_all(self.iterator(stream, self.sid(1), "TRIM_HORIZON"))
        self.same_records("resharding: merge parent serves its record", recs, [(low["SequenceNumber"], "x", b"low")])
        r.eq("resharding: merge parent read to the end -> ChildShards",
             [(c["ShardId"], sorted(c["ParentShards"])) for c in resp.get("ChildShards") or []],
             [(self.sid(3), [self.sid(1), self.sid(2)])])
        r.true("resharding: merge parent read to the end -> NextShardIterator absent", resp.get("NextShardIterator") is None)

        time.sleep(0.05)
        t_merge = self.now()
        time.sleep(0.05)
        out = k.update_shard_count(StreamName=stream, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
        r.eq("resharding: UpdateShardCount response", (out.get("CurrentShardCount"), out.get("TargetShardCount"), out.get("StreamName")),
             (1, 2, stream))
        summary = k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        r.eq("resharding: UpdateShardCount -> OpenShardCount", summary["OpenShardCount"], 2)
        open_shards = self.shards(stream, ShardFilter={"Type": "AT_LATEST"})
        r.eq("resharding: UpdateShardCount -> even open ranges",
             [(s["HashKeyRange"]["StartingHashKey"], s["HashKeyRange"]["EndingHashKey"]) for s in open_shards],
             [("0", str(half - 1)), (str(half), str(MAX_HASH))])
        r.error("resharding: UpdateShardCount beyond double -> LimitExceededException", "LimitExceededException",
                k.update_shard_count, StreamName=stream, TargetShardCount=5, ScalingType="UNIFORM_SCALING")

        self.list_shards_filters(stream, t_open, t_split, t_merge, [s["ShardId"] for s in open_shards])

    def list_shards_filters(self, stream, t_open, t_split, t_merge, open_ids):
        r, k = self.r, self.k
        every = self.ids(self.shards(stream))
        total = len(every)
        r.true("listshards: lineage has four closed shards plus the open ones",
               every[:4] == [self.sid(i) for i in range(4)] and every[4:] == open_ids and len(open_ids) == 2, str(every))

        def ids(**kwargs):
            return self.ids(self.shards(stream, **kwargs))

        r.eq("listshards: AT_LATEST", ids(ShardFilter={"Type": "AT_LATEST"}), open_ids)
        r.eq("listshards: AFTER_SHARD_ID", ids(ShardFilter={"Type": "AFTER_SHARD_ID", "ShardId": self.sid(2)}), every[3:])
        r.eq("listshards: AT_TRIM_HORIZON", ids(ShardFilter={"Type": "AT_TRIM_HORIZON"}), [self.sid(0)])
        r.eq("listshards: FROM_TRIM_HORIZON", ids(ShardFilter={"Type": "FROM_TRIM_HORIZON"}), every)
        r.eq("listshards: AT_TIMESTAMP before the split", ids(ShardFilter={"Type": "AT_TIMESTAMP", "Timestamp": t_open}), [self.sid(0)])
        r.eq("listshards: AT_TIMESTAMP between split and merge", ids(ShardFilter={"Type": "AT_TIMESTAMP", "Timestamp": t_split}),
             [self.sid(1), self.sid(2)])
        r.eq("listshards: AT_TIMESTAMP between merge and UpdateShardCount", ids(ShardFilter={"Type": "AT_TIMESTAMP", "Timestamp": t_merge}),
             [self.sid(3)])
        r.eq("listshards: FROM_TIMESTAMP between split and merge", ids(ShardFilter={"Type": "FROM_TIMESTAMP", "Timestamp": t_split}),
             every[1:])
        r.eq("listshards: ExclusiveStartShardId", ids(ExclusiveStartShardId=self.sid(3)), every[4:])
        r.eq("listshards: by StreamARN", self.ids(k.list_shards(StreamARN=self.arn(stream))["Shards"]), every)

        pages, token = [], None
        resp = k.list_shards(StreamName=stream, MaxResults=2)
        for _ in range(20):
            pages.append(self.ids(resp["Shards"]))
            token = resp.get("NextToken")
            if not token:
                break
            resp = k.list_shards(NextToken=token, MaxResults=2)
        r.eq("listshards: MaxResults=2 pages via NextToken", pages, [every[i:i + 2] for i in range(0, total, 2)])
        pages = []
        resp = k.list_shards(StreamName=stream, MaxResults=1, ShardFilter={"Type": "AT_LATEST"})
        for _ in range(20):
            pages.append(self.ids(resp["Shards"]))
            if not resp.get("NextToken"):
                break
            resp = k.list_shards(NextToken=resp["NextToken"], MaxResults=1)
        r.eq("listshards: NextToken keeps the ShardFilter", pages, [[i] for i in open_ids])
        token = k.list_shards(StreamName=stream, MaxResults=1).get("NextToken")
        r.error("listshards: NextToken together with StreamName -> InvalidArgumentException", "InvalidArgumentException",
                k.list_shards, StreamName=stream, NextToken=token or "x")
        r.error("listshards: unknown stream -> ResourceNotFoundException", "ResourceNotFoundException",
                k.list_shards, StreamName=self.name("missing"))

    def tags(self):
        r, k = self.r, self.k
        stream = self.name("tags")
        self.create(stream, ShardCount=1, Tags={"team": "data"})

        def tag_map(resp):
            return {t["Key"]: t["Value"] for t in resp["Tags"]}

        r.eq("tags: CreateStream Tags", tag_map(k.list_tags_for_stream(StreamName=stream)), {"team": "data"})
        k.add_tags_to_stream(StreamName=stream, Tags={"env": "test", "owner": "me", "team": "platform"})
        resp = k.list_tags_for_stream(StreamName=stream)
        r.eq("tags: AddTagsToStream adds and overwrites", tag_map(resp), {"env": "test", "owner": "me", "team": "platform"})
        r.eq("tags: HasMoreTags false", resp["HasMoreTags"], False)
        first = k.list_tags_for_stream(StreamName=stream, Limit=1)
        r.true("tags: Limit=1 -> one tag, HasMoreTags", len(first["Tags"]) == 1 and first["HasMoreTags"], str(first["Tags"]))
        collected, start = [], None
        for _ in range(10):
            kwargs = {"ExclusiveStartTagKey": start} if start else {}
            page = k.list_tags_for_stream(StreamName=stream, Limit=1, **kwargs)
            collected.extend(t["Key"] for t in page["Tags"])
            if not page["HasMoreTags"]:
                break
            start = page["Tags"][-1]["Key"]
        r.eq("tags: ExclusiveStartTagKey paging", sorted(collected), ["env", "owner", "team"])
        k.remove_tags_from_stream(StreamName=stream, TagKeys=["owner"])
        r.eq("tags: RemoveTagsFromStream", tag_map(k.list_tags_for_stream(StreamName=stream)), {"env": "test", "team": "platform"})
        arn = self.arn(stream)
        k.tag_resource(ResourceARN=arn, Tags={"cost-center": "42"})
        r.eq("tags: TagResource / ListTagsForResource", tag_map(k.list_tags_for_resource(ResourceARN=arn)),
             {"env": "test", "team": "platform", "cost-center": "42"})
        k.untag_resource(ResourceARN=arn, TagKeys=["env", "cost-center"])
        r.eq("tags: UntagResource", tag_map(k.list_tags_for_resource(ResourceARN=arn)), {"team": "platform"})
        r.eq("tags: ListTagsForStream by StreamARN", tag_map(k.list_tags_for_stream(StreamARN=arn)), {"team": "platform"})
        r.error("tags: ListTagsForResource of an unknown stream -> ResourceNotFoundException", "ResourceNotFoundException",
                k.list_tags_for_resource, ResourceARN=self.arn(self.name("missing")))

    def encryption_and_monitoring(self):
        r, k = self.r, self.k
        stream = self.name("sse")
        self.create(stream, ShardCount=1)
        k.start_stream_encryption(StreamName=stream, EncryptionType="KMS", KeyId="alias/aws/kinesis")
        s = k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        r.eq("encryption: StartStreamEncryption -> summary", (s.get("EncryptionType"), s.get("KeyId")), ("KMS", "alias/aws/kinesis"))
        d = k.describe_stream(StreamName=stream)["StreamDescription"]
        r.eq("encryption: DescribeStream EncryptionType/KeyId", (d.get("EncryptionType"), d.get("KeyId")), ("KMS", "alias/aws/kinesis"))
        out = k.put_record(StreamName=stream, Data=b"secret", PartitionKey="k")
        r.eq("encryption: PutRecord EncryptionType", out.get("EncryptionType"), "KMS")
        out = k.put_records(StreamName=stream, Records=[{"Data": b"secret2", "PartitionKey": "k"}])
        r.eq("encryption: PutRecords EncryptionType", out.get("EncryptionType"), "KMS")
        recs, _ = self.read_all(self.iterator(stream, self.sid(0), "TRIM_HORIZON"))
        r.eq("encryption: records read back as KMS, plaintext data", [(x.get("EncryptionType"), bytes(x["Data"])) for x in recs],
             [("KMS", b"secret"), ("KMS", b"secret2")])
        k.stop_stream_encryption(StreamName=stream, EncryptionType="KMS", KeyId="alias/aws/kinesis")
        s = k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        r.eq("encryption: StopStreamEncryption -> NONE", s.get("EncryptionType"), "NONE")
        out = k.put_record(StreamName=stream, Data=b"plain", PartitionKey="k")
        r.eq("encryption: PutRecord after stop -> NONE", out.get("EncryptionType"), "NONE")

        out = k.enable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["IncomingBytes", "OutgoingRecords"])
        r.eq("monitoring: enable -> Current/Desired",
             (sorted(out.get("CurrentShardLevelMetrics", [])), sorted(out.get("DesiredShardLevelMetrics", [])), out.get("StreamName")),
             ([], ["IncomingBytes", "OutgoingRecords"], stream))
        em = k.describe_stream(StreamName=stream)["StreamDescription"]["EnhancedMonitoring"]
        r.eq("monitoring: DescribeStream EnhancedMonitoring",
             sorted(m for x in em for m in x["ShardLevelMetrics"]), ["IncomingBytes", "OutgoingRecords"])
        out = k.enable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["ALL"])
        r.eq("monitoring: enable ALL -> seven metrics", len(out.get("DesiredShardLevelMetrics", [])), 7)
        out = k.disable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["ALL"])
        r.eq("monitoring: disable ALL -> none", (len(out.get("CurrentShardLevelMetrics", [])), out.get("DesiredShardLevelMetrics", [])), (7, []))
        r.error("monitoring: unknown metric -> ValidationException", "ValidationException",
                k.enable_enhanced_monitoring, StreamName=stream, ShardLevelMetrics=["CpuTemperature"])

        limits = k.describe_limits()
        r.true("limits: DescribeLimits fields",
               all(isinstance(limits.get(f), int) for f in ("ShardLimit", "OpenShardCount", "OnDemandStreamCount", "OnDemandStreamCountLimit"))
               and limits["ShardLimit"] > 0 and limits["OnDemandStreamCountLimit"] > 0,
               str({key: v for key, v in limits.items() if key != "ResponseMetadata"}))
        r.true("limits: OpenShardCount counts this stream", limits.get("OpenShardCount", 0) >= 1, str(limits.get("OpenShardCount")))
        return stream

    def retention(self, stream):
        r, k = self.r, self.k
        k.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=48)
        r.eq("retention: increase to 48", k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["RetentionPeriodHours"], 48)
        r.error("retention: increase to a shorter period -> InvalidArgumentException", "InvalidArgumentException",
                k.increase_stream_retention_period, StreamName=stream, RetentionPeriodHours=30)
        k.decrease_stream_retention_period(StreamName=stream, RetentionPeriodHours=24)
        r.eq("retention: decrease to 24", k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["RetentionPeriodHours"], 24)
        r.error("retention: decrease below 24 h -> InvalidArgumentException", "InvalidArgumentException",
                k.decrease_stream_retention_period, StreamName=stream, RetentionPeriodHours=12)
        r.error("retention: increase past 8760 h -> InvalidArgumentException", "InvalidArgumentException",
                k.increase_stream_retention_period, StreamName=stream, RetentionPeriodHours=9000)
        r.error("retention: unknown stream -> ResourceNotFoundException", "ResourceNotFoundException",
                k.increase_stream_retention_period, StreamName=self.name("missing"), RetentionPeriodHours=48)

    def policies(self, stream):
        r, k = self.r, self.k
        arn = self.arn(stream)
        policy = json.dumps({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "compat",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{self.account_id}:root"},
                "Action": ["kinesis:GetRecords", "kinesis:DescribeStreamSummary"],
                "Resource": arn,
            }],
        })
        k.put_resource_policy(ResourceARN=arn, Policy=policy)
        got = k.get_resource_policy(ResourceARN=arn).get("Policy")
        r.eq("policies: Get returns the policy Put", json.loads(got or "null"), json.loads(policy))
        k.delete_resource_policy(ResourceARN=arn)
        after = k.get_resource_policy(ResourceARN=arn).get("Policy")
        r.true("policies: Get after Delete no longer returns it", after in (None, "", "{}"), str(after))
        r.error("policies: PutResourcePolicy on an unknown stream -> ResourceNotFoundException", "ResourceNotFoundException",
                k.put_resource_policy, ResourceARN=self.arn(self.name("missing")), Policy=policy)

    def settings(self):
        r, k = self.r, self.k
        before = k.describe_account_settings().get("MinimumThroughputBillingCommitment", {})
        r.true("account: DescribeAccountSettings status", before.get("Status") in (
            "ENABLED", "DISABLED", "ENABLED_UNTIL_EARLIEST_ALLOWED_END"), str(before))
        if before.get("Status") == "DISABLED":
            out = k.update_account_settings(MinimumThroughputBillingCommitment={"Status": "ENABLED"})["MinimumThroughputBillingCommitment"]
            r.true("account: enable commitment -> ENABLED with StartedAt and EarliestAllowedEndAt",
                   out.get("Status") == "ENABLED" and out.get("StartedAt") and out.get("EarliestAllowedEndAt"), str(out))
            out = k.update_account_settings(MinimumThroughputBillingCommitment={"Status": "DISABLED"})["MinimumThroughputBillingCommitment"]
            r.true("account: disable within a day -> ENABLED_UNTIL_EARLIEST_ALLOWED_END with EndedAt",
                   out.get("Status") == "ENABLED_UNTIL_EARLIEST_ALLOWED_END" and out.get("EndedAt"), str(out))
            now = k.describe_account_settings().get("MinimumThroughputBillingCommitment", {})
            r.eq("account: DescribeAccountSettings reflects the update", now.get("Status"), "ENABLED_UNTIL_EARLIEST_ALLOWED_END")
        r.error("account: unknown commitment status -> ValidationException", "ValidationException",
                k.update_account_settings, MinimumThroughputBillingCommitment={"Status": "MAYBE"})

        stream = self.name("modes")
        self.create(stream, ShardCount=2)
        arn = self.arn(stream)
        k.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
        s = k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        r.eq("modes: UpdateStreamMode -> ON_DEMAND", s.get("StreamModeDetails", {}).get("StreamMode"), "ON_DEMAND")
        out = k.update_stream_warm_throughput(StreamARN=arn, WarmThroughputMiBps=25)
        r.eq("modes: UpdateStreamWarmThroughput", out.get("WarmThroughput", {}).get("TargetMiBps"), 25)
        k.update_max_record_size(StreamARN=arn, MaxRecordSizeInKiB=2048)
        s = k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        r.eq("modes: UpdateMaxRecordSize", s.get("MaxRecordSizeInKiB"), 2048)
        big = os.urandom(1536 * 1024)
        out = k.put_record(StreamName=stream, Data=big, PartitionKey="big")
        recs, _ = self.read_all(self.iterator(stream, out["ShardId"], "AT_SEQUENCE_NUMBER", StartingSequenceNumber=out["SequenceNumber"]), limit=1, max_calls=1)
        r.true("modes: a 1.5 MiB record fits after UpdateMaxRecordSize and reads back", recs and bytes(recs[0]["Data"]) == big)
        k.update_stream_record_distribution_strategy(StreamARN=arn, RecordDistributionStrategy="USER_PARTITION_KEY")
        s = k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        r.eq("modes: UpdateStreamRecordDistributionStrategy", s.get("RecordDistributionStrategy"), "USER_PARTITION_KEY")
        r.error("modes: UpdateShardCount on ON_DEMAND -> ValidationException", "ValidationException",
                k.update_shard_count, StreamName=stream, TargetShardCount=3, ScalingType="UNIFORM_SCALING")

    def errors(self, stream):
        r, k, raw = self.r, self.k, self.raw
        missing = self.name("missing")
        e = r.error("errors: DescribeStream unknown -> ResourceNotFoundException", "ResourceNotFoundException",
                    k.describe_stream, StreamName=missing)
        if e is not None:
            r.true("errors: error responses carry a request id", e.response.get("ResponseMetadata", {}).get("RequestId"))
            r.true("errors: error message mentions the stream", missing in (e.response.get("Error", {}).get("Message") or ""),
                   e.response.get("Error", {}).get("Message"))
        r.error("errors: DescribeStreamSummary unknown -> ResourceNotFoundException", "ResourceNotFoundException",
                k.describe_stream_summary, StreamName=missing)
        r.error("errors: DeleteStream unknown -> ResourceNotFoundException", "ResourceNotFoundException",
                k.delete_stream, StreamName=missing)
        r.error("errors: PutRecord unknown stream -> ResourceNotFoundException", "ResourceNotFoundException",
                k.put_record, StreamName=missing, Data=b"x", PartitionKey="k")
        r.error("errors: GetShardIterator unknown stream -> ResourceNotFoundException", "ResourceNotFoundException",
                k.get_shard_iterator, StreamName=missing, ShardId=self.sid(0), ShardIteratorType="LATEST")
        r.error("errors: CreateStream duplicate -> ResourceInUseException", "ResourceInUseException",
                k.create_stream, StreamName=stream, ShardCount=1)
        r.error("errors: CreateStream bad name -> ValidationException", "ValidationException",
                k.create_stream, StreamName="bad name!", ShardCount=1)
        r.error("errors: CreateStream 129-char name -> ValidationException", "ValidationException",
                raw.create_stream, StreamName="n" * 129, ShardCount=1)
        r.error("errors: CreateStream without StreamName -> ValidationException", "ValidationException",
                raw.create_stream, ShardCount=1)
        r.error("errors: CreateStream ShardCount=0 -> ValidationException", "ValidationException",
                raw.create_stream, StreamName=self.name("zero"), ShardCount=0)
        r.error("errors: PutRecord without PartitionKey -> ValidationException", "ValidationException",
                raw.put_record, StreamName=stream, Data=b"x")
        r.error("errors: PutRecord without Data -> ValidationException", "ValidationException",
                raw.put_record, StreamName=stream, PartitionKey="k")
        r.error("errors: PutRecord 257-char partition key -> ValidationException", "ValidationException",
                raw.put_record, StreamName=stream, Data=b"x", PartitionKey="k" * 257)
        r.error("errors: PutRecord over 1 MiB -> ValidationException", "ValidationException",
                k.put_record, StreamName=stream, Data=b"x" * (1024 * 1024 + 1), PartitionKey="k")
        r.error("errors: GetShardIterator without ShardId -> ValidationException", "ValidationException",
                raw.get_shard_iterator, StreamName=stream, ShardIteratorType="LATEST")
        r.error("errors: neither StreamName nor StreamARN -> InvalidArgumentException", "InvalidArgumentException",
                k.describe_stream_summary)
        r.error("errors: StreamARN of another account -> ResourceNotFoundException", "ResourceNotFoundException",
                k.describe_stream_summary, StreamARN=f"arn:aws:kinesis:{REGION}:111122223333:stream/{stream}")
        r.error("errors: sequence number from another stream -> InvalidArgumentException", "InvalidArgumentException",
                k.get_shard_iterator, StreamName=stream, ShardId=self.sid(0), ShardIteratorType="AT_SEQUENCE_NUMBER",
                StartingSequenceNumber="49" + "0" * 12 + "1".rjust(22, "0") + "1".rjust(20, "0"))

    def fanout(self):
        """Enhanced fan-out through boto3: consumer lifecycle and a SubscribeToShard event stream."""
        r, k = self.r, self.k
        stream = self.name("fanout")
        self.create(stream, ShardCount=1)
        arn = self.arn(stream)
        consumer = k.register_stream_consumer(StreamARN=arn, ConsumerName="compat")["Consumer"]
        r.true("fanout: consumer ARN format", consumer["ConsumerARN"].startswith(f"{arn}/consumer/compat:"))
        described = k.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])["ConsumerDescription"]
        r.eq("fanout: consumer ACTIVE", described["ConsumerStatus"], "ACTIVE")
        listed = k.list_stream_consumers(StreamARN=arn)["Consumers"]
        r.eq("fanout: list consumers", [c["ConsumerName"] for c in listed], ["compat"])
        for i in range(3):
            k.put_record(StreamName=stream, PartitionKey="k", Data=f"fan-{i}".encode())
        sub = k.subscribe_to_shard(
            ConsumerARN=consumer["ConsumerARN"],
            ShardId=self.sid(0),
            StartingPosition={"Type": "TRIM_HORIZON"},
        )
        got = []
        pushed_after_subscribe = False
        started = time.monotonic()
        for event in sub["EventStream"]:
            records = event.get("SubscribeToShardEvent", {}).get("Records", [])
            got.extend(rec["Data"] for rec in records)
            if len(got) == 3 and not pushed_after_subscribe:
                k.put_record(StreamName=stream, PartitionKey="k", Data=b"fan-live")
                pushed_after_subscribe = True
            if len(got) >= 4 or time.monotonic() - started > 15:
                break
        sub["EventStream"].close()
        r.eq("fanout: boto3 receives existing then live records", got, [b"fan-0", b"fan-1", b"fan-2", b"fan-live"])
        r.error(
            "fanout: resubscribe within 5 s is ResourceInUse",
            "ResourceInUseException",
            k.subscribe_to_shard,
            ConsumerARN=consumer["ConsumerARN"],
            ShardId=self.sid(0),
            StartingPosition={"Type": "LATEST"},
        )
        r.error(
            "fanout: delete stream with consumers is ResourceInUse",
            "ResourceInUseException",
            k.delete_stream,
            StreamName=stream,
        )
        k.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
        r.error(
            "fanout: deregistered consumer is gone",
            "ResourceNotFoundException",
            k.describe_stream_consumer,
            ConsumerARN=consumer["ConsumerARN"],
        )

    def cbor(self):
        """AWS CBOR 1.1 built by hand with cbor2, as the Java SDK speaks it."""
        import cbor2
        import urllib.request

        r = self.r
        stream = self.name("cbor")
        self.create(stream, ShardCount=1)

        def loads(raw):
            # AWS CBOR 1.1 puts epoch *milliseconds* in tag 1 (the Java SDK v2's AwsCborProtocolFactory
            # reads and writes UNIX_TIMESTAMP_MILLIS); standard CBOR readers assume seconds.
            return cbor2.loads(raw, semantic_decoders={1: lambda value, _immutable: ("tag1", value)})

        def call(target, body, stream_response=False):
            req = urllib.request.Request(
                self.endpoint,
                data=cbor2.dumps(body),
                method="POST",
                headers={
                    "X-Amz-Target": f"Kinesis_20131202.{target}",
                    "Content-Type": "application/x-amz-cbor-1.1",
                },
            )
            resp = urllib.request.urlopen(req, timeout=10)
            if stream_response:
                return resp
            return resp.headers.get("Content-Type"), loads(resp.read())

        payload = bytes([0, 159, 146, 150, 255])
        ctype, out = call("PutRecords", {"StreamName": stream, "Records": [{"Data": payload, "PartitionKey": "k"}]})
        r.eq("cbor: PutRecords answers in CBOR", ctype, "application/x-amz-cbor-1.1")
        r.eq("cbor: PutRecords FailedRecordCount", out.get("FailedRecordCount"), 0)
        _, it = call(
            "GetShardIterator",
            {"StreamName": stream, "ShardId": self.sid(0), "ShardIteratorType": "TRIM_HORIZON"},
        )
        _, page = call("GetRecords", {"ShardIterator": it["ShardIterator"]})
        record = page["Records"][0]
        r.eq("cbor: GetRecords data is a byte string", record["Data"], payload)
        stamp = record["ApproximateArrivalTimestamp"]
        r.true(
            "cbor: arrival timestamp is tag 1 with epoch milliseconds",
            isinstance(stamp, tuple) and stamp[0] == "tag1" and abs(stamp[1] - time.time() * 1000) < 600_000,
            repr(stamp),
        )
        consumer = self.k.register_stream_consumer(StreamARN=self.arn(stream), ConsumerName="cbor")["Consumer"]
        resp = call(
            "SubscribeToShard",
            {
                "ConsumerARN": consumer["ConsumerARN"],
                "ShardId": self.sid(0),
                "StartingPosition": {"Type": "TRIM_HORIZON"},
            },
            stream_response=True,
        )
        r.eq("cbor: SubscribeToShard is an event stream", resp.headers.get("Content-Type"), "application/vnd.amazon.eventstream")
        events = []
        for _ in range(2):
            prelude = resp.read(12)
            total, headers_len = int.from_bytes(prelude[:4], "big"), int.from_bytes(prelude[4:8], "big")
            rest = resp.read(total - 12)
            raw_headers, payload_bytes = rest[:headers_len], rest[headers_len:-4]
            headers, i = {}, 0
            while i < len(raw_headers):
                n = raw_headers[i]
                name = raw_headers[i + 1 : i + 1 + n].decode()
                vlen = int.from_bytes(raw_headers[i + 2 + n : i + 4 + n], "big")
                headers[name] = raw_headers[i + 4 + n : i + 4 + n + vlen].decode()
                i += 4 + n + vlen
            events.append((headers, payload_bytes))
        resp.close()
        r.eq("cbor: initial-response first", events[0][0].get(":event-type"), "initial-response")
        first = loads(events[1][1])
        r.eq("cbor: event records carry byte-string data", first["Records"][0]["Data"], payload)
        self.k.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])

    def run(self):
        def scenario(fn, *args):
            try:
                return fn(*args)
            except Exception as exc:  # one broken scenario must not hide the others
                self.r.record(f"{fn.__name__}: scenario completed", False, f"{type(exc).__name__}: {exc}")
                traceback.print_exc(limit=3, file=sys.stdout)
                return None

        scenario(self.lifecycle)
        scenario(self.routing)
        it = scenario(self.iterators)
        scenario(self.resharding)
        scenario(self.tags)
        sse = scenario(self.encryption_and_monitoring)
        if sse:
            scenario(self.retention, sse)
            scenario(self.policies, sse)
        scenario(self.settings)
        scenario(self.fanout)
        scenario(self.cbor)
        if it:
            scenario(self.errors, it[0])
        for stream in self.created:
            try:
                self.k.delete_stream(StreamName=stream)
            except ClientError:
                pass  # already deleted by its scenario
        return self.r


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="e.g. http://127.0.0.1:4567")
    parser.add_argument("--account-id", default="000000000000", help="account id the broker puts in ARNs")
    parser.add_argument("--counts-file", help="write {passed, failed, xfailed} here instead of the closing line")
    args = parser.parse_args()
    started = time.monotonic()
    results = Suite(args.endpoint, args.account_id).run()
    print(f"boto3 checks took {time.monotonic() - started:.1f} s; {results.xfailed} expected failures", flush=True)
    if results.failures:
        print("boto3 failures: " + "; ".join(results.failures), flush=True)
    if args.counts_file:
        with open(args.counts_file, "w") as f:
            json.dump({"passed": results.passed, "failed": results.failed, "xfailed": results.xfailed}, f)
    else:
        print(f"{results.passed} passed, {results.failed} failed", flush=True)
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
