"""UTC instants: the snapshot forms, and a run's start stamp without datetime."""

from __future__ import annotations

import time

import pytest

from builder import snapshots


def test_a_snapshot_time_is_written_three_ways() -> None:
    assert snapshots.epoch_seconds("2026-11-22T00:00:00Z") == 1795305600
    assert snapshots.snapshot_stamp("2026-11-01T00:00:00Z") == "20261101T000000Z"
    assert snapshots.snapshot_mirror("2026-11-01T00:00:00Z") == (
        "http://snapshot.debian.org/archive/debian/20261101T000000Z"
    )
    with pytest.raises(ValueError, match="does not match format"):
        snapshots.epoch_time("2026-11-01 00:00:00")


def test_now_is_stamped_to_the_millisecond_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1795305600_123_999_999)
    assert snapshots.utc_now() == "2026-11-22T00:00:00.123Z"
    monkeypatch.setattr(time, "time_ns", lambda: 1795305659_000_999_999)
    assert snapshots.utc_now() == "2026-11-22T00:00:59.000Z"
