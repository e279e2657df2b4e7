"""Build records for tests that need one without building: fixed, recognisable digests."""

from __future__ import annotations

from typing import Any

from builder.build.buildrecord import BuildRecord

CONFIG = "sha256:" + "cd" * 32
MANIFEST = "sha256:" + "ab" * 32


def make_record(lock: str, *, pushed: str | None = None, **changes: Any) -> BuildRecord:
    """A record of an image built from the lock digest `lock`, pushed as `pushed` (a
    name@sha256:... whose digest is MANIFEST) when given."""
    values: dict[str, Any] = {
        "image": f"reprobuild/example-train:{lock.removeprefix('sha256:')[:12]}",
        "image_id": CONFIG,
        "layers": (),
        "base_layers": 1,
        "lock": lock,
        "knowledge_version": "k",
        "reprobuild_version": "0.1.0",
        "engine_version": "20.10.24",
        "base": "python@sha256:" + "ef" * 32,
        "manifest_digest": MANIFEST if pushed else None,
        "pushed": pushed,
    }
    return BuildRecord(**{**values, **changes})
