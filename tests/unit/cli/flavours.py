"""One SDK test body for both clients: the body is written against AsyncReportClient's
interface, and the blocking ReportClient is driven through `Blocking`, which only forwards
(each call blocks the event loop, which is fine: the scripted server has its own threads).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Self

from reportgrid.client import AsyncReportClient, ReportClient

FLAVOURS = ("sync", "async")


class Blocking:
    """ReportClient with AsyncReportClient's interface: each method a coroutine, `list` and
    `list_pages` async iterators that advance the client's own iterators one step at a
    time (so its paging stays lazy)."""

    _ITERATORS = frozenset({"list", "list_pages"})

    def __init__(self, client: ReportClient) -> None:
        self.client = client

    @property
    def endpoint(self) -> str:
        return self.client.endpoint

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)
        if name in self._ITERATORS:

            async def iterate(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                items: Iterator[Any] = method(*args, **kwargs)
                for item in items:
                    yield item

            return iterate

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call

    async def __aenter__(self) -> Self:
        self.client.__enter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)


# `connect(endpoints, **kwargs)`: a client of one flavour, used as `async with`.
Connect = Callable[..., AsyncReportClient | Blocking]


def connector(flavour: str) -> Connect:
    if flavour == "async":
        return AsyncReportClient

    def connect(endpoints: Any, **kwargs: Any) -> Blocking:
        return Blocking(ReportClient(endpoints, **kwargs))

    return connect
