"""Batched PutEvents: at most 10 entries and 256 KB per call, each entry's outcome read
from the reply (a call can succeed while some entries fail: FailedEntryCount, and an
ErrorCode on those entries, in request order — EventBridge API reference, PutEvents)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from reportgrid import events

log = logging.getLogger(__name__)


class EventsClient(Protocol):
    """What boto3's EventBridge client offers that we call (its stubs are not installed)."""

    def put_events(self, *, Entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]: ...


def chunks(
    entries: Sequence[tuple[str, Mapping[str, Any]]],
) -> Iterator[list[tuple[str, Mapping[str, Any]]]]:
    """Consecutive groups of at most MAX_ENTRIES_PER_PUT entries and MAX_PUT_BYTES."""
    group: list[tuple[str, Mapping[str, Any]]] = []
    size = 0
    for item in entries:
        item_size = events.entry_size(item[1])
        if group and (
            len(group) == events.MAX_ENTRIES_PER_PUT or size + item_size > events.MAX_PUT_BYTES
        ):
            yield group
            group, size = [], 0
        group.append(item)
        size += item_size
    if group:
        yield group


def put_all(client: EventsClient, entries: Sequence[tuple[str, Mapping[str, Any]]]) -> set[str]:
    """Put every (identifier, entry); returns the identifiers whose entry was not taken (a
    failed entry, or every entry of a call that failed), for the caller to retry."""
    failed: set[str] = set()
    for group in chunks(entries):
        try:
            reply = client.put_events(Entries=[entry for _, entry in group])
        except (ClientError, BotoCoreError) as err:
            log.warning("PutEvents of %d entries failed: %s", len(group), err)
            failed.update(ident for ident, _ in group)
            continue
        if not reply.get("FailedEntryCount"):
            continue
        results = reply.get("Entries", [])
        for position, (ident, _) in enumerate(group):
            result = results[position] if position < len(results) else {}
            if result.get("ErrorCode") or not result.get("EventId"):
                log.warning(
                    "PutEvents refused an entry: %s %s",
                    result.get("ErrorCode"),
                    result.get("ErrorMessage"),
                )
                failed.add(ident)
    return failed
