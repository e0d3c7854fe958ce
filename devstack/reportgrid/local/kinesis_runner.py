"""The local Kinesis event source: reads the task stream with shard iterators and invokes
the real Lambda handler with events shaped exactly as Lambda's, honouring the event-source
mapping settings the deployment uses:

- batch size and batching window (wait up to the window for a full batch; a failed batch
  is retried without a new window);
- partial batch response (`batchItemFailures`): the records before the lowest failed
  sequence number are done, and the next batch starts at it;
- bisect on error: when the handler raises, the batch is split in halves, down to single
  records, so one poison record cannot hold back the others;
- bounded retries and a maximum record age: a record that still fails after
  `max_retry_attempts` retries, or is older than `max_record_age`, is given up on. Its
  on-failure destination record (the same JSON document Lambda sends: requestContext,
  responseContext, version, timestamp, KinesisBatchInfo) goes to the stream-failure queue
  when one is configured (as Lambda's SqsDlq destination does; the drain in
  functions/stream_failures re-drives those tasks) and to the on-failure log (JSON lines),
  and the shard moves on. The shard waits until the queue took the record.

One thread reads each shard (Lambda's parallelization factor 1). Invocations are serialized,
as in one execution environment, because a handler's module-level state (Powertools'
BatchProcessor) is not thread-safe. The last processed sequence number of each shard is
checkpointed to a file, so a restarted runner resumes where it stopped; checkpoints of a
stream that was since re-created (a different creation time) are discarded.

Run it as `python -m reportgrid.local.kinesis_runner` (settings from the environment).
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from botocore.exceptions import BotoCoreError, ClientError

from reportgrid import resources
from reportgrid.local.bootstrap import LOCAL_ACCOUNT, client

log = logging.getLogger("reportgrid.kinesis_runner")

DEFAULT_HANDLER: Final = "functions.stream_worker.handler:handler"
FUNCTION_NAME: Final = "reportgrid-stream-worker"
CHECKPOINT_FILE: Final = "kinesis-checkpoints.json"
ON_FAILURE_FILE: Final = "kinesis-on-failure.jsonl"
ON_FAILURE_VERSION: Final = "1.0"
# Backoff between attempts to hand an on-failure record to the queue.
_SEND_BACKOFF_CAP_SECONDS: Final = 2.0

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True, slots=True)
class MappingConfig:
    """The event-source mapping settings (names follow AWS's)."""

    batch_size: int = 100
    batching_window_seconds: float = 0.0
    starting_position: Literal["LATEST", "TRIM_HORIZON"] = "TRIM_HORIZON"
    max_retry_attempts: int = 3
    max_record_age_seconds: float = 6 * 3600
    bisect_batch_on_function_error: bool = True
    report_batch_item_failures: bool = True
    poll_interval_seconds: float = 0.1
    function_timeout_seconds: float = resources.LAMBDA_TIMEOUT_SECONDS
    memory_limit_in_mb: int = 1769

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError("batch_size must be 1..10000")
        if self.max_retry_attempts < 0:
            raise ValueError("max_retry_attempts must be >= 0")


@dataclass(slots=True)
class LambdaContext:
    """The fields of Lambda's context object that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    _started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = datetime.now(UTC).strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex

    def get_remaining_time_in_millis(self) -> int:
        left = self.timeout_seconds - (time.monotonic() - self._started)
        return max(0, int(left * 1000))


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One record as GetRecords returned it."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrival: datetime


def lambda_record(
    record: StreamRecord, *, stream_arn: str, region: str, role_arn: str
) -> dict[str, Any]:
    """A record of a Lambda Kinesis event, exactly as the service shapes it."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record.partition_key,
            "sequenceNumber": record.sequence_number,
            "data": base64.b64encode(record.data).decode("ascii"),
            "approximateArrivalTimestamp": record.arrival.timestamp(),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{record.shard_id}:{record.sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": role_arn,
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


def iso_millis(moment: datetime) -> str:
    """Lambda's timestamp format in destination records: "2019-11-14T00:38:06.021Z"."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def on_failure_record(
    records: Sequence[StreamRecord],
    *,
    condition: str,
    function_arn: str,
    stream_arn: str,
    invoke_count: int,
    function_error: bool,
    batch_info: str = "KinesisBatchInfo",
) -> dict[str, Any]:
    """The document Lambda sends to a Kinesis event source's on-failure destination: the
    metadata of the records given up on, never the records themselves. responseContext is
    there only when the function was invoked."""
    first, last = records[0], records[-1]
    entry: dict[str, Any] = {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
    }
    if invoke_count:
        response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if function_error:
            response["functionError"] = "Unhandled"
        entry["responseContext"] = response
    entry |= {
        "version": ON_FAILURE_VERSION,
        "timestamp": iso_millis(datetime.now(UTC)),
        batch_info: {
            "shardId": first.shard_id,
            "startSequenceNumber": first.sequence_number,
            "endSequenceNumber": last.sequence_number,
            "approximateArrivalOfFirstRecord": iso_millis(first.arrival),
            "approximateArrivalOfLastRecord": iso_millis(last.arrival),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }
    return entry


def failed_identifiers(response: object) -> list[str] | None:
    """The sequence numbers a partial batch response names; None when the response is
    malformed (Lambda then treats the whole batch as failed); [] when all succeeded."""
    if response is None:
        return []
    if not isinstance(response, Mapping):
        return []  # a handler that returns something else reports no item failures
    items = response.get("batchItemFailures")
    if items is None:
        return []
    if not isinstance(items, list):
        return None
    found: list[str] = []
    for item in items:
        ident = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(ident, str) or not ident:
            return None
        found.append(ident)
    return found


class Checkpoints:
    """Last processed sequence number per shard, persisted as JSON (atomic replace)."""

    def __init__(self, path: Path | None, stream_arn: str, stream_created: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._identity = {"stream_arn": stream_arn, "stream_created": stream_created}
        self._shards: dict[str, str] = {}
        if path is not None and path.exists():
            try:
                saved = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                log.warning("ignoring unreadable checkpoint file %s", path)
                return
            if {k: saved.get(k) for k in self._identity} == self._identity:
                self._shards = dict(saved.get("shards", {}))
            else:
                log.info("stream was re-created since the last run; checkpoints discarded")

    def get(self, shard_id: str) -> str | None:
        with self._lock:
            return self._shards.get(shard_id)

    def set(self, shard_id: str, sequence_number: str) -> None:
        with self._lock:
            self._shards[shard_id] = sequence_number
            if self._path is None:
                return
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps({**self._identity, "shards": self._shards}))
            tmp.replace(self._path)


class KinesisRunner:
    """Polls every shard of a stream and feeds the handler, as Lambda's event source does."""

    def __init__(
        self,
        handler: Handler,
        *,
        stream_name: str,
        region: str,
        endpoint_url: str,
        config: MappingConfig | None = None,
        state_dir: Path | None = None,
        function_name: str = FUNCTION_NAME,
        kinesis: Any = None,
        failure_queue_url: str | None = None,
        sqs: Any = None,
    ) -> None:
        self.handler = handler
        self.config = config or MappingConfig()
        self.region = region
        self.function_name = function_name
        self._kinesis = kinesis or client("kinesis", region, endpoint_url)
        self.failure_queue_url = failure_queue_url
        self._sqs: Any = sqs or (client("sqs", region, endpoint_url) if failure_queue_url else None)
        self.stream_name = stream_name
        stream_arn, created = self._describe(stream_name)
        self.stream_arn: str = stream_arn
        self.function_arn = f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT}:function:{function_name}"
        self.role_arn = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{function_name}-role"
        self._state_dir = state_dir
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoints = Checkpoints(
            state_dir / CHECKPOINT_FILE if state_dir else None,
            self.stream_arn,
            created,
        )
        self._invoke_lock = threading.Lock()
        self._failure_lock = threading.Lock()
        self._attempts: dict[tuple[str, str], int] = {}
        # Per shard thread: whether its last invocation raised (responseContext).
        self._last_call = threading.local()
        self.stopping = threading.Event()
        self.invocations = 0

    # -- reading ---------------------------------------------------------------------------

    # The on-failure record's batch metadata key (DDBStreamBatchInfo for DynamoDB).
    BATCH_INFO = "KinesisBatchInfo"

    def _describe(self, stream_name: str) -> tuple[str, str]:
        """The stream's ARN and creation time (a re-created stream drops checkpoints)."""
        desc = self._kinesis.describe_stream_summary(StreamName=stream_name)
        summary = desc["StreamDescriptionSummary"]
        return str(summary["StreamARN"]), str(summary["StreamCreationTimestamp"])

    def lambda_event(self, batch: Sequence[StreamRecord]) -> dict[str, Any]:
        return {
            "Records": [
                lambda_record(
                    r, stream_arn=self.stream_arn, region=self.region, role_arn=self.role_arn
                )
                for r in batch
            ]
        }

    def shard_ids(self) -> list[str]:
        shards = self._kinesis.list_shards(StreamName=self.stream_name)["Shards"]
        return [s["ShardId"] for s in shards]

    def _iterator(self, shard_id: str, after: str | None) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard_id}
        if after is not None:
            kwargs |= {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": after,
            }
        else:
            kwargs["ShardIteratorType"] = self.config.starting_position
        return str(self._kinesis.get_shard_iterator(**kwargs)["ShardIterator"])

    def _read(self, shard_id: str, iterator: str, limit: int) -> tuple[list[StreamRecord], str]:
        reply = self._kinesis.get_records(ShardIterator=iterator, Limit=limit)
        records = [
            StreamRecord(
                shard_id=shard_id,
                sequence_number=r["SequenceNumber"],
                partition_key=r["PartitionKey"],
                data=r["Data"],
                arrival=r["ApproximateArrivalTimestamp"],
            )
            for r in reply["Records"]
        ]
        return records, reply.get("NextShardIterator") or ""

    # -- the shard loop --------------------------------------------------------------------

    def run_shard(self, shard_id: str) -> None:
        """Read one shard until stopped (or the shard is closed and drained)."""
        cfg = self.config
        last_read = self.checkpoints.get(shard_id)
        iterator = self._iterator(shard_id, last_read)
        buffer: list[StreamRecord] = []
        while not self.stopping.is_set():
            # A non-empty buffer is the rest of a batch that failed (`process` keeps only
            # records the function was invoked with): it is retried as it is, at once. The
            # batching window bounds the time spent gathering records before an invocation
            # (MaximumBatchingWindowInSeconds, Lambda API reference; docs.aws.amazon.com/
            # lambda/latest/dg/invocation-eventsourcemapping.html, "Batching behavior"); a
            # retry gathers nothing, it invokes the failed batch again after `process`'s
            # backoff (services-kinesis-errors.html: Lambda retries the batch).
            retrying = bool(buffer)
            window_ends = time.monotonic() + cfg.batching_window_seconds
            while not retrying and len(buffer) < cfg.batch_size and iterator:
                try:
                    records, iterator = self._read(shard_id, iterator, cfg.batch_size - len(buffer))
                except ClientError as err:
                    if err.response["Error"]["Code"] != "ExpiredIteratorException":
                        raise
                    iterator = self._iterator(shard_id, last_read)
                    continue
                if records:
                    buffer.extend(records)
                    last_read = records[-1].sequence_number
                    continue
                if buffer and time.monotonic() >= window_ends:
                    break
                if self.stopping.wait(cfg.poll_interval_seconds):
                    return
            if not buffer:
                if not iterator:
                    log.info("%s is closed and drained", shard_id)
                    return
                continue
            batch = buffer[: cfg.batch_size]
            done = self.process(batch)
            if done:
                self.checkpoints.set(shard_id, batch[done - 1].sequence_number)
                del buffer[:done]

    def process(self, batch: Sequence[StreamRecord]) -> int:
        """Deliver one batch with Lambda's rules; returns how many leading records are
        finished (processed, or given up on and logged). Less than the batch means the
        record at that index is retried as the head of the next batch."""
        cfg = self.config
        # Arrival times grow along a shard, so records past the maximum age lead the batch.
        now = datetime.now(UTC)
        skipped = 0
        while (
            skipped < len(batch)
            and (now - batch[skipped].arrival).total_seconds() > cfg.max_record_age_seconds
        ):
            skipped += 1
        if skipped:
            tried = max(
                self._attempts.pop((r.shard_id, r.sequence_number), 0) for r in batch[:skipped]
            )
            self._on_failure(batch[:skipped], "RecordAgeExceeded", invoke_count=tried)
        fresh = batch[skipped:]
        if not fresh:
            return skipped
        done = self._deliver(fresh)
        if done == len(fresh):
            return skipped + done
        head = fresh[done]
        key = (head.shard_id, head.sequence_number)
        self._attempts[key] = self._attempts.get(key, 0) + 1
        if self._attempts[key] > cfg.max_retry_attempts:
            tried = self._attempts.pop(key)
            # With bisection the failing record is alone by now; without, the whole rest of
            # the batch goes, as Lambda discards the batch it could not process.
            rest = fresh[done : done + 1] if cfg.bisect_batch_on_function_error else fresh[done:]
            self._on_failure(rest, "RetryAttemptsExhausted", invoke_count=tried)
            return skipped + done + len(rest)
        time.sleep(min(0.05 * 2 ** self._attempts[key], 2.0))  # Lambda backs off too
        return skipped + done

    def _deliver(self, batch: Sequence[StreamRecord]) -> int:
        """Invoke the handler once for `batch` (bisecting when it raises); returns how many
        leading records succeeded."""
        try:
            response = self.invoke(batch)
        except Exception:
            log.exception(
                "handler raised on %d record(s) from %s", len(batch), batch[0].sequence_number
            )
            if self.config.bisect_batch_on_function_error and len(batch) > 1:
                half = len(batch) // 2
                first = self._deliver(batch[:half])
                if first < half:
                    return first
                return half + self._deliver(batch[half:])
            return 0
        if not self.config.report_batch_item_failures:
            return len(batch)
        failed = failed_identifiers(response)
        if failed is None:
            log.warning("malformed batchItemFailures; retrying the whole batch")
            return 0
        if not failed:
            return len(batch)
        positions = {r.sequence_number: i for i, r in enumerate(batch)}
        if any(f not in positions for f in failed):
            log.warning("batchItemFailures names a record not in the batch; retrying it all")
            return 0
        return min(positions[f] for f in failed)

    def invoke(self, batch: Sequence[StreamRecord]) -> Any:
        event = self.lambda_event(batch)
        context = LambdaContext(
            function_name=self.function_name,
            invoked_function_arn=self.function_arn,
            memory_limit_in_mb=self.config.memory_limit_in_mb,
            timeout_seconds=self.config.function_timeout_seconds,
        )
        with self._invoke_lock:
            self.invocations += 1
            self._last_call.raised = True
            response = self.handler(event, context)
            self._last_call.raised = False
            return response

    def _on_failure(
        self, records: Sequence[StreamRecord], condition: str, *, invoke_count: int
    ) -> None:
        """Hand the on-failure destination record of records given up on to the failure
        queue (until it takes it: the reports depend on it) and append it to the log."""
        first = records[0]
        entry = on_failure_record(
            records,
            condition=condition,
            function_arn=self.function_arn,
            stream_arn=self.stream_arn,
            invoke_count=invoke_count,
            function_error=bool(invoke_count and getattr(self._last_call, "raised", False)),
            batch_info=self.BATCH_INFO,
        )
        log.error(
            "gave up on %d record(s) of %s from %s: %s",
            len(records),
            first.shard_id,
            first.sequence_number,
            condition,
        )
        body = json.dumps(entry)
        if self._state_dir is not None:
            with self._failure_lock, (self._state_dir / ON_FAILURE_FILE).open("a") as sink:
                sink.write(body + "\n")
        if self.failure_queue_url:
            self._send_failure(body)

    def _send_failure(self, body: str) -> None:
        attempt = 0
        while True:
            try:
                self._sqs.send_message(QueueUrl=self.failure_queue_url, MessageBody=body)
                return
            except (ClientError, BotoCoreError):
                log.warning("could not send an on-failure record; retrying", exc_info=True)
            attempt += 1
            if self.stopping.wait(min(0.1 * 2**attempt, _SEND_BACKOFF_CAP_SECONDS)):
                # Not checkpointed past these records: a restarted runner delivers them again.
                raise RuntimeError("stopped before the on-failure record was sent")

    # -- running ---------------------------------------------------------------------------

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._guarded, args=(s,), name=f"shard-{s}", daemon=True)
            for s in self.shard_ids()
        ]
        for thread in threads:
            thread.start()
        return threads

    def _guarded(self, shard_id: str) -> None:
        # A failure to read a shard (the moto server gone) is retried, not fatal.
        while not self.stopping.is_set():
            try:
                self.run_shard(shard_id)
                return
            except Exception:
                log.exception("reading %s failed; retrying in 1s", shard_id)
                self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()


def load_handler(spec: str) -> Handler:
    """ "package.module:function" to the function."""
    module_name, _, attr = spec.partition(":")
    handler: Handler = getattr(importlib.import_module(module_name), attr or "handler")
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    from reportgrid.settings import load_settings  # noqa: PLC0415 -- not for library users

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--handler", default=DEFAULT_HANDLER, help="module:function")
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--batching-window", type=float, default=0.0)
    parser.add_argument(
        "--starting-position", choices=["LATEST", "TRIM_HORIZON"], default="TRIM_HORIZON"
    )
    parser.add_argument("--max-retry-attempts", type=int, default=3)
    parser.add_argument("--max-record-age", type=float, default=6 * 3600)
    parser.add_argument(
        "--failure-queue-url",
        default=None,
        help="the on-failure destination queue (default: "
        f"{resources.ENV.STREAM_FAILURE_QUEUE_URL}; none: only the on-failure log)",
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME=module:function",
        help="another consumer of the same stream (its own function name and checkpoints "
        "under <state-dir>/NAME), e.g. the mirror: "
        "reportgrid-mirror=functions.mirror.handler:handler",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    settings = load_settings()
    if settings.aws_endpoint_url is None:
        parser.error(f"{resources.ENV.AWS_ENDPOINT_URL} must point at the moto server")
    runner = KinesisRunner(
        load_handler(args.handler),
        stream_name=settings.task_stream_name,
        region=settings.region,
        endpoint_url=settings.aws_endpoint_url,
        state_dir=args.state_dir,
        failure_queue_url=args.failure_queue_url or settings.stream_failure_queue_url,
        config=MappingConfig(
            batch_size=args.batch_size,
            batching_window_seconds=args.batching_window,
            starting_position=args.starting_position,
            max_retry_attempts=args.max_retry_attempts,
            max_record_age_seconds=args.max_record_age,
        ),
    )
    runners = [runner]
    for extra in args.also:
        name, _, spec = extra.partition("=")
        if not name or not spec:
            parser.error(f"--also {extra!r}: give NAME=module:function")
        runners.append(
            KinesisRunner(
                load_handler(spec),
                stream_name=settings.task_stream_name,
                region=settings.region,
                endpoint_url=settings.aws_endpoint_url,
                state_dir=args.state_dir / name if args.state_dir else None,
                function_name=name,
                config=runner.config,
            )
        )

    # SIGTERM (the supervisor) and SIGINT stop polling; an invocation in flight finishes.
    def stop_all(*_: object) -> None:
        for each in runners:
            each.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop_all)
    threads = [thread for r in runners for thread in r.start()]
    log.info("polling %d shard(s) of %s", len(threads), runner.stream_name)
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(timeout=0.5)
    log.info("stopped after %d invocation(s)", runner.invocations)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
