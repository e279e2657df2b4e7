"""Context -> image: build with the engine, normalise, load back under its name, push.

The result is a `BuildRecord` whose image ID is a pure function of the lock: two clean builds
of one lock give one ID, and pushing either gives one manifest digest. The image is named only
after normalisation, so a failed or interrupted build leaves no tag behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from builder import __version__, bootstrap, context, engine, normalise, plan, source, tarstream
from builder.buildrecord import BuildRecord, LayerRecord
from builder.errors import ReprobuildError
from builder.lock import Lock

Note = Callable[[str], None]


class NormaliseError(ReprobuildError):
    """The engine's export of a built image was not what the normaliser expects."""


@dataclass(frozen=True)
class Normalised:
    image_id: str
    layers: tuple[LayerRecord, ...]
    base_layers: int
    rewritten: tuple[str, ...]  # the noise found in layers that had to be rewritten
    scanned_bytes: int


def image_reference(lock: Lock, lock_digest: str) -> str:
    """The local name: the spec's image name, tagged by the lock it was built from."""
    return f"{lock.resolution['name']}:{lock_digest.removeprefix('sha256:')[:12]}"


def ensure_base(client: Any, lock: Lock, build_plan: plan.BuildPlan, note: Note) -> None:
    """Registry bases are pulled by digest; bootstrapped ones are built from the archive."""
    if engine.has_image(client, build_plan.base):
        return
    if lock.base.kind == "registry":
        note(f"pulling the base {build_plan.base}")
        engine.pull(client, build_plan.base)
        return
    note(f"bootstrapping the base {build_plan.base} with mmdebstrap at {lock.base.snapshot}")
    source = bootstrap.DebianSource(lock.base.suite, lock.base.mirror)
    with tempfile.TemporaryDirectory(prefix="reprobuild-base-") as folder:
        archive = bootstrap.build_base(
            source, bootstrap.BOOTSTRAP_PACKAGES, lock.base.snapshot, build_plan.base, Path(folder)
        )
        engine.load_archive(client, archive.path)


def normalise_image(
    client: Any, image_id: str, *, base: str, epoch: int, reference: str, note: Note
) -> Normalised:
    """Normalise a built image and load it back as `reference`; return what it became."""
    diff_ids: list[str] = engine.inspect_image(client, image_id)["RootFS"]["Layers"]
    base_ids: list[str] = engine.inspect_image(client, base)["RootFS"]["Layers"]
    if diff_ids[: len(base_ids)] != base_ids:
        raise NormaliseError(
            f"the built image {image_id} does not start with the base {base}. A template "
            "override must keep `FROM {{ plan.base }} AS system` as its first stage and build the "
            "image from it; restore that line, or remove the override."
        )
    base_history = engine.history_length(client, base)
    note("normalising: reading the built image")
    raw_config, scans, members = _scan(client, image_id, epoch, set(base_ids))
    own = [
        (index, scans[diff_id]) for index, diff_id in enumerate(diff_ids) if index >= len(base_ids)
    ]
    noisy = [index for index, scan in own if not scan.clean]
    rewritten = tuple(problem for _, scan in own for problem in scan.noise)
    with ExitStack() as stack:
        if noisy:
            note(
                f"normalising: rewriting {len(diff_ids) - noisy[0]} layers "
                f"from layer {noisy[0] + 1}"
            )
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reprobuild-")))
            work = _Pass(diff_ids, noisy, members, scans)
            final = _rewrite(client, image_id, work, epoch, folder)
            layers = [(r.diff_id, _open(stack, folder, i), r.size) for i, r in enumerate(final)]
        else:
            layers = [(diff_id, None, scans[diff_id].size) for diff_id in diff_ids]
        new_ids = [diff_id for diff_id, _, _ in layers]
        config = normalise.config(raw_config, epoch, base_history, new_ids)
        engine.load_stream(client, normalise.load_archive(config, layers, reference))
    new_id = f"sha256:{hashlib.sha256(config).hexdigest()}"
    loaded = engine.inspect_image(client, reference)["Id"]
    if loaded != new_id:
        raise NormaliseError(
            f"the engine loaded {reference} as {loaded}, expected {new_id}: another build took "
            "the name at the same moment. Run `reprobuild build` again."
        )
    records = tuple(LayerRecord(diff_id, size) for diff_id, _, size in layers)
    scanned = sum(scan.size for _, scan in own)
    return Normalised(new_id, records, len(base_ids), rewritten, scanned)


def _open(stack: ExitStack, folder: Path, index: int) -> IO[bytes] | None:
    path = folder / f"{index:03d}.tar"
    return stack.enter_context(path.open("rb")) if path.exists() else None


def _is_layer(name: str) -> bool:
    return name.endswith("/layer.tar") or name.startswith("blobs/sha256/")


def _scan(
    client: Any, image_id: str, epoch: int, base_ids: set[str]
) -> tuple[bytes, dict[str, normalise.LayerScan], dict[str, str]]:
    """First pass: the raw config, a scan of every layer, and which archive member is which."""
    config_names = {
        f"{image_id.removeprefix('sha256:')}.json",
        f"blobs/{image_id.replace(':', '/')}",
    }
    raw_config = b""
    scans: dict[str, normalise.LayerScan] = {}
    members: dict[str, str] = {}
    with engine.saved_members(client, image_id) as archive:
        for member in archive:
            if not member.isreg():
                continue
            handle = tarstream.data(archive, member)
            if member.name in config_names:
                raw_config = handle.read()
            elif _is_layer(member.name):
                scan = _scan_layer(handle, epoch)
                if scan is not None:
                    scans[scan.diff_id] = scan
                    members[member.name] = scan.diff_id
    if not raw_config:
        raise NormaliseError(
            f"the engine's export of {image_id} holds no image config. {engine.DAMAGED}"
        )
    for diff_id in base_ids:
        scans.setdefault(diff_id, normalise.LayerScan(diff_id, 0))
    return raw_config, scans, members


def _scan_layer(handle: IO[bytes], epoch: int) -> normalise.LayerScan | None:
    import tarfile

    try:
        return normalise.scan(handle, epoch)
    except tarfile.ReadError:  # an OCI blob that is not a layer (a manifest, an index)
        return None


@dataclass(frozen=True)
class _Pass:
    diff_ids: list[str]
    noisy: list[int]
    members: dict[str, str]  # archive member name -> diff ID, from the first pass
    scans: dict[str, normalise.LayerScan]


def _rewrite(
    client: Any, image_id: str, work: _Pass, epoch: int, folder: Path
) -> list[normalise.LayerScan]:
    """Second pass: rewrite noisy layers, copy the clean ones above the first of them."""
    first = work.noisy[0]
    # An archive holds one member per distinct layer; two steps that produced the same layer
    # share it, so each member serves every index that names its diff ID.
    wanted: dict[str, list[int]] = {}
    for index in range(first, len(work.diff_ids)):
        wanted.setdefault(work.diff_ids[index], []).append(index)
    to_rewrite = {work.diff_ids[index] for index in work.noisy}
    results: dict[int, normalise.LayerScan] = {}
    with engine.saved_members(client, image_id) as archive:
        for member in archive:
            diff_id = work.members.get(member.name, "")
            if diff_id not in wanted:
                continue
            handle = tarstream.data(archive, member)
            head, *others = wanted[diff_id]
            with (folder / f"{head:03d}.tar").open("wb") as target:
                if diff_id in to_rewrite:
                    results[head] = normalise.rewrite(handle, target, epoch)
                else:
                    results[head] = normalise.copy(handle, target)
            for index in others:
                os.link(folder / f"{head:03d}.tar", folder / f"{index:03d}.tar")
                results[index] = results[head]
    missing = sorted(set(range(first, len(work.diff_ids))) - set(results))
    if missing:
        raise NormaliseError(
            f"the engine's export of {image_id} lacks layers {missing}. {engine.DAMAGED}"
        )
    unchanged = [work.scans[diff_id] for diff_id in work.diff_ids[:first]]
    return unchanged + [results[index] for index in range(first, len(work.diff_ids))]


@dataclass(frozen=True)
class Progress:
    """Where a build reports: free-text notes, engine build events, wheel downloads."""

    note: Note
    event: Callable[[engine.BuildEvent], None]
    download: Callable[[str, int, int], None]
    sent: Callable[[int], None]


def _counted(chunks: Iterator[bytes], sent: Callable[[int], None]) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        sent(total)
        yield chunk


def build_lock(
    client: Any,
    current: Any,  # lockfile.CurrentLock
    *,
    wheel_cache: Path,
    no_cache: bool,
    push: str | None,
    progress: Progress,
) -> BuildRecord:
    """Render, fetch, build, normalise, (push): the record of an image built from one lock."""
    from builder import render, wheelhouse

    lock, project, lock_digest = current.lock, current.project, current.digest
    build_plan = plan.plan(lock, lock_digest)
    progress.note(f"wheels: verifying {len(lock.python.packages)} against the lock")
    wheelhouse.fetch(lock, project, wheel_cache, progress.download)
    texts = context.files(build_plan, render.render(build_plan, lock_digest, project))
    context_dir = context.write(
        project / context.DEFAULT_OUTPUT, texts, project, build_plan, wheelhouse=wheel_cache
    )
    ensure_base(client, lock, build_plan, progress.note)
    stream = _counted(tarstream.folder_stream(context_dir), progress.sent)
    built = engine.build(client, stream, progress.event, no_cache)
    reference = image_reference(lock, lock_digest)
    normalised = normalise_image(
        client,
        built,
        base=build_plan.base,
        epoch=build_plan.epoch,
        reference=reference,
        note=progress.note,
    )
    commit, dirty = source.git_state(project)
    record = BuildRecord(
        image=reference,
        image_id=normalised.image_id,
        layers=normalised.layers,
        base_layers=normalised.base_layers,
        lock=lock_digest,
        knowledge_version=lock.knowledge_version,
        reprobuild_version=__version__,
        engine_version=engine.version(client),
        base=build_plan.base,
        git_commit=commit,
        git_dirty=dirty,
        normalisation={
            "rewritten": list(normalised.rewritten),
            "scanned_bytes": normalised.scanned_bytes,
        },
    )
    if push is not None:
        record = push_and_point(client, record, push, current, progress.note, build_plan=build_plan)
    return record


def push_and_point(
    client: Any,
    record: BuildRecord,
    reference: str,
    current: Any,  # lockfile.CurrentLock
    note: Note,
    *,
    build_plan: plan.BuildPlan | None = None,  # the lock's plan, when the caller has it
) -> BuildRecord:
    """Push, then point the context's Apptainer definition at the pushed digest."""
    from builder import render

    record = push_image(client, record, reference, note)
    context_dir = current.project / context.DEFAULT_OUTPUT
    if context_dir.is_dir():
        build_plan = build_plan or plan.plan(current.lock, current.digest)
        render.write_definition(
            context_dir, build_plan, current.digest, current.project, record.pushed
        )
    return record


def push_image(client: Any, record: BuildRecord, reference: str, note: Note) -> BuildRecord:
    """Tag the built image as `reference` and push it; the record gains the manifest digest."""
    tagged = engine.tag(client, record.image_id, reference)
    note(f"pushing {tagged}")
    digest = engine.push(client, tagged)
    repository = engine.split_tag(tagged)[0]
    return replace(
        record, manifest_digest=digest, pushed=f"{repository}@{digest}", pushed_tag=tagged
    )
