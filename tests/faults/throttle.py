"""DynamoDB throttling injected into a real (boto3 or aioboto3) client: a `before-send` hook
answers the next k attempts with a throttling error instead of sending them, so the
client's own retry policy, our backoff and our error mapping all run for real. Attempts
after the k-th go to the moto server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from aiobotocore.awsrequest import AioAWSResponse
from aiobotocore.client import AioBaseClient
from botocore.awsrequest import AWSResponse

THROTTLED = "ProvisionedThroughputExceededException"


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:  # botocore reads this
        yield self._data

    async def read(self) -> bytes:  # aiobotocore reads this
        return self._data


class Throttle:
    """Throttle the next `attempts` calls of `operations` (e.g. {"GetItem"}) on `client`."""

    def __init__(
        self,
        client: Any,
        operations: set[str],
        attempts: int,
        *,
        code: str = THROTTLED,
        only_if: Callable[[bytes], bool] | None = None,
    ) -> None:
        """`only_if(body)` narrows it to some requests (e.g. the terminal write)."""
        self._client = client
        self._only_if = only_if
        self._operations = operations
        self._code = code
        self._lock = threading.Lock()
        self.remaining = attempts
        self.injected = 0
        self.passed = 0
        self._async = isinstance(client, AioBaseClient)

    def __enter__(self) -> Throttle:
        self._client.meta.events.register("before-send.dynamodb", self._hook)
        return self

    def __exit__(self, *_: object) -> None:
        self._client.meta.events.unregister("before-send.dynamodb", self._hook)

    def _hook(self, request: Any, **_: Any) -> Any:
        operation = request.headers.get("X-Amz-Target", b"")
        name = (operation.decode() if isinstance(operation, bytes) else operation).split(".")[-1]
        if name not in self._operations:
            return None
        body = request.body if isinstance(request.body, bytes) else bytes(request.body or b"")
        if self._only_if is not None and not self._only_if(body):
            return None
        with self._lock:
            if self.remaining <= 0:
                self.passed += 1
                return None
            self.remaining -= 1
            self.injected += 1
        error = json.dumps(
            {"__type": f"com.amazonaws.dynamodb.v20120810#{self._code}", "message": "throttled"}
        ).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "throttle"}
        response_type = AioAWSResponse if self._async else AWSResponse
        return response_type(request.url, 400, headers, _Body(error))
