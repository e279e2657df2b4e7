"""Archive snapshot times: one UTC instant, written three ways (RFC 3339, epoch, archive path).

`reprobuild run` stamps its start with `utc_now` on its way to the container's start, so this
module imports only `re` and `time` there: `datetime`'s import is about 2 ms, a share of a short
run. The functions the other stages use import it themselves.
"""

from __future__ import annotations

import re
import time

TYPE_CHECKING = False  # typing's own flag, without importing typing on `run`'s way to the start
if TYPE_CHECKING:
    from datetime import datetime

SNAPSHOT_ARCHIVE = "http://snapshot.debian.org/archive/debian"


_RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def epoch_time(snapshot: str) -> datetime:
    """2026-11-01T00:00:00Z as a UTC datetime; ValueError for any other form. (No strptime:
    its module costs every command a few milliseconds at start.)"""
    from datetime import datetime, timezone

    if not _RFC3339_UTC.fullmatch(snapshot):
        raise ValueError(f"time data {snapshot!r} does not match format '%Y-%m-%dT%H:%M:%SZ'")
    return datetime.fromisoformat(snapshot[:-1]).replace(tzinfo=timezone.utc)


def epoch_seconds(snapshot: str) -> int:
    return int(epoch_time(snapshot).timestamp())


def snapshot_stamp(snapshot: str) -> str:
    """2026-11-01T00:00:00Z -> 20261101T000000Z, the snapshot archive's path segment."""
    return epoch_time(snapshot).strftime("%Y%m%dT%H%M%SZ")


def snapshot_mirror(snapshot: str) -> str:
    return f"{SNAPSHOT_ARCHIVE}/{snapshot_stamp(snapshot)}"


def utc_now() -> str:
    """This instant in UTC, to the millisecond (truncated, as datetime's isoformat does):
    2026-11-23T10:15:00.123Z."""
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{nanoseconds // 1_000_000:03d}Z"
