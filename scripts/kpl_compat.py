#!/usr/bin/env python3
"""KPL aggregation compatibility of kcl::aggregation with aws-kinesis-agg (PyPI `aws_kinesis_agg`).

Driven by scripts/kpl-compat.sh, in two steps around a Rust test (`kpl_compat_files`):

  generate --dir D   aggregates test cases with aws-kinesis-agg's RecordAggregator and writes
                     D/py/*.bin + D/py-manifest.json (the user records each file must yield, plus
                     corrupt inputs that must come back unchanged), and D/cases.json (the same
                     user records, for our Aggregator).
  check --dir D      reads the Rust side's D/rs-results.json (our de-aggregation of D/py/*.bin)
                     and de-aggregates our D/rs/*.bin (listed in D/rs-manifest.json) with
                     aws-kinesis-agg's deaggregator, comparing byte-exact; prints one PASS/FAIL
                     line per check and `N passed, M failed` last; exits 1 on any failure.
"""

import argparse
import base64
import hashlib
import json
import os
import random
import sys

# The aggregator module first: it puts the package's directory on sys.path, which messages_pb2
# needs to import its sibling config_pb2.
from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from aws_kinesis_agg import MAGIC, messages_pb2

KPL_DEFAULT_MAX = 51200  # the KPL's AggregationMaxSize default
KINESIS_MAX = 1024 * 1024


def cases():
    """(name, max_size, [(partition_key, explicit_hash_key or None, data)]) to aggregate."""
    rng = random.Random(20240605)

    def blob(n):
        return bytes(rng.getrandbits(8) for _ in range(n))

    yield "single", KPL_DEFAULT_MAX, [("only", None, b"just one record")]
    yield "shared-partition-keys", KPL_DEFAULT_MAX, [
        ("user-%d" % (i % 5), None, ("event %d" % i).encode()) for i in range(50)
    ]
    yield "explicit-hash-keys", KPL_DEFAULT_MAX, [
        ("pk-%d" % i, str([0, 2**127, 2**128 - 1][i % 3]), blob(i)) for i in range(30)
    ]
    yield "mixed-explicit-hash-keys", KPL_DEFAULT_MAX, [
        ("pk-%d" % i, str(i * 1000) if i % 2 else None, blob(10)) for i in range(20)
    ]
    yield "unicode-partition-keys", KPL_DEFAULT_MAX, [
        (key, None, key.encode()) for key in ["ключ", "日本語のキー", "🔑", "é" * 256, "a"]
    ]
    yield "empty-payloads", KPL_DEFAULT_MAX, [("k%d" % i, None, b"") for i in range(5)]
    # Payloads that look like aggregates themselves must come out verbatim, not unpacked again.
    yield "nested-magic-payloads", KPL_DEFAULT_MAX, [
        ("nest", None, MAGIC + blob(40)),
        ("nest", None, MAGIC),
    ]
    yield "many-aggregates", KPL_DEFAULT_MAX, [
        ("shard-key-%d" % (i % 13), None, blob(1000)) for i in range(200)
    ]
    yield "near-kinesis-limit", KINESIS_MAX, [
        ("big", None, blob(1_000_000)),
        ("big", None, blob(600 * 1024)),
        ("big", None, blob(600 * 1024)),
    ]


def hexs(data):
    return data.hex()


def user_record(pk, ehk, data, sub):
    return {"pk": pk, "ehk": ehk, "data": hexs(data), "sub": sub, "aggregated": True}


def python_aggregates(max_size, records):
    """aws-kinesis-agg's aggregates of `records`, as (partition key, data, user record count)."""
    aggregator = RecordAggregator(max_size=max_size)
    out = []
    for pk, ehk, data in records:
        finished = aggregator.add_user_record(pk, data, ehk)
        if finished is not None:
            out.append(finished)
    last = aggregator.clear_and_get()
    if last is not None:
        out.append(last)
    return [(a.get_partition_key(), a.get_contents()[2], a.get_num_user_records()) for a in out]


def framed(body):
    return MAGIC + body + hashlib.md5(body).digest()


def corrupt_inputs():
    """(name, partition key, data) that a consumer must deliver unchanged, as one record."""
    agg = python_aggregates(KPL_DEFAULT_MAX, [("a", None, b"one"), ("b", None, b"two")])[0][1]
    flipped = bytearray(agg)
    flipped[len(MAGIC) + 3] ^= 0x10
    yield "corrupt: flipped bit in the body", "outer", bytes(flipped)
    flipped = bytearray(agg)
    flipped[-1] ^= 0x01
    yield "corrupt: flipped bit in the digest", "outer", bytes(flipped)
    yield "corrupt: truncated", "outer", agg[:-5]
    yield "corrupt: magic only", "outer", MAGIC
    yield "corrupt: protobuf garbage with a valid digest", "outer", framed(b"\x0f\x01\xff")
    bad_index = messages_pb2.AggregatedRecord()
    bad_index.partition_key_table.append("k")
    record = bad_index.records.add()
    record.partition_key_index = 1
    record.data = b"payload"
    yield "corrupt: partition key index past the table", "outer", framed(
        bad_index.SerializeToString()
    )
    yield "plain record", "plain-key", b'{"not": "aggregated"}'
    yield "plain record, empty", "plain-key", b""


def generate(out):
    os.makedirs(os.path.join(out, "py"), exist_ok=True)
    inputs, case_list = [], []
    for name, max_size, records in cases():
        case_list.append(
            {
                "name": name,
                "max_size": max_size,
                "records": [{"pk": pk, "ehk": ehk, "data": hexs(d)} for pk, ehk, d in records],
            }
        )
        consumed = 0
        for i, (pk, data, count) in enumerate(python_aggregates(max_size, records)):
            file = "py/%s-%d.bin" % (name, i)
            with open(os.path.join(out, file), "wb") as f:
                f.write(data)
            expected = [
                user_record(rpk, rehk, rdata, sub)
                for sub, (rpk, rehk, rdata) in enumerate(records[consumed : consumed + count])
            ]
            consumed += count
            inputs.append(
                {"name": "%s #%d" % (name, i), "file": file, "partition_key": pk,
                 "expected": expected}
            )
    for i, (name, pk, data) in enumerate(corrupt_inputs()):
        file = "py/corrupt-%d.bin" % i
        with open(os.path.join(out, file), "wb") as f:
            f.write(data)
        expected = [{"pk": pk, "ehk": None, "data": hexs(data), "sub": 0, "aggregated": False}]
        inputs.append({"name": name, "file": file, "partition_key": pk, "expected": expected})
    with open(os.path.join(out, "py-manifest.json"), "w") as f:
        json.dump({"inputs": inputs}, f)
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"cases": case_list}, f)
    print("wrote %d aggregates and %d cases to %s" % (len(inputs), len(case_list), out))


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, name, detail=""):
        if ok:
            self.passed += 1
            print("PASS %s%s" % (name, ": " + detail if detail else ""))
        else:
            self.failed += 1
            print("FAIL %s: %s" % (name, detail))


def effective_hash_key(pk, ehk):
    if ehk is not None:
        return int(ehk)
    return int.from_bytes(hashlib.md5(pk.encode("utf-8")).digest(), "big")


def python_deaggregate(pk, data):
    kinesis = {"SequenceNumber": "1", "PartitionKey": pk, "ApproximateArrivalTimestamp": 0,
               "Data": data}
    return [r["kinesis"] for r in iter_deaggregate_records([kinesis], data_format="Boto3")]


def check_ours_with_python(out, case, aggregates, tally):
    """aws-kinesis-agg de-aggregates our aggregates of `case` into exactly its user records."""
    name, max_size = case["name"], case["max_size"]
    expected = [(r["pk"], r["ehk"], bytes.fromhex(r["data"])) for r in case["records"]]
    got, problems, quirks = [], [], 0
    for agg in aggregates:
        with open(os.path.join(out, agg["file"]), "rb") as f:
            data = f.read()
        first = len(got)
        if len(data) + len(agg["partition_key"].encode()) > max_size:
            problems.append("%s is over the %d-byte limit" % (agg["file"], max_size))
        users = python_deaggregate(agg["partition_key"], data)
        if len(users) != agg["user_records"] or not all(u.get("aggregated") for u in users):
            problems.append("%s: %d records (%d aggregated), %d aggregated expected"
                            % (agg["file"], len(users), sum(bool(u.get("aggregated")) for u in users),
                               agg["user_records"]))
        any_ehk = any(e[1] is not None for e in expected[first : first + len(users)])
        for sub, user in enumerate(users):
            if not user.get("aggregated"):
                problems.append("%s: passed through as a plain record" % agg["file"])
                continue
            if user["subSequenceNumber"] != sub:
                problems.append("%s: sub-sequence number %s at %d"
                                % (agg["file"], user["subSequenceNumber"], sub))
            ehk = user["explicitHashKey"]
            want = expected[len(got)] if len(got) < len(expected) else None
            if want is not None and want[1] is None and ehk is not None and any_ehk:
                # aws-kinesis-agg's deaggregator reads explicit_hash_key_index without checking
                # presence, so a record without a key reports the table's first entry.
                ehk = None
                quirks += 1
            got.append((user["partitionKey"], ehk, base64.b64decode(user["data"])))
        if got[first:first + 1]:
            pk, ehk, _ = got[first]
            if agg["partition_key"] != pk:
                problems.append("%s: partition key %r, first record's is %r"
                                % (agg["file"], agg["partition_key"], pk))
            routed = effective_hash_key(pk, expected[first][1])
            if int(agg["explicit_hash_key"]) != routed:
                problems.append("%s: explicit hash key %s does not route like the first record (%d)"
                                % (agg["file"], agg["explicit_hash_key"], routed))
    if got != expected:
        diff = next((i for i, (g, e) in enumerate(zip(got, expected)) if g != e),
                    min(len(got), len(expected)))
        problems.append("user records differ from record %d (%d got, %d expected)"
                        % (diff, len(got), len(expected)))
    detail = "%d user records in %d aggregates" % (len(expected), len(aggregates))
    if quirks:
        detail += " (%d keyless records reported with the table's first key: aws-kinesis-agg quirk)" % quirks
    tally.check(not problems, "Aggregator -> aws-kinesis-agg deaggregator: " + name,
                "; ".join(problems) if problems else detail)


def check_identical_bytes(out, case, aggregates, tally):
    """Where both split the records alike, our aggregates are byte-identical to aws-kinesis-agg's."""
    records = [(r["pk"], r["ehk"], bytes.fromhex(r["data"])) for r in case["records"]]
    theirs = python_aggregates(case["max_size"], records)
    if [count for _, _, count in theirs] != [a["user_records"] for a in aggregates]:
        # aws-kinesis-agg counts only the data against the limit, we count the partition key too
        # (as Kinesis does), so near the limit the split points may differ.
        print("SKIP byte-identical aggregates: %s (split points differ: %s vs %s)"
              % (case["name"], [c for _, _, c in theirs], [a["user_records"] for a in aggregates]))
        return
    for agg, (_, data, _) in zip(aggregates, theirs):
        with open(os.path.join(out, agg["file"]), "rb") as f:
            ours = f.read()
        tally.check(ours == data, "byte-identical to aws-kinesis-agg: " + agg["file"],
                    "%d bytes" % len(ours) if ours == data else
                    "ours %d bytes, theirs %d bytes" % (len(ours), len(data)))


def check(out):
    tally = Tally()
    try:
        with open(os.path.join(out, "rs-results.json")) as f:
            results = json.load(f)["results"]
    except (OSError, ValueError, KeyError) as e:
        tally.check(False, "aws-kinesis-agg aggregator -> deaggregate", "no Rust results: %s" % e)
        results = []
    for r in results:
        tally.check(r["ok"], "aws-kinesis-agg aggregator -> deaggregate: " + r["name"], r["detail"])

    try:
        with open(os.path.join(out, "rs-manifest.json")) as f:
            ours = json.load(f)["aggregates"]
        with open(os.path.join(out, "cases.json")) as f:
            case_list = json.load(f)["cases"]
    except (OSError, ValueError, KeyError) as e:
        tally.check(False, "Aggregator -> aws-kinesis-agg deaggregator", "no Rust aggregates: %s" % e)
        ours, case_list = [], []
    for case in case_list:
        aggregates = [a for a in ours if a["case"] == case["name"]]
        for step in (check_ours_with_python, check_identical_bytes):
            try:
                step(out, case, aggregates, tally)
            except Exception as e:  # a crash is one more failure to report, not the end
                tally.check(False, "%s: %s" % (step.__name__, case["name"]), repr(e))

    print("%d passed, %d failed" % (tally.passed, tally.failed))
    return 0 if tally.failed == 0 else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["generate", "check"])
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    if args.step == "generate":
        generate(args.dir)
        return 0
    return check(args.dir)


if __name__ == "__main__":
    sys.exit(main())
