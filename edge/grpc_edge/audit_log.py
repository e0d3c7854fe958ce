"""The edge's audit records: every DeleteReport and CancelReport a tenant makes, written
to the table's audit partition (reportgrid/audit.py) with the key's prefix as the actor.

The record is written after the action succeeded, within the call's deadline. A failed
write does not fail the call (the action is done; a retry would not undo it): it is logged
and counted (AuditWriteFailures) instead.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from grpc_edge.call import Call
from grpc_edge.store import bounded
from reportgrid import audit

if TYPE_CHECKING:  # dev-only stubs; the edge image does not have them
    from types_aiobotocore_dynamodb.client import DynamoDBClient

logger = Logger(service="reportgrid-edge", child=True)


class AuditLog:
    def __init__(self, dynamodb: DynamoDBClient, table_name: str, region: str) -> None:
        self._ddb = dynamodb
        self._table = table_name
        self._region = region
        self.written = 0
        self.failures = 0

    async def record(self, call: Call, action: str, **detail: Any) -> None:
        entry = audit.AuditRecord(
            tenant=call.tenant,
            actor=audit.key_actor(call.key_prefix),
            action=action,
            region=self._region,
            at_ms=time.time_ns() // 1_000_000,
            detail=detail,
        )
        try:
            await bounded(
                self._ddb.put_item(TableName=self._table, Item=audit.to_item(entry)),
                call.deadline,
                "the audit log",
            )
        except Exception:
            self.failures += 1
            logger.exception("audit record not written", extra=entry.to_json())
            return
        self.written += 1
