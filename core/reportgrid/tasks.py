"""The task record on the wire: a 2-byte header (magic "R", format version) and then a
reportgrid.task.v1.TaskRecord. Kinesis records and SQS message bodies (base64) carry it.

The header lets a worker reject bytes it cannot read (a poison record, or a format from a
newer edge) without guessing, and lets the format change without a flag day.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from google.protobuf.message import DecodeError

from reportgrid.task.v1.task_pb2 import TaskRecord

MAGIC: Final = b"R"
FORMAT_VERSION: Final = 1
_HEADER: Final = MAGIC + bytes([FORMAT_VERSION])


class UndecodableTask(ValueError):
    """The bytes are not a task record this code can read. Permanent: never retry."""


def encode(task: TaskRecord) -> bytes:
    return _HEADER + task.SerializeToString()


def decode(data: bytes) -> TaskRecord:
    if len(data) < 2 or data[:1] != MAGIC:
        raise UndecodableTask("not a Reportgrid task record (bad magic byte)")
    if data[1] != FORMAT_VERSION:
        raise UndecodableTask(f"task record format {data[1]} is not supported")
    task = TaskRecord()
    try:
        task.ParseFromString(data[2:])
    except DecodeError as err:
        raise UndecodableTask(f"task record body is not valid protobuf: {err}") from None
    if not task.report_id or not task.tenant:
        raise UndecodableTask("task record has no report_id or tenant")
    return task


def encode_text(task: TaskRecord) -> str:
    """For SQS, whose bodies are text."""
    return base64.b64encode(encode(task)).decode("ascii")


def decode_text(body: str) -> TaskRecord:
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise UndecodableTask("queue message body is not base64") from None
    return decode(raw)
