"""The `reportgrid-dev` supervisor's own promises that need no edge or workers: a taken
port is a clear error, and --persist saves and restores the table and the buckets."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from reportgrid import resources as r
from reportgrid.local.bootstrap import RegionResources, client, create_region
from reportgrid.local.servers import MotoServer
from reportgrid.local.state import StateDir, restore_snapshot, save_snapshot

REPORTGRID = str(Path(sys.executable).parent / "reportgrid")
REPORTGRID_DEV = str(Path(sys.executable).parent / "reportgrid-dev")


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [REPORTGRID_DEV, "--port", str(port), "--state-dir", str(tmp_path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port} (--port (the edge)) is already in use" in result.stdout


def test_snapshot_round_trip_keeps_items_and_objects(aws: RegionResources, tmp_path: Path) -> None:
    # Given a report item, an API key item and objects in two buckets
    ddb = client("dynamodb", aws.region, aws.endpoint_url)
    s3 = client("s3", aws.region, aws.endpoint_url)
    ddb.put_item(
        TableName=r.TABLE_NAME,
        Item={"pk": {"S": "report#x"}, "n": {"N": "1"}, "b": {"B": b"\x00z"}},
    )
    ddb.put_item(TableName=r.TABLE_NAME, Item={"pk": {"S": "apikey#y"}, "tenant": {"S": "t"}})
    s3.put_object(Bucket=aws.results_bucket, Key="results/x", Body=b"result")
    s3.create_bucket(Bucket="inputs")
    s3.put_object(Bucket="inputs", Key="a/b.csv", Body=b"a\n1\n")
    snapshot = tmp_path / "snap"
    assert save_snapshot(snapshot, dynamodb=ddb, s3=s3, table=r.TABLE_NAME) == (2, 2)
    # When they are restored into a fresh moto server
    with MotoServer(None, tmp_path / "moto.log") as fresh:
        create_region(aws.region, fresh.endpoint_url)
        ddb2 = client("dynamodb", aws.region, fresh.endpoint_url)
        s32 = client("s3", aws.region, fresh.endpoint_url)
        counts = restore_snapshot(
            snapshot, dynamodb=ddb2, s3=s32, table=r.TABLE_NAME, region=aws.region
        )
        # Then everything is back
        assert counts == (2, 2)
        item = ddb2.get_item(TableName=r.TABLE_NAME, Key={"pk": {"S": "report#x"}})["Item"]
        assert item["n"] == {"N": "1"}
        assert item["b"] == {"B": b"\x00z"}
        assert s32.get_object(Bucket="inputs", Key="a/b.csv")["Body"].read() == b"a\n1\n"
        body = s32.get_object(Bucket=aws.results_bucket, Key="results/x")["Body"].read()
        assert body == b"result"


def test_state_dir_without_persist_forgets_secrets(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.prepare(persist=True)
    key = state.api_key(persist=True)
    assert state.api_key(persist=True) == key  # kept
    state.prepare(persist=False)
    assert state.api_key(persist=False) != key
    assert not (tmp_path / "dev-api-key").exists()
