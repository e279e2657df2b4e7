"""Normalisation through the engine: an image built FROM a parent, made a pure function of its
lock and loaded back under its name.

The config is written from the engine's inspect and history of the build; the layers the build
added are read from an export only when not known clean (`imagecache`), and a noisy one is
rewritten (`normalise`, the pure stream transforms).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from builder import files, tarstream
from builder.build import imagecache, normalise
from builder.build.buildrecord import LayerRecord
from builder.engine.sdk import DAMAGED, BuildEvent, Engine
from builder.errors import NormaliseError, ReprobuildError
from builder.render import plan

Note = Callable[[str], None]


@dataclass(frozen=True)
class Normalised:
    image_id: str
    layers: tuple[LayerRecord, ...]
    rewritten: tuple[str, ...]  # the noise found in layers that had to be rewritten
    scanned_bytes: int


def normalise_image(
    engine: Engine,
    image_id: str,
    *,
    parent: str,
    epoch: int,
    reference: str,
    note: Note,
    trust_context_copies: bool = False,
    rescan: bool = False,
) -> Normalised:
    """Normalise an image built FROM `parent` and load it back as `reference`.

    The config is written from the engine's inspect and history of the build (see
    `normalise.config`). Each layer the build added is checked for noise, except a layer whose
    diff ID was found clean before (the diff ID is the layer's sha256) and, with
    `trust_context_copies`, a layer copied from the build context, whose every file reprobuild
    wrote and dated itself. Layers still to check are read from an export of the image (`rescan`:
    all of them), and a noisy one is rewritten.
    """
    parent_document: dict[str, Any] = json.loads(_parent_config(engine, parent, note))
    inherited = len(parent_document["rootfs"]["diff_ids"])
    inspected = engine.inspect_image(image_id)
    diff_ids: list[str] = inspected["RootFS"]["Layers"]
    steps = _own_steps(engine, image_id, parent, parent_document, diff_ids)
    layer_steps = [step for step in steps if step.adds_layer]
    own = list(zip(diff_ids[inherited:], layer_steps, strict=True))
    trusted = {
        d for d, step in own if trust_context_copies and _CONTEXT_COPY.search(step.created_by)
    }
    canonical = {
        inherited + index
        for index, (_, step) in enumerate(own)
        if normalise.STAGE_COPY.search(step.created_by)
    }
    to_check = (
        rescan
        or bool(canonical)
        or any(d not in trusted and not imagecache.is_clean(d, epoch, note) for d, _ in own)
    )
    with ExitStack() as stack:
        if to_check:
            checked = _check_layers(
                engine,
                image_id,
                diff_ids=diff_ids,
                inherited=inherited,
                trusted=trusted,
                canonical=canonical,
                epoch=epoch,
                stack=stack,
                note=note,
            )
        else:
            checked = _Checked([(diff_id, None, 0) for diff_id in diff_ids], (), 0)
        new_ids = [diff_id for diff_id, _, _ in checked.layers]
        steps = _named_layer_copies(steps, new_ids[inherited:])
        config = normalise.config(parent_document, inspected, steps, epoch, new_ids)
        engine.load_stream(normalise.load_archive(config, checked.layers, reference))
    new_id = confirm_loaded(engine, reference, config)
    layers = _layer_sizes(engine, new_id, config)
    return Normalised(new_id, layers, checked.rewritten, checked.scanned_bytes)


def build_normalised(
    engine: Engine,
    context: Iterator[bytes],
    *,
    event: Callable[[BuildEvent], None],
    no_cache: bool,
    parent: str,
    epoch: int,
    reference: str,
    note: Note,
    target: str | None = None,
    trust_context_copies: bool = False,
) -> Normalised:
    """Build `context` with the engine (up to the stage `target`), normalise the result on
    `parent` as `reference`, and remove the engine's own image of the build with its steps: the
    normalised image replaces it, so a build leaves no untagged image behind. A build that fails
    or is interrupted leaves none either: the images of the steps it made go."""
    made: list[str] = []

    def follow(happened: BuildEvent) -> None:
        step = _STEP_IMAGE.fullmatch(happened.line.strip())
        if step and not happened.instruction.upper().startswith("FROM "):
            made.append(step[1])  # a FROM step names an image the build did not make
        event(happened)

    try:
        built = engine.build(context, follow, no_cache, target=target)
    except BaseException:
        if made:
            _remove_steps(engine, made[-1])
        raise
    try:
        return normalise_image(
            engine,
            built,
            parent=parent,
            epoch=epoch,
            reference=reference,
            note=note,
            trust_context_copies=trust_context_copies,
        )
    finally:
        engine.remove_image(built)


# How the classic builder names the image a step made: ` ---> <12 hex>`.
_STEP_IMAGE = re.compile(r"---> ([0-9a-f]{12})")
# How long a build that stopped waits for the engine to cancel the step it ran.
CANCEL_WAIT_S = 10.0


def _remove_steps(engine: Engine, last: str) -> None:
    """Remove the image of the last step a stopped build made, with the untagged steps below it.
    The engine cancels the step that was running once it sees the build's connection close;
    until its container is gone, that container holds the image, so removal is tried again."""
    deadline = time.monotonic() + CANCEL_WAIT_S
    with contextlib.suppress(ReprobuildError):
        engine.remove_image(last)
        while engine.image_id(last) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
            engine.remove_image(last)


def _named_layer_copies(steps: list[normalise.Step], own_ids: list[str]) -> list[normalise.Step]:
    """The steps, with each copy of a Python layer from the install stage named by its layer's
    (canonical) diff ID instead of the builder's hash of its source (see normalise.STAGE_COPY)."""
    layers = iter(own_ids)
    named = []
    for step in steps:
        diff_id = next(layers) if step.adds_layer else ""
        if step.adds_layer and normalise.STAGE_COPY.search(step.created_by):
            named.append(normalise.Step(normalise.layer_copy(diff_id), step.comment, True))
        else:
            named.append(step)
    return named


def confirm_loaded(engine: Engine, reference: str, config: bytes) -> str:
    """The ID of the image just loaded as `reference` with `config` (the sha256 of its config),
    once the engine names it so; kept in the cache under that name."""
    new_id = f"sha256:{hashlib.sha256(config).hexdigest()}"
    loaded = engine.inspect_image(reference)["Id"]
    if loaded != new_id:
        raise NormaliseError(
            f"the engine loaded {reference} as {loaded}, expected {new_id}: another build took "
            "the name at the same moment. Run `reprobuild build` again."
        )
    imagecache.keep_config(config)
    imagecache.keep_name(reference, new_id)
    return new_id


@dataclass(frozen=True)
class _Checked:
    """The layers to load (a file for each rewritten one and each above it, None where the engine
    holds the layer), the noise removed, and the bytes of layers read to check them."""

    layers: list[tuple[str, IO[bytes] | None, int]]
    rewritten: tuple[str, ...]
    scanned_bytes: int


def _check_layers(
    engine: Engine,
    image_id: str,
    *,
    diff_ids: list[str],
    inherited: int,
    trusted: set[str],
    canonical: set[int],
    epoch: int,
    stack: ExitStack,
    note: Note,
) -> _Checked:
    """Read the image's export, scan the build's layers, rewrite from the first noisy one (or
    the first that must be written in the canonical form)."""
    note("normalising: reading the built image")
    scans, members = _scan(engine, image_id, epoch)
    own = [(index, scans[d]) for index, d in enumerate(diff_ids) if index >= inherited]
    noisy = [index for index, scan in own if not scan.clean or index in canonical]
    _refuse_noisy_copies([scan for _, scan in own if scan.diff_id in trusted and not scan.clean])
    layers: list[tuple[str, IO[bytes] | None, int]] = [(d, None, 0) for d in diff_ids]
    if noisy:
        note(f"normalising: rewriting {len(diff_ids) - noisy[0]} layers from layer {noisy[0] + 1}")
        work = Path(tempfile.gettempdir())
        with files.writing(work, REWRITE_REMEDY, verb="write in", within=work):
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reprobuild-")))
            work_pass = _Pass(diff_ids, noisy, members, scans)
            final = _rewrite(engine, image_id, work_pass, epoch, folder)
        layers = [(r.diff_id, _open(stack, folder, i), r.size) for i, r in enumerate(final)]
    for diff_id, _, _ in layers[inherited:]:  # a rewritten layer is clean by construction
        if diff_id not in scans or scans[diff_id].clean:
            imagecache.mark_clean(diff_id, epoch)
    rewritten = tuple(problem for _, scan in own for problem in scan.noise)
    return _Checked(layers, rewritten, sum(scan.size for _, scan in own))


REWRITE_REMEDY = (
    "set TMPDIR to a folder on a filesystem with room (layers that must be rewritten are "
    "written there, as large as the layers)."
)


def _refuse_noisy_copies(scans: list[normalise.LayerScan]) -> None:
    """A layer copied from the context is never read on a rebuild, so it cannot be rewritten on a
    first build either (the two would give different images): noise in one is an error."""
    if scans:
        raise NormaliseError(
            f"a layer copied from the build context holds build-time noise ({scans[0].noise[0]}); "
            "the context is reprobuild's own and should never hold any. Remove the file from "
            "the project, or report it if it is one reprobuild wrote."
        )


# How the classic builder records a COPY from the context in the history: `<shell> #(nop) COPY
# dir:<sha256> in <destination> ` (ADD, RUN and WORKDIR read differently).
_CONTEXT_COPY = re.compile(r" #\(nop\) COPY (?:--chown=\S+ )?(?:file|dir|multi):[0-9a-f]{64} in ")


def _parent_config(engine: Engine, parent: str, note: Note) -> bytes:
    """The raw config of `parent`: from the cache, else read once from an export of it."""
    parent_id = engine.inspect_image(parent)["Id"]
    raw = imagecache.config(parent_id, note)
    if raw is None:
        note(f"normalising: reading the config of {parent} (once)")
        raw = exported_config(engine, parent_id)
        imagecache.keep_config(raw)
    return raw


def exported_config(engine: Engine, image_id: str) -> bytes:
    """The raw config of `image_id`, read from an export of it."""
    names = {f"{image_id.removeprefix('sha256:')}.json", f"blobs/{image_id.replace(':', '/')}"}
    with engine.saved_members(image_id) as archive:
        for member in archive:
            if member.isreg() and member.name in names:
                raw = tarstream.data(archive, member).read()
                if f"sha256:{hashlib.sha256(raw).hexdigest()}" == image_id:
                    return raw
    raise NormaliseError(f"the engine's export of {image_id} holds no image config. {DAMAGED}")


_KEEP_STAGES = (
    "A template override must keep `FROM {{ plan.base }} AS system` as its first stage, build "
    f"the `{plan.DEPS_STAGE}` stage from it and the last stage `FROM {plan.DEPS_STAGE}`; "
    "restore those lines, or remove the override."
)


def _own_steps(
    engine: Engine, image_id: str, parent: str, parent_document: dict[str, Any], diff_ids: list[str]
) -> list[normalise.Step]:
    """The build's steps above the parent; whether each added a layer is told by the layers of
    the image that step made (the history API does not say, and a step can add an empty one)."""
    inherited = parent_document.get("history") or []
    parent_ids = parent_document["rootfs"]["diff_ids"]
    history = engine.history(image_id)
    commands = [entry["CreatedBy"] for entry in history[: len(inherited)]]
    if diff_ids[: len(parent_ids)] != parent_ids or commands != [
        entry.get("created_by", "") for entry in inherited
    ]:
        raise NormaliseError(
            f"the built image {image_id} does not start with {parent}. {_KEEP_STAGES}"
        )
    steps, layers = [], len(parent_ids)
    for entry in history[len(inherited) :]:
        if entry["Id"] == "<missing>":
            raise NormaliseError(
                f"the engine no longer holds the images of the steps that built {image_id} "
                "(pruned during the build?). Run `reprobuild build` again."
            )
        count = len(engine.inspect_image(entry["Id"])["RootFS"]["Layers"])
        steps.append(normalise.Step(entry["CreatedBy"], entry["Comment"], count > layers))
        layers = count
    if layers != len(diff_ids):
        raise NormaliseError(f"the steps of {image_id} do not add up to its layers. {DAMAGED}")
    return steps


def _layer_sizes(engine: Engine, image_id: str, config: bytes) -> tuple[LayerRecord, ...]:
    """Each layer's diff ID and size (the bytes of its files, as `docker history` shows)."""
    document = json.loads(config)
    history = engine.history(image_id)
    sizes = [
        step["Size"]
        for step, entry in zip(history, document["history"], strict=False)
        if not entry.get("empty_layer")
    ]
    diff_ids = document["rootfs"]["diff_ids"]
    if len(history) != len(document["history"]) or len(sizes) != len(diff_ids):
        raise NormaliseError(
            f"the history of {image_id} does not name one step per layer, as reprobuild needs "
            f"to record the layers' sizes. {DAMAGED}"
        )
    return tuple(LayerRecord(d, size) for d, size in zip(diff_ids, sizes, strict=True))


def _open(stack: ExitStack, folder: Path, index: int) -> IO[bytes] | None:
    path = folder / f"{index:03d}.tar"
    return stack.enter_context(path.open("rb")) if path.exists() else None


def _is_layer(name: str) -> bool:
    return name.endswith("/layer.tar") or name.startswith("blobs/sha256/")


def _scan(
    engine: Engine, image_id: str, epoch: int
) -> tuple[dict[str, normalise.LayerScan], dict[str, str]]:
    """Read the export once: a scan of every layer, and which archive member is which."""
    scans: dict[str, normalise.LayerScan] = {}
    members: dict[str, str] = {}
    with engine.saved_members(image_id) as archive:
        for member in archive:
            if member.isreg() and _is_layer(member.name):
                scan = _scan_layer(tarstream.data(archive, member), epoch)
                if scan is not None:
                    scans[scan.diff_id] = scan
                    members[member.name] = scan.diff_id
    return scans, members


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
    engine: Engine, image_id: str, work: _Pass, epoch: int, folder: Path
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
    with engine.saved_members(image_id) as archive:
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
        raise NormaliseError(f"the engine's export of {image_id} lacks layers {missing}. {DAMAGED}")
    unchanged = [work.scans.get(d, normalise.LayerScan(d, 0)) for d in work.diff_ids[:first]]
    return unchanged + [results[index] for index in range(first, len(work.diff_ids))]
