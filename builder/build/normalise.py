"""Make a built image a pure function of its lock: the config without build-time noise, every
layer the build added free of caches, logs, bytecode and dates later than the lock's epoch.

The rendered Dockerfile already writes clean layers (each step dates what it changed to the
epoch), so the common case rewrites only the config; a layer that still carries noise (a
whiteout dated by the build, a cache a custom template left behind) is rewritten here. Base
layers are never touched. Pure stream transforms: the engine's side lives in `build/image.py`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import IO, Any

from builder import tarstream

# Build-time noise: never part of what a lock describes.
NOISE = (
    "*.pyc",
    "*/__pycache__",
    "*/__pycache__/*",
    "var/cache/ldconfig/aux-cache",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*_*",
    "root/.cache/*",
    "tmp/*",
)
# Names the rules a layer is judged by (the noise, and no date after the epoch): a layer found
# clean under other rules is checked again.
RULES = hashlib.sha256(json.dumps([NOISE, "mtime <= epoch"]).encode()).hexdigest()[:12]
# How the classic builder records the rendered Dockerfile's copy of a Python layer from its
# install stage (`COPY --from=install --chown=0:0 TREE /`): `<shell> #(nop) COPY --chown=0:0dir:
# <sha256 of the builder's own> in / `. Such a layer is always rewritten in the canonical form,
# and its history names it by that form's diff ID, so that it is the layer, and the history
# entry, that `reprobuild build` writes from the wheels itself (build/pylayer.py).
STAGE_COPY = re.compile(r" #\(nop\) COPY --chown=0:0(?:file|dir|multi):[0-9a-f]{64} in / $")


def layer_copy(diff_id: str) -> str:
    """The history of a Python layer's step: the copy, naming the layer by its diff ID."""
    return f"/bin/sh -c #(nop) COPY --chown=0:0 layer:{diff_id} in / "


# Fields of the engine's runtime config that name the build, not the image: the build
# container's hostname, the parent image ID (itself dated).
CONFIG_BUILD_FIELDS = ("Hostname", "Image")


def is_noise(name: str) -> bool:
    path = name.removeprefix("./").rstrip("/")
    base = PurePosixPath(path)
    if base.name.startswith(".wh."):  # a whiteout: judge the path it deletes
        path = str(base.with_name(base.name.removeprefix(".wh.")))
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in NOISE)


def iso_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Step:
    """One build step above the parent image, as the engine's history tells it."""

    created_by: str
    comment: str
    adds_layer: bool


def config(
    parent: dict[str, Any],
    image: dict[str, Any],
    steps: list[Step],
    epoch: int,
    diff_ids: list[str],
) -> bytes:
    """The normalised config of an image built FROM `parent` (its parsed config), written from
    what the engine shows of the built image (`image`: its inspect document) and of its steps.

    Nothing build-specific survives: no container ID, hostname, parent ID or engine version, and
    the image and each of its own steps are dated by the epoch. The parent's history is kept as
    the parent's config has it. Written, not edited from the engine's raw config, so that the
    config is the same whether or not that raw config was read (it needs an export).
    """
    created = iso_time(epoch)
    history: list[dict[str, Any]] = list(parent.get("history") or [])
    history += [_history_entry(step, created) for step in steps]
    runtime = dict(image.get("Config") or {})
    for key in CONFIG_BUILD_FIELDS:
        runtime.pop(key, None)
    document: dict[str, Any] = {
        "architecture": image["Architecture"],
        "config": runtime,
        "created": created,
        "history": history,
        "os": image["Os"],
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    optional = {
        "author": image.get("Author"),
        "variant": image.get("Variant"),
        "os.version": image.get("OsVersion"),
        "os.features": parent.get("os.features"),
    }
    document.update((key, value) for key, value in optional.items() if value)
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _history_entry(step: Step, created: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"created": created}
    if step.created_by:
        entry["created_by"] = step.created_by
    if step.comment:
        entry["comment"] = step.comment
    if not step.adds_layer:
        entry["empty_layer"] = True
    return entry


@dataclass
class LayerScan:
    """One layer as the engine wrote it: its digest, size and what is wrong with it."""

    diff_id: str
    size: int
    noise: list[str] = field(default_factory=list)  # "path: reason", first few only

    @property
    def clean(self) -> bool:
        return not self.noise


def _problem(member: tarfile.TarInfo, epoch: int) -> str | None:
    if is_noise(member.name):
        return f"{member.name}: build-time noise"
    if member.mtime > epoch:
        return f"{member.name}: dated after the lock's epoch"
    return None


def scan(layer: IO[bytes], epoch: int, keep: int = 5) -> LayerScan:
    """Read a layer tar once: its diff ID, size, and up to `keep` problems (all are counted)."""
    problems: list[str] = []

    def check(entry: tarfile.TarInfo, _: tarfile.TarFile) -> None:
        problem = _problem(entry, epoch)
        if problem:
            problems.append(problem)

    diff_id, size = tarstream.read_layer(layer, check)
    if len(problems) > keep:
        problems[keep:] = [f"... {len(problems) - keep} more"]
    return LayerScan(diff_id, size, problems)


def canonical(member: tarfile.TarInfo, epoch: int) -> tarfile.TarInfo:
    """A member in the canonical form: its date clamped to `epoch`, no owner names (owners by
    number), no PAX dates or names. build/pylayer.py writes the Python layers' members so."""
    member.mtime = min(int(member.mtime), epoch)
    member.uname = member.gname = ""
    member.pax_headers = {
        key: value
        for key, value in member.pax_headers.items()
        if key not in ("mtime", "atime", "ctime", "uname", "gname")
    }
    return member


@contextlib.contextmanager
def canonical_writer(output: IO[bytes]) -> Iterator[tarfile.TarFile]:
    """The tar writer of the canonical form: PAX headers, streamed, 1 MiB copies."""
    with tarfile.open(
        fileobj=output, mode="w|", format=tarfile.PAX_FORMAT, bufsize=tarstream.BLOCK
    ) as writer:
        writer.copybufsize = tarstream.BLOCK  # type: ignore[attr-defined]  # 1 MiB reads, not 16 KiB
        yield writer


def rewrite(layer: IO[bytes], output: IO[bytes], epoch: int) -> LayerScan:
    """Write the canonical layer: noise dropped, dates clamped, owners by number, same order."""
    hashing_out = tarstream.HashingWriter(output)
    with (
        tarfile.open(fileobj=layer, mode="r|", bufsize=tarstream.BLOCK) as source,
        canonical_writer(hashing_out) as target,  # type: ignore[arg-type]
    ):
        for member in source:
            if is_noise(member.name):
                continue
            data = source.extractfile(member) if member.isreg() else None
            target.addfile(canonical(member, epoch), data)
    return LayerScan(f"sha256:{hashing_out.digest.hexdigest()}", hashing_out.size)


def load_archive(
    config_bytes: bytes, layers: list[tuple[str, IO[bytes] | None, int]], reference: str
) -> Iterator[bytes]:
    """A `docker load` archive, streamed: the config, the manifest, and the layer files given.

    A layer passed without a file is one the engine already holds (same chain of diff IDs); the
    engine does not open its file, so it is left out and the archive stays small.
    """
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    names = [f"layers/{index:03d}.tar" for index in range(len(layers))]
    manifest = json.dumps([{"Config": config_name, "RepoTags": [reference], "Layers": names}])
    yield from tarstream.member(
        tarstream.file_info(config_name, len(config_bytes)), io.BytesIO(config_bytes)
    )
    manifest_bytes = manifest.encode()
    yield from tarstream.member(
        tarstream.file_info("manifest.json", len(manifest_bytes)), io.BytesIO(manifest_bytes)
    )
    for name, (_, handle, size) in zip(names, layers, strict=True):
        if handle is not None:
            yield from tarstream.member(tarstream.file_info(name, size), handle)
    yield tarstream.END


def copy(source: IO[bytes], target: IO[bytes]) -> LayerScan:
    """A clean layer after a rewritten one: same bytes, needed because its chain ID changed."""
    writer = tarstream.copy_hashed(source, target)
    return LayerScan(f"sha256:{writer.digest.hexdigest()}", writer.size)
