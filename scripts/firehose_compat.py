"""Firehose compatibility checks of local-broker with boto3, delivering into moto_server's S3.

Run by scripts/firehose-compat.sh, which starts moto_server and a broker with
--s3-endpoint pointing at it. Prints PASS/FAIL per check and writes {"passed", "failed"} to
--counts-file.
"""

import argparse
import gzip
import json
import re
import sys
import time

import boto3
import botocore.exceptions

ROLE = "arn:aws:iam::000000000000:role/firehose"
PASSED = 0
FAILED = 0


def check(name, ok, detail=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"PASS {name}")
    else:
        FAILED += 1
        print(f"FAIL {name}: {detail}")


def error_code(call):
    try:
        call()
    except botocore.exceptions.ClientError as err:
        return err.response["Error"]["Code"], err.response["Error"].get("Message", "")
    return None, ""


def wait_for_objects(s3, bucket, count, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        if len(listed) >= count or time.monotonic() > deadline:
            return listed
        time.sleep(0.2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True, help="the broker")
    parser.add_argument("--s3-endpoint", required=True, help="moto_server")
    parser.add_argument("--counts-file", required=True)
    args = parser.parse_args()

    firehose = boto3.client("firehose", endpoint_url=args.endpoint, region_name="us-east-1")
    s3 = boto3.client("s3", endpoint_url=args.s3_endpoint, region_name="us-east-1")
    suffix = f"{int(time.time())}"
    bucket = f"firehose-compat-{suffix}"
    s3.create_bucket(Bucket=bucket)
    name = f"compat-{suffix}"

    try:
        created = firehose.create_delivery_stream(
            DeliveryStreamName=name,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": ROLE,
                "BucketARN": f"arn:aws:s3:::{bucket}",
                "Prefix": "logs/",
                "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1},
                "CompressionFormat": "GZIP",
                "ProcessingConfiguration": {
                    "Enabled": True,
                    "Processors": [{"Type": "AppendDelimiterToRecord"}],
                },
            },
            Tags=[{"Key": "suite", "Value": "compat"}],
        )
        check(
            "CreateDeliveryStream returns the ARN",
            created["DeliveryStreamARN"]
            == f"arn:aws:firehose:us-east-1:000000000000:deliverystream/{name}",
            created,
        )
    except botocore.exceptions.ClientError as err:
        check("CreateDeliveryStream", False, err)
        return finish(args.counts_file)

    described = firehose.describe_delivery_stream(DeliveryStreamName=name)[
        "DeliveryStreamDescription"
    ]
    check("DescribeDeliveryStream ACTIVE", described["DeliveryStreamStatus"] == "ACTIVE", described)
    ext = described["Destinations"][0]["ExtendedS3DestinationDescription"]
    check("described compression and hints", ext["CompressionFormat"] == "GZIP"
          and ext["BufferingHints"] == {"SizeInMBs": 1, "IntervalInSeconds": 1}, ext)
    listed = firehose.list_delivery_streams()["DeliveryStreamNames"]
    check("ListDeliveryStreams", name in listed, listed)
    tags = firehose.list_tags_for_delivery_stream(DeliveryStreamName=name)["Tags"]
    check("ListTagsForDeliveryStream", tags == [{"Key": "suite", "Value": "compat"}], tags)

    records = [json.dumps({"n": i}).encode() for i in range(5)]
    out = firehose.put_record_batch(
        DeliveryStreamName=name, Records=[{"Data": r} for r in records[:4]]
    )
    check("PutRecordBatch FailedPutCount 0", out["FailedPutCount"] == 0, out)
    check("PutRecordBatch one result per record",
          len(out["RequestResponses"]) == 4
          and all("RecordId" in r for r in out["RequestResponses"]), out)
    single = firehose.put_record(DeliveryStreamName=name, Record={"Data": records[4]})
    check("PutRecord returns a RecordId", bool(single.get("RecordId")), single)

    objects = wait_for_objects(s3, bucket, 1)
    check("an object appears in moto's S3", len(objects) >= 1, objects)
    pattern = re.compile(
        rf"^logs/\d{{4}}/\d{{2}}/\d{{2}}/\d{{2}}/{re.escape(name)}-1-"
        r"\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9a-f-]{36}\.gz$"
    )
    keys = [o["Key"] for o in objects]
    check("object keys follow Firehose's naming", keys and all(pattern.match(k) for k in keys), keys)
    # The five records may straddle two buffers; read every object until all arrived.
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        lines = []
        for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            lines += gzip.decompress(body).decode().splitlines()
        if len(lines) >= 5:
            break
        time.sleep(0.2)
    check("gunzipped objects hold every record, newline-delimited",
          sorted(lines) == sorted(r.decode() for r in records), lines)

    code, _ = error_code(lambda: firehose.describe_delivery_stream(DeliveryStreamName="nope"))
    check("missing stream -> ResourceNotFoundException", code == "ResourceNotFoundException", code)
    code, _ = error_code(lambda: firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}"},
    ))
    check("duplicate name -> ResourceInUseException", code == "ResourceInUseException", code)
    code, message = error_code(lambda: firehose.create_delivery_stream(
        DeliveryStreamName=f"{name}-splunk",
        SplunkDestinationConfiguration={
            "HECEndpoint": "https://splunk.invalid",
            "HECEndpointType": "Raw",
            "S3Configuration": {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}"},
        },
    ))
    check("unsupported destination -> InvalidArgumentException naming it",
          code == "InvalidArgumentException" and "SplunkDestinationConfiguration" in message,
          (code, message))
    code, _ = error_code(lambda: firehose.update_destination(
        DeliveryStreamName=name, CurrentDeliveryStreamVersionId="7",
        DestinationId="destinationId-000000000001",
        ExtendedS3DestinationUpdate={"Prefix": "x/"},
    ))
    check("stale version -> ConcurrentModificationException",
          code == "ConcurrentModificationException", code)
    firehose.delete_delivery_stream(DeliveryStreamName=name)
    code, _ = error_code(lambda: firehose.describe_delivery_stream(DeliveryStreamName=name))
    check("DeleteDeliveryStream removes it", code == "ResourceNotFoundException", code)
    return finish(args.counts_file)


def finish(counts_file):
    with open(counts_file, "w") as f:
        json.dump({"passed": PASSED, "failed": FAILED}, f)
    return 0 if FAILED == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
