#!/usr/bin/env python3
"""Differential test: replay one sequence of boto3 DynamoDB requests against dynalite and the
local broker, and compare what comes back.

Run it through scripts/dynamodb-differential.sh, which installs boto3 and dynalite, builds and
starts both servers, and passes their endpoints:

    python3 scripts/dynamodb-differential.py --reference http://127.0.0.1:P1 --broker http://127.0.0.1:P2

For each step both servers must agree: on success the normalised responses must be equal (volatile
members such as timestamps, ids and capacity are dropped; sets are compared as sets; scans are
compared as unordered collections), on failure the error codes must be equal (and the messages,
for steps marked so). A step may declare a deliberate difference; it is reported, not failed.

Deliberate differences (also documented in local-broker/src/dynamodb/mod.rs):
  - GSIs added by UpdateTable: dynalite never builds them, so KCL 3 waits forever for
    LeaseOwnerToLeaseKeyIndex; the broker builds the index and makes it ACTIVE.
  - CreateTable answers CREATING on dynalite (as on AWS) even with createTableMs=0; the broker
    with a zero state-transition delay creates tables ACTIVE at once.
  - UpdateTimeToLive and Describe/UpdateContinuousBackups are not implemented by dynalite; the
    broker records them (KCL 3 may enable point-in-time recovery).
  - ItemCount and TableSizeBytes are live in the broker; AWS refreshes them about every six
    hours and dynalite not at all, so they are not compared.
  - Scan order: dynalite scans in hash order, the broker in primary-key order. Both are stable and
    page correctly; scans are compared as unordered collections.
  - ConditionalOperator OR: dynalite returns "condition failed" at the first false condition even
    under OR; the broker evaluates the disjunction as DynamoDB does.
  - Syntax-error messages: dynalite reports its PEG parser's message, the broker AWS's
    "Syntax error; token: ..., near: ..." wording; only the error code is compared.
Exit status: 0 when every difference is a declared one, 1 otherwise.
"""

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

# Members whose values legitimately differ between implementations.
VOLATILE = {
    "ResponseMetadata",
    "CreationDateTime",
    "TableId",
    "TableArn",
    "IndexArn",
    "LatestStreamArn",
    "LatestStreamLabel",
    "LastUpdateToPayPerRequestDateTime",
    "LastIncreaseDateTime",
    "LastDecreaseDateTime",
    "NumberOfDecreasesToday",
    "ConsumedCapacity",
    "TableSizeBytes",
    "IndexSizeBytes",
    "DeletionProtectionEnabled",
    "TableThroughputModeSummary",
    "WarmThroughput",
    "TableClassSummary",
}


def normalise(value: Any) -> Any:
    """Drops volatile members and orders sets, so equal responses compare equal."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            if key in VOLATILE:
                continue
            if key in ("SS", "NS", "BS") and isinstance(inner, list):
                out[key] = sorted(inner, key=repr)
            else:
                out[key] = normalise(inner)
        return out
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def unordered_items(response: dict) -> dict:
    """A Scan response with its items as a sorted collection."""
    out = normalise(response)
    if "Items" in out:
        out["Items"] = sorted(out["Items"], key=lambda i: json.dumps(i, sort_keys=True, default=str))
    out.pop("LastEvaluatedKey", None)
    return out


@dataclass
class Outcome:
    ok: bool
    body: Any = None
    code: str = ""
    message: str = ""

    def describe(self) -> str:
        if self.ok:
            return json.dumps(self.body, sort_keys=True, default=str)[:600]
        return f"{self.code}: {self.message}"[:600]


@dataclass
class Step:
    name: str
    operation: str
    params: dict = field(default_factory=dict)
    # "full": compare normalised bodies; "status": success/failure and codes only;
    # a callable maps a successful body to the part to compare.
    compare: Any = "full"
    # Compare error messages too (where dynalite matches AWS's wording).
    message: bool = False
    # A declared, deliberate difference: the reason.
    deliberate: Optional[str] = None


def call(client, step: Step) -> Outcome:
    method = getattr(client, "".join("_" + c.lower() if c.isupper() else c for c in step.operation).lstrip("_"))
    try:
        return Outcome(ok=True, body=method(**step.params))
    except ClientError as err:
        error = err.response.get("Error", {})
        code = error.get("Code", "")
        # dynalite spells some codes with a namespace (com.amazon.coral.validate#ValidationException).
        return Outcome(ok=False, code=code.split("#")[-1], message=error.get("Message", ""))


def compare(step: Step, reference: Outcome, broker: Outcome) -> Optional[str]:
    """None when the outcomes agree, else a description of the difference."""
    if reference.ok != broker.ok:
        return f"dynalite {'succeeded' if reference.ok else 'failed'}, broker {'succeeded' if broker.ok else 'failed'}"
    if not reference.ok:
        if reference.code != broker.code:
            return f"error codes differ: {reference.code} vs {broker.code}"
        if step.message and reference.message != broker.message:
            return f"messages differ: {reference.message!r} vs {broker.message!r}"
        return None
    if step.compare == "status":
        return None
    project: Callable[[dict], Any] = step.compare if callable(step.compare) else normalise
    a, b = project(reference.body), project(broker.body)
    if a != b:
        return "responses differ\n        dynalite (compared): {}\n        broker (compared):   {}".format(
            json.dumps(a, sort_keys=True, default=str)[:600], json.dumps(b, sort_keys=True, default=str)[:600])
    return None


# ---- the scenario ----

S = lambda v: {"S": v}  # noqa: E731
N = lambda v: {"N": str(v)}  # noqa: E731


def key_schema(hash_name, range_name=None):
    schema = [{"AttributeName": hash_name, "KeyType": "HASH"}]
    if range_name:
        schema.append({"AttributeName": range_name, "KeyType": "RANGE"})
    return schema


def table_shape(response):
    """The parts of a table description both implementations must agree on."""
    description = response.get("TableDescription") or response.get("Table") or {}
    # ItemCount is live in the broker; AWS refreshes it about every six hours, dynalite never.
    keep = ["AttributeDefinitions", "KeySchema", "TableName", "GlobalSecondaryIndexes"]
    out = {k: normalise(description.get(k)) for k in keep}
    out["BillingMode"] = (description.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    throughput = description.get("ProvisionedThroughput") or {}
    out["Throughput"] = (throughput.get("ReadCapacityUnits"), throughput.get("WriteCapacityUnits"))
    return out


def table_shape_and_status(response):
    out = table_shape(response)
    description = response.get("TableDescription") or response.get("Table") or {}
    out["TableStatus"] = description.get("TableStatus")
    return out


def lease(key, counter=0, owner=None):
    item = {
        "leaseKey": S(key),
        "leaseCounter": N(counter),
        "checkpoint": S("TRIM_HORIZON"),
        "checkpointSubSequenceNumber": N(0),
        "ownerSwitchesSinceCheckpoint": N(0),
        "parentShardId": {"SS": ["shardId-000000000000"]},
    }
    if owner:
        item["leaseOwner"] = S(owner)
    return item


def scenario() -> list:
    steps = [
        Step("list tables when empty", "ListTables"),
        Step(
            "create lease table",
            "CreateTable",
            dict(
                TableName="leases",
                AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                KeySchema=key_schema("leaseKey"),
                BillingMode="PAY_PER_REQUEST",
            ),
            compare=table_shape,
        ),
        Step(
            "create existing table",
            "CreateTable",
            dict(
                TableName="leases",
                AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                KeySchema=key_schema("leaseKey"),
                BillingMode="PAY_PER_REQUEST",
            ),
        ),
        Step(
            "create table with too short a name",
            "CreateTable",
            dict(
                TableName="ab",
                AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                KeySchema=key_schema("k"),
                BillingMode="PAY_PER_REQUEST",
            ),
        ),
        Step(
            "create provisioned table without throughput",
            "CreateTable",
            dict(
                TableName="nothroughput",
                AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                KeySchema=key_schema("k"),
            ),
            message=True,
        ),
        Step(
            "create table whose key is not defined",
            "CreateTable",
            dict(
                TableName="undefined-key",
                AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                KeySchema=key_schema("other"),
                BillingMode="PAY_PER_REQUEST",
            ),
            message=True,
        ),
        Step(
            "create events table (hash + numeric range, provisioned)",
            "CreateTable",
            dict(
                TableName="events",
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "N"},
                ],
                KeySchema=key_schema("pk", "sk"),
                ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
            ),
            compare=table_shape,
        ),
        Step(
            "create paths table (string range) with a GSI",
            "CreateTable",
            dict(
                TableName="paths",
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                    {"AttributeName": "owner", "AttributeType": "S"},
                ],
                KeySchema=key_schema("pk", "sk"),
                BillingMode="PAY_PER_REQUEST",
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": "byOwner",
                        "KeySchema": key_schema("owner", "sk"),
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                    }
                ],
            ),
            compare=lambda r: {k: v for k, v in table_shape(r).items() if k != "GlobalSecondaryIndexes"},
        ),
        Step("describe lease table", "DescribeTable", dict(TableName="leases"), compare=table_shape_and_status),
        Step("describe missing table", "DescribeTable", dict(TableName="nothing"), message=True),
        Step("list tables, one per page", "ListTables", dict(Limit=1)),
        Step("list tables after events", "ListTables", dict(ExclusiveStartTableName="events")),
        # ---- leases, legacy dialect as the Java KCL sends it ----
        Step("create lease (Expected Exists=false)", "PutItem",
             dict(TableName="leases", Item=lease("shard-1"), Expected={"leaseKey": {"Exists": False}})),
        Step("create lease again", "PutItem",
             dict(TableName="leases", Item=lease("shard-1"), Expected={"leaseKey": {"Exists": False}}), message=True),
        Step("create lease, expression form", "PutItem",
             dict(TableName="leases", Item=lease("shard-1"), ConditionExpression="attribute_not_exists(leaseKey)")),
        Step("get lease", "GetItem", dict(TableName="leases", Key={"leaseKey": S("shard-1")}, ConsistentRead=True)),
        Step("take lease", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")},
            Expected={"leaseCounter": {"Value": N(0)}},
            AttributeUpdates={"leaseCounter": {"Action": "PUT", "Value": N(1)},
                              "leaseOwner": {"Action": "PUT", "Value": S("worker-1")}},
            ReturnValues="ALL_NEW")),
        Step("take lease with a stale counter", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")},
            Expected={"leaseCounter": {"Value": N(0)}},
            AttributeUpdates={"leaseCounter": {"Action": "PUT", "Value": N(1)}})),
        Step("renew lease (Exists=true + ADD)", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")},
            Expected={"leaseCounter": {"Value": N(1), "Exists": True}, "checkpointOwner": {"Exists": False}},
            AttributeUpdates={"leaseCounter": {"Action": "ADD", "Value": N(1)}},
            ReturnValues="UPDATED_NEW")),
        Step("steal lease", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")},
            Expected={"leaseCounter": {"Value": N(2)}, "leaseOwner": {"Value": S("worker-1")}},
            AttributeUpdates={"leaseCounter": {"Action": "PUT", "Value": N(3)},
                              "leaseOwner": {"Action": "PUT", "Value": S("worker-2")},
                              "ownerSwitchesSinceCheckpoint": {"Action": "ADD", "Value": N(1)}},
            ReturnValues="ALL_OLD")),
        Step("old owner renews after the steal", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")},
            Expected={"leaseCounter": {"Value": N(2)}},
            AttributeUpdates={"leaseCounter": {"Action": "PUT", "Value": N(3)}})),
        Step("checkpoint", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")},
            Expected={"leaseCounter": {"Value": N(3)}},
            AttributeUpdates={"checkpoint": {"Action": "PUT", "Value": S("49590338271490256608559692538361571095921575989136588898")},
                              "checkpointSubSequenceNumber": {"Action": "PUT", "Value": N(0)},
                              "ownerSwitchesSinceCheckpoint": {"Action": "PUT", "Value": N(0)},
                              "pendingCheckpoint": {"Action": "DELETE"}},
            ReturnValues="ALL_NEW")),
        Step("create a lease for ConditionalOperator tests", "PutItem",
             dict(TableName="leases", Item=lease("shard-or", 7, "worker-1"))),
        Step("ConditionalOperator OR, first condition true", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-or")},
            Expected={"leaseCounter": {"ComparisonOperator": "GE", "AttributeValueList": [N(7)]},
                      "leaseOwner": {"ComparisonOperator": "EQ", "AttributeValueList": [S("nobody")]}},
            ConditionalOperator="OR",
            AttributeUpdates={"tags": {"Action": "ADD", "Value": {"SS": ["a", "b"]}}},
            ReturnValues="UPDATED_NEW")),
        Step("ConditionalOperator OR, only a later condition true", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-or")},
            Expected={"leaseCounter": {"ComparisonOperator": "GT", "AttributeValueList": [N(100)]},
                      "leaseOwner": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": [S("worker")]}},
            ConditionalOperator="OR",
            AttributeUpdates={"more": {"Action": "PUT", "Value": S("x")}},
            ReturnValues="UPDATED_NEW"),
             deliberate="dynalite stops at the first false condition even with ConditionalOperator OR"),
        Step("ConditionalOperator AND with one false condition", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-or")},
            Expected={"leaseCounter": {"ComparisonOperator": "GE", "AttributeValueList": [N(7)]},
                      "leaseOwner": {"ComparisonOperator": "EQ", "AttributeValueList": [S("nobody")]}},
            ConditionalOperator="AND",
            AttributeUpdates={"more": {"Action": "PUT", "Value": S("y")}})),
        Step("Expected Exists=true without a value", "PutItem", dict(
            TableName="leases", Item=lease("shard-2"), Expected={"leaseKey": {"Exists": True}}), message=True),
        Step("Expected with a bad operand count", "PutItem", dict(
            TableName="leases", Item=lease("shard-2"),
            Expected={"leaseCounter": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [N(1)]}}), message=True),
        Step("AttributeUpdates ADD of a string", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")},
            AttributeUpdates={"leaseOwner": {"Action": "ADD", "Value": S("x")}})),
        Step("AttributeUpdates PUT without value", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")},
            AttributeUpdates={"leaseOwner": {"Action": "PUT"}}), message=True),
        Step("delete lease with the wrong owner", "DeleteItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")}, Expected={"leaseOwner": {"Value": S("worker-9")}})),
        # ---- expressions ----
        Step("update expression SET/ADD/list_append", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-3")},
            UpdateExpression="SET c = if_not_exists(c, :zero) + :one, l = list_append(if_not_exists(l, :empty), :l), m = :m ADD s :s",
            ExpressionAttributeValues={":zero": N(0), ":one": N(1), ":empty": {"L": []}, ":l": {"L": [S("x"), N(2)]},
                                       ":m": {"M": {"a": {"M": {"b": N(1)}}}}, ":s": {"SS": ["p", "q"]}},
            ReturnValues="ALL_NEW")),
        Step("update expression nested paths, REMOVE and DELETE", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-3")},
            UpdateExpression="SET m.a.b = m.a.b - :half, l[5] = :v REMOVE l[0] DELETE s :p",
            ExpressionAttributeValues={":half": N("0.5"), ":v": S("appended"), ":p": {"SS": ["p"]}},
            ReturnValues="UPDATED_NEW")),
        Step("update expression UPDATED_OLD", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-3")},
            UpdateExpression="SET c = c + :one REMOVE s",
            ExpressionAttributeValues={":one": N(1)}, ReturnValues="UPDATED_OLD")),
        Step("REMOVE on a missing item", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("never-written")}, UpdateExpression="REMOVE a")),
        Step("REMOVE did not create the item", "GetItem", dict(
            TableName="leases", Key={"leaseKey": S("never-written")}),
             deliberate="dynalite creates an empty item; DynamoDB does not for an update that only removes"),
        Step("exact decimal arithmetic", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-4")},
            UpdateExpression="SET d = :a + :b",
            ExpressionAttributeValues={":a": N("0.1"), ":b": N("0.2")}, ReturnValues="ALL_NEW")),
        Step("numbers are normalised", "PutItem", dict(
            TableName="leases",
            Item={"leaseKey": S("numbers"), "a": N("0010.50"), "b": N("-0"), "c": N("1E+5"), "d": N("-1.2300e-3"),
                  "ns": {"NS": ["1.0", "2", "300e-2"]}, "big": N("1" + "0" * 37)})),
        Step("get normalised numbers", "GetItem", dict(TableName="leases", Key={"leaseKey": S("numbers")})),
        Step("projection expression", "GetItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-3")}, ProjectionExpression="#c, m.a, l[1]",
            ExpressionAttributeNames={"#c": "c"})),
        Step("AttributesToGet", "GetItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")}, AttributesToGet=["leaseOwner", "leaseCounter"])),
        Step("condition with functions", "PutItem", dict(
            TableName="leases", Item=lease("shard-1", 3, "worker-2"),
            ConditionExpression="attribute_exists(leaseKey) AND begins_with(leaseOwner, :w) AND size(checkpoint) > :n "
                                "AND attribute_type(leaseCounter, :t) AND NOT contains(leaseOwner, :x) "
                                "AND leaseCounter BETWEEN :lo AND :hi AND leaseOwner IN (:a, :b)",
            ExpressionAttributeValues={":w": S("worker"), ":n": N(10), ":t": S("N"), ":x": S("zzz"),
                                       ":lo": N(0), ":hi": N(5), ":a": S("worker-1"), ":b": S("worker-2")},
            ReturnValues="ALL_OLD")),
        Step("failed condition", "DeleteItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")},
            ConditionExpression="leaseCounter <> :c", ExpressionAttributeValues={":c": N(3)}), message=True),
        Step("reserved word", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")},
            UpdateExpression="SET status = :v", ExpressionAttributeValues={":v": S("x")}), message=True),
        Step("unused expression value", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")},
            UpdateExpression="SET a = :v", ExpressionAttributeValues={":v": S("x"), ":x": S("y")}), message=True),
        Step("undefined expression value", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")}, UpdateExpression="SET a = :y"), message=True),
        Step("undefined expression name", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")}, UpdateExpression="SET #zz = :v",
            ExpressionAttributeValues={":v": S("x")}), message=True),
        Step("syntax error", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")}, UpdateExpression="SET a = = :v",
            ExpressionAttributeValues={":v": S("x")})),
        Step("repeated section", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")}, UpdateExpression="SET a = :v SET b = :v",
            ExpressionAttributeValues={":v": S("x")}), message=True),
        Step("overlapping paths", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")}, UpdateExpression="SET a = :v REMOVE a",
            ExpressionAttributeValues={":v": S("x")}), message=True),
        Step("mixed dialects", "PutItem", dict(
            TableName="leases", Item=lease("shard-9"), ConditionExpression="attribute_not_exists(leaseKey)",
            Expected={"leaseKey": {"Exists": False}}), message=True),
        Step("names without expressions", "GetItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")}, ExpressionAttributeNames={"#a": "a"}), message=True),
        Step("update a key attribute", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")}, UpdateExpression="SET leaseKey = :v",
            ExpressionAttributeValues={":v": S("x")}), message=True),
        Step("set below a missing map", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")}, UpdateExpression="SET nothere.x = :v",
            ExpressionAttributeValues={":v": S("x")}), message=True),
        Step("arithmetic on a missing attribute", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")}, UpdateExpression="SET q = nothere + :v",
            ExpressionAttributeValues={":v": N(1)}), message=True),
        Step("ADD of a string", "UpdateItem", dict(
            TableName="leases", Key={"leaseKey": S("shard-1")}, UpdateExpression="ADD leaseOwner :v",
            ExpressionAttributeValues={":v": S("x")}), message=True),
        Step("PutItem with UPDATED_NEW", "PutItem", dict(
            TableName="leases", Item=lease("shard-8"), ReturnValues="UPDATED_NEW"), message=True),
        # ---- invalid values and keys ----
        Step("key type mismatch", "PutItem", dict(TableName="leases", Item={"leaseKey": N(1)}), message=True),
        Step("missing key", "PutItem", dict(TableName="leases", Item={"other": S("x")}), message=True),
        Step("key with an extra attribute", "GetItem", dict(
            TableName="leases", Key={"leaseKey": S("a"), "x": S("b")}), message=True),
        Step("empty string set", "PutItem", dict(
            TableName="leases", Item={"leaseKey": S("bad"), "s": {"SS": []}}), message=True),
        Step("duplicate string set", "PutItem", dict(
            TableName="leases", Item={"leaseKey": S("bad"), "s": {"SS": ["a", "a"]}}), message=True),
        Step("too many digits", "PutItem", dict(
            TableName="leases", Item={"leaseKey": S("bad"), "n": N("1" * 39)}), message=True),
        Step("number overflow", "PutItem", dict(
            TableName="leases", Item={"leaseKey": S("bad"), "n": N("1E+126")}), message=True),
        Step("number underflow", "PutItem", dict(
            TableName="leases", Item={"leaseKey": S("bad"), "n": N("1E-131")}), message=True),
        Step("NULL false", "PutItem", dict(
            TableName="leases", Item={"leaseKey": S("bad"), "n": {"NULL": False}}), message=True),
        Step("two types in one value", "PutItem", dict(
            TableName="leases", Item={"leaseKey": S("bad"), "n": {"S": "a", "N": "1"}}), message=True),
        Step("item too large", "PutItem", dict(
            TableName="leases", Item={"leaseKey": S("big"), "blob": S("x" * (401 * 1024))}), message=True),
        Step("empty string key", "PutItem", dict(TableName="leases", Item={"leaseKey": S("")})),
        Step("item in a missing table", "PutItem", dict(TableName="nothing", Item={"k": S("x")}), message=True),
        # ---- batches, scans and queries ----
        Step("batch write 20 events", "BatchWriteItem", dict(RequestItems={"events": [
            {"PutRequest": {"Item": {"pk": S("p1" if i < 12 else "p2"), "sk": N(i), "odd": {"BOOL": i % 2 == 1}}}}
            for i in range(20)]})),
        Step("batch write paths", "BatchWriteItem", dict(RequestItems={"paths": [
            {"PutRequest": {"Item": {"pk": S("p"), "sk": S(sk), "owner": S(owner)}}}
            for sk, owner in [("a/1", "w1"), ("a/2", "w2"), ("ab", "w1"), ("b/1", "w1")]]})),
        Step("batch write 26 requests", "BatchWriteItem", dict(RequestItems={"events": [
            {"DeleteRequest": {"Key": {"pk": S("p1"), "sk": N(i)}}} for i in range(26)]})),
        Step("batch write duplicate keys", "BatchWriteItem", dict(RequestItems={"events": [
            {"DeleteRequest": {"Key": {"pk": S("p1"), "sk": N(1)}}},
            {"DeleteRequest": {"Key": {"pk": S("p1"), "sk": N(1)}}}]}), message=True),
        Step("batch get", "BatchGetItem", dict(RequestItems={"events": {"Keys": [
            {"pk": S("p1"), "sk": N(1)}, {"pk": S("p2"), "sk": N(15)}, {"pk": S("p9"), "sk": N(0)}]}}),
             compare=lambda r: {"Responses": {t: sorted(normalise(v), key=lambda i: json.dumps(i, sort_keys=True))
                                               for t, v in r.get("Responses", {}).items()},
                                "UnprocessedKeys": r.get("UnprocessedKeys")}),
        Step("batch get duplicate keys", "BatchGetItem", dict(RequestItems={"events": {"Keys": [
            {"pk": S("p1"), "sk": N(1)}, {"pk": S("p1"), "sk": N(1)}]}}), message=True),
        Step("scan everything", "Scan", dict(TableName="events"), compare=unordered_items),
        Step("scan with filter and projection", "Scan", dict(
            TableName="events", FilterExpression="sk >= :ten AND odd = :t", ProjectionExpression="sk",
            ExpressionAttributeValues={":ten": N(10), ":t": {"BOOL": True}}), compare=unordered_items),
        Step("scan COUNT with ScanFilter", "Scan", dict(
            TableName="events", Select="COUNT",
            ScanFilter={"sk": {"ComparisonOperator": "LT", "AttributeValueList": [N(5)]}})),
        Step("scan segment without total", "Scan", dict(TableName="events", Segment=1), message=True),
        Step("scan segment out of range", "Scan", dict(TableName="events", Segment=2, TotalSegments=2), message=True),
        Step("query BETWEEN", "Query", dict(
            TableName="events", KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":p": S("p1"), ":lo": N(3), ":hi": N(6)})),
        Step("query backwards with limit", "Query", dict(
            TableName="events", KeyConditionExpression="pk = :p AND sk < :v", ScanIndexForward=False, Limit=3,
            ExpressionAttributeValues={":p": S("p1"), ":v": N(9)})),
        Step("query with filter", "Query", dict(
            TableName="events", KeyConditionExpression="pk = :p", FilterExpression="odd = :t",
            ExpressionAttributeValues={":p": S("p2"), ":t": {"BOOL": True}})),
        Step("query resumes after a start key", "Query", dict(
            TableName="events", KeyConditionExpression="pk = :p", Limit=4,
            ExclusiveStartKey={"pk": S("p1"), "sk": N(3)}, ExpressionAttributeValues={":p": S("p1")})),
        Step("query KeyConditions", "Query", dict(
            TableName="events", KeyConditions={
                "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [S("p2")]},
                "sk": {"ComparisonOperator": "GE", "AttributeValueList": [N(17)]}})),
        Step("query begins_with", "Query", dict(
            TableName="paths", KeyConditionExpression="pk = :p AND begins_with(sk, :a)",
            ExpressionAttributeValues={":p": S("p"), ":a": S("a/")})),
        Step("query a GSI created with the table", "Query", dict(
            TableName="paths", IndexName="byOwner", KeyConditionExpression="#o = :o",
            ExpressionAttributeNames={"#o": "owner"}, ExpressionAttributeValues={":o": S("w1")})),
        Step("query without the hash key", "Query", dict(
            TableName="events", KeyConditionExpression="sk = :v", ExpressionAttributeValues={":v": N(1)}),
             message=True),
        Step("query with OR", "Query", dict(
            TableName="events", KeyConditionExpression="pk = :p OR sk = :v",
            ExpressionAttributeValues={":p": S("p1"), ":v": N(1)}), message=True),
        Step("query filter on a key attribute", "Query", dict(
            TableName="events", KeyConditionExpression="pk = :p", FilterExpression="sk > :v",
            ExpressionAttributeValues={":p": S("p1"), ":v": N(1)}), message=True),
        Step("query a missing index", "Query", dict(
            TableName="events", IndexName="nope", KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": S("p1")}), message=True),
        # ---- table settings ----
        Step("describe time to live", "DescribeTimeToLive", dict(TableName="leases")),
        Step("enable time to live", "UpdateTimeToLive", dict(
            TableName="leases", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"}),
             deliberate="dynalite does not implement UpdateTimeToLive"),
        Step("enable point-in-time recovery", "UpdateContinuousBackups", dict(
            TableName="leases", PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}),
             deliberate="dynalite does not implement UpdateContinuousBackups"),
        Step("tag the lease table", "TagResource", dict(
            ResourceArn="arn:aws:dynamodb:us-east-1:000000000000:table/leases",
            Tags=[{"Key": "team", "Value": "streams"}, {"Key": "env", "Value": "test"}])),
        Step("untag the lease table", "UntagResource", dict(
            ResourceArn="arn:aws:dynamodb:us-east-1:000000000000:table/leases", TagKeys=["env"])),
        Step("list tags", "ListTagsOfResource", dict(
            ResourceArn="arn:aws:dynamodb:us-east-1:000000000000:table/leases")),
        Step("switch events to on-demand", "UpdateTable", dict(TableName="events", BillingMode="PAY_PER_REQUEST"),
             compare=table_shape),
        # ---- KCL 3: the lease owner index ----
        Step("add LeaseOwnerToLeaseKeyIndex", "UpdateTable", dict(
            TableName="leases",
            AttributeDefinitions=[{"AttributeName": "leaseOwner", "AttributeType": "S"},
                                  {"AttributeName": "leaseKey", "AttributeType": "S"}],
            GlobalSecondaryIndexUpdates=[{"Create": {
                "IndexName": "LeaseOwnerToLeaseKeyIndex",
                "KeySchema": key_schema("leaseOwner", "leaseKey"),
                "Projection": {"ProjectionType": "KEYS_ONLY"}}}]),
             compare=lambda r: [(i.get("IndexName"), i.get("IndexStatus"))
                                for i in (r.get("TableDescription") or {}).get("GlobalSecondaryIndexes", [])],
             deliberate="dynalite does not build GSIs through UpdateTable"),
        Step("lease owner index is ACTIVE", "DescribeTable", dict(TableName="leases"),
             compare=lambda r: [(i.get("IndexName"), i.get("IndexStatus"))
                                for i in (r.get("Table") or {}).get("GlobalSecondaryIndexes", [])],
             deliberate="dynalite does not build GSIs through UpdateTable"),
        Step("query the lease owner index", "Query", dict(
            TableName="leases", IndexName="LeaseOwnerToLeaseKeyIndex",
            KeyConditionExpression="leaseOwner = :o", ExpressionAttributeValues={":o": S("worker-2")}),
             deliberate="dynalite does not build GSIs through UpdateTable"),
        # ---- teardown ----
        Step("delete the events table", "DeleteTable", dict(TableName="events"),
             compare=lambda r: (r["TableDescription"]["TableName"], r["TableDescription"]["TableStatus"])),
        Step("delete a missing table", "DeleteTable", dict(TableName="nothing")),
    ]
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, help="dynalite endpoint URL")
    parser.add_argument("--broker", required=True, help="local broker endpoint URL")
    parser.add_argument("--verbose", action="store_true", help="print both outcomes of every step")
    args = parser.parse_args()

    def client(endpoint):
        return boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="AKID",
            aws_secret_access_key="SECRET",
            config=Config(parameter_validation=False, retries={"max_attempts": 1}),
        )

    reference, broker = client(args.reference), client(args.broker)
    agreed, declared, unexpected = 0, [], []
    for number, step in enumerate(scenario(), 1):
        a, b = call(reference, step), call(broker, step)
        difference = compare(step, a, b)
        label = f"{number:3} {step.operation:24} {step.name}"
        if difference is None:
            agreed += 1
            note = "  (declared difference did not show)" if step.deliberate else ""
            print(f"ok    {label}{note}")
        elif step.deliberate:
            declared.append(step)
            print(f"known {label}: {step.deliberate}")
        else:
            unexpected.append(step)
            print(f"DIFF  {label}: {difference}")
            print(f"        dynalite: {a.describe()}")
            print(f"        broker:   {b.describe()}")
        if args.verbose and difference is None:
            print(f"        both: {b.describe()}")
    print()
    print(f"{agreed} steps agree, {len(declared)} declared differences, {len(unexpected)} unexpected differences")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
