"""Archive snapshot times: one UTC instant, written three ways (RFC 3339, epoch, archive path)."""

from __future__ import annotations

from datetime import datetime, timezone

SNAPSHOT_ARCHIVE = "http://snapshot.debian.org/archive/debian"


def epoch_time(snapshot: str) -> datetime:
    return datetime.strptime(snapshot, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def epoch_seconds(snapshot: str) -> int:
    return int(epoch_time(snapshot).timestamp())


def snapshot_stamp(snapshot: str) -> str:
    """2026-11-01T00:00:00Z -> 20261101T000000Z, the snapshot archive's path segment."""
    return epoch_time(snapshot).strftime("%Y%m%dT%H%M%SZ")


def snapshot_mirror(snapshot: str) -> str:
    return f"{SNAPSHOT_ARCHIVE}/{snapshot_stamp(snapshot)}"
