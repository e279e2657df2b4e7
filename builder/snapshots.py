"""Archive snapshot times: one UTC instant, written three ways (RFC 3339, epoch, archive path)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

SNAPSHOT_ARCHIVE = "http://snapshot.debian.org/archive/debian"


_RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def epoch_time(snapshot: str) -> datetime:
    """2026-11-01T00:00:00Z as a UTC datetime; ValueError for any other form. (No strptime:
    its module costs every command a few milliseconds at start.)"""
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
    """This instant in UTC, to the millisecond: 2026-11-23T10:15:00.123Z."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
