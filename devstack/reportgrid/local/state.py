"""The local region's state directory (`.reportgrid/` by default) and what `--persist`
keeps in it across runs.

The moto server keeps everything in memory and has no persistence of its own (its
"recorder" replays every request, reads included, which would re-deliver tasks), so with
`--persist` the supervisor saves what a user would miss after a restart and restores it
into the fresh moto server:

    table.jsonl        every item of the DynamoDB table: reports and API keys
    s3/<bucket>/<key>  every object of every bucket: results and uploaded inputs
    redis/             redis-server's append-only file (the cache)
    id-secret          the report-id signing secret (so old ids still verify)
    dev-api-key        the development API key (so it stays the same)

Not kept: tasks still in the Kinesis stream or the SQS queues when the region stopped (a
report that was PENDING or RUNNING then stays so until its lease or ttl says otherwise), and
the stream runner's checkpoints, which are tied to a stream that is re-created on start.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportgrid import apikeys

SNAPSHOT_TABLE = "table.jsonl"
SNAPSHOT_S3 = "s3"
_BYTES_TAG = "__base64__"  # binary attributes (B, BS) as JSON


def _encode_bytes(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        return {_BYTES_TAG: base64.b64encode(value).decode("ascii")}
    raise TypeError(f"cannot save a {type(value).__name__} attribute")


def _decode_bytes(obj: dict[str, Any]) -> object:
    return base64.b64decode(obj[_BYTES_TAG]) if set(obj) == {_BYTES_TAG} else obj


@dataclass(frozen=True, slots=True)
class StateDir:
    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def redis(self) -> Path:
        return self.root / "redis"

    @property
    def kinesis(self) -> Path:
        return self.root / "kinesis"

    @property
    def snapshot(self) -> Path:
        return self.root / "snapshot"

    @property
    def clock(self) -> Path:
        """The local scheduler's clock (reportgrid/local/scheduler_source.py): absent, the
        wall clock; a test sets it with `set_clock`."""
        return self.root / "clock"

    def prepare(self, *, persist: bool) -> None:
        """Create the layout; without `persist`, forget what an earlier run left."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not persist:
            for old in (self.redis, self.kinesis, self.snapshot):
                shutil.rmtree(old, ignore_errors=True)
            for name in ("id-secret", "dev-api-key"):
                (self.root / name).unlink(missing_ok=True)
            for clock in self.root.glob("clock*"):  # a fresh region runs on the wall clock
                clock.unlink()
        for path in (self.logs, self.kinesis):
            path.mkdir(parents=True, exist_ok=True)

    def _kept(self, name: str, make: Callable[[], str], persist: bool) -> str:
        path = self.root / name
        if persist and path.exists():
            return path.read_text().strip()
        value = make()
        if persist:
            path.write_text(value + "\n")
            path.chmod(0o600)
        return value

    def id_secret(self, *, persist: bool) -> str:
        return self._kept("id-secret", lambda: secrets.token_urlsafe(32), persist)

    def api_key(self, *, persist: bool) -> str:
        return self._kept("dev-api-key", apikeys.generate_key, persist)


def save_snapshot(directory: Path, *, dynamodb: Any, s3: Any, table: str) -> tuple[int, int]:
    """Write every table item and every S3 object under `directory`; returns the counts."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    items = 0
    with (tmp / SNAPSHOT_TABLE).open("w") as sink:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                sink.write(json.dumps(item, default=_encode_bytes) + "\n")
                items += 1
    objects = 0
    for bucket in s3.list_buckets()["Buckets"]:
        name = bucket["Name"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                target = tmp / SNAPSHOT_S3 / name / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(s3.get_object(Bucket=name, Key=obj["Key"])["Body"].read())
                objects += 1
    shutil.rmtree(directory, ignore_errors=True)
    tmp.replace(directory)
    return items, objects


def restore_snapshot(
    directory: Path, *, dynamodb: Any, s3: Any, table: str, region: str
) -> tuple[int, int]:
    """Put a saved snapshot back into a fresh moto server; returns the counts."""
    items = objects = 0
    table_file = directory / SNAPSHOT_TABLE
    if table_file.exists():
        with table_file.open() as source:
            for line in source:
                dynamodb.put_item(TableName=table, Item=json.loads(line, object_hook=_decode_bytes))
                items += 1
    s3_root = directory / SNAPSHOT_S3
    if s3_root.is_dir():
        for bucket_dir in sorted(p for p in s3_root.iterdir() if p.is_dir()):
            _ensure_bucket(s3, bucket_dir.name, region)
            for path in sorted(p for p in bucket_dir.rglob("*") if p.is_file()):
                key = path.relative_to(bucket_dir).as_posix()
                s3.put_object(Bucket=bucket_dir.name, Key=key, Body=path.read_bytes())
                objects += 1
    return items, objects


def _ensure_bucket(s3: Any, name: str, region: str) -> None:
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    if name in existing:
        return
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
