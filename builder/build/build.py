"""Context -> image: build with the engine, normalise, load back under its name, push.

The result is a `BuildRecord` whose image ID is a pure function of the lock: two clean builds
of one lock give one ID, and pushing either gives one manifest digest. The image is named only
after normalisation, so a failed or interrupted build leaves no tag behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from builder import __version__, source, tarstream
from builder.build import imagecache, normalise
from builder.build.buildrecord import BuildRecord, LayerRecord
from builder.engine import sdk as engine
from builder.errors import ReprobuildError
from builder.lock import bootstrap
from builder.lock.model import Lock
from builder.render import context, plan

Note = Callable[[str], None]


class NormaliseError(ReprobuildError):
    """The engine's export of a built image was not what the normaliser expects."""


@dataclass(frozen=True)
class Normalised:
    image_id: str
    layers: tuple[LayerRecord, ...]
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
    client: Any,
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
    parent_document: dict[str, Any] = json.loads(_parent_config(client, parent, note))
    inherited = len(parent_document["rootfs"]["diff_ids"])
    inspected = engine.inspect_image(client, image_id)
    diff_ids: list[str] = inspected["RootFS"]["Layers"]
    steps = _own_steps(client, image_id, parent, parent_document, diff_ids)
    layer_steps = [step for step in steps if step.adds_layer]
    own = list(zip(diff_ids[inherited:], layer_steps, strict=True))
    trusted = {
        d for d, step in own if trust_context_copies and _CONTEXT_COPY.search(step.created_by)
    }
    to_check = rescan or any(d not in trusted and not imagecache.is_clean(d, epoch) for d, _ in own)
    with ExitStack() as stack:
        if to_check:
            checked = _check_layers(
                client,
                image_id,
                diff_ids=diff_ids,
                inherited=inherited,
                trusted=trusted,
                epoch=epoch,
                stack=stack,
                note=note,
            )
        else:
            checked = _Checked([(diff_id, None, 0) for diff_id in diff_ids], (), 0)
        new_ids = [diff_id for diff_id, _, _ in checked.layers]
        config = normalise.config(parent_document, inspected, steps, epoch, new_ids)
        engine.load_stream(client, normalise.load_archive(config, checked.layers, reference))
    new_id = f"sha256:{hashlib.sha256(config).hexdigest()}"
    loaded = engine.inspect_image(client, reference)["Id"]
    if loaded != new_id:
        raise NormaliseError(
            f"the engine loaded {reference} as {loaded}, expected {new_id}: another build took "
            "the name at the same moment. Run `reprobuild build` again."
        )
    imagecache.keep_config(config)
    imagecache.keep_name(reference, new_id)
    layers = _layer_sizes(client, new_id, config)
    return Normalised(new_id, layers, checked.rewritten, checked.scanned_bytes)


@dataclass(frozen=True)
class _Checked:
    """The layers to load (a file for each rewritten one and each above it, None where the engine
    holds the layer), the noise removed, and the bytes of layers read to check them."""

    layers: list[tuple[str, IO[bytes] | None, int]]
    rewritten: tuple[str, ...]
    scanned_bytes: int


def _check_layers(
    client: Any,
    image_id: str,
    *,
    diff_ids: list[str],
    inherited: int,
    trusted: set[str],
    epoch: int,
    stack: ExitStack,
    note: Note,
) -> _Checked:
    """Read the image's export, scan the build's layers, rewrite from the first noisy one."""
    note("normalising: reading the built image")
    scans, members = _scan(client, image_id, epoch)
    own = [(index, scans[d]) for index, d in enumerate(diff_ids) if index >= inherited]
    noisy = [index for index, scan in own if not scan.clean]
    _refuse_noisy_copies([scan for _, scan in own if scan.diff_id in trusted and not scan.clean])
    layers: list[tuple[str, IO[bytes] | None, int]] = [(d, None, 0) for d in diff_ids]
    if noisy:
        note(f"normalising: rewriting {len(diff_ids) - noisy[0]} layers from layer {noisy[0] + 1}")
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reprobuild-")))
        final = _rewrite(client, image_id, _Pass(diff_ids, noisy, members, scans), epoch, folder)
        layers = [(r.diff_id, _open(stack, folder, i), r.size) for i, r in enumerate(final)]
    for diff_id, _, _ in layers[inherited:]:  # a rewritten layer is clean by construction
        if diff_id not in scans or scans[diff_id].clean:
            imagecache.mark_clean(diff_id, epoch)
    rewritten = tuple(problem for _, scan in own for problem in scan.noise)
    return _Checked(layers, rewritten, sum(scan.size for _, scan in own))


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


def _parent_config(client: Any, parent: str, note: Note) -> bytes:
    """The raw config of `parent`: from the cache, else read once from an export of it."""
    parent_id = engine.inspect_image(client, parent)["Id"]
    raw = imagecache.config(parent_id)
    if raw is None:
        note(f"normalising: reading the config of {parent} (once)")
        raw = exported_config(client, parent_id)
        imagecache.keep_config(raw)
    return raw


def exported_config(client: Any, image_id: str) -> bytes:
    """The raw config of `image_id`, read from an export of it."""
    names = {f"{image_id.removeprefix('sha256:')}.json", f"blobs/{image_id.replace(':', '/')}"}
    with engine.saved_members(client, image_id) as archive:
        for member in archive:
            if member.isreg() and member.name in names:
                raw = tarstream.data(archive, member).read()
                if f"sha256:{hashlib.sha256(raw).hexdigest()}" == image_id:
                    return raw
    raise NormaliseError(
        f"the engine's export of {image_id} holds no image config. {engine.DAMAGED}"
    )


_KEEP_STAGES = (
    "A template override must keep `FROM {{ plan.base }} AS system` as its first stage, build "
    f"the `{plan.DEPS_STAGE}` stage from it and the last stage `FROM {plan.DEPS_STAGE}`; "
    "restore those lines, or remove the override."
)


def _own_steps(
    client: Any, image_id: str, parent: str, parent_document: dict[str, Any], diff_ids: list[str]
) -> list[normalise.Step]:
    """The build's steps above the parent; whether each added a layer is told by the layers of
    the image that step made (the history API does not say, and a step can add an empty one)."""
    inherited = parent_document.get("history") or []
    parent_ids = parent_document["rootfs"]["diff_ids"]
    history = engine.history(client, image_id)
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
        count = len(engine.inspect_image(client, entry["Id"])["RootFS"]["Layers"])
        steps.append(normalise.Step(entry["CreatedBy"], entry["Comment"], count > layers))
        layers = count
    if layers != len(diff_ids):
        raise NormaliseError(
            f"the steps of {image_id} do not add up to its layers. {engine.DAMAGED}"
        )
    return steps


def _layer_sizes(client: Any, image_id: str, config: bytes) -> tuple[LayerRecord, ...]:
    """Each layer's diff ID and size (the bytes of its files, as `docker history` shows)."""
    document = json.loads(config)
    history = engine.history(client, image_id)
    sizes = [
        step["Size"]
        for step, entry in zip(history, document["history"], strict=False)
        if not entry.get("empty_layer")
    ]
    diff_ids = document["rootfs"]["diff_ids"]
    if len(history) != len(document["history"]) or len(sizes) != len(diff_ids):
        raise NormaliseError(
            f"the history of {image_id} does not name one step per layer, as reprobuild needs "
            f"to record the layers' sizes. {engine.DAMAGED}"
        )
    return tuple(LayerRecord(d, size) for d, size in zip(diff_ids, sizes, strict=True))


def _open(stack: ExitStack, folder: Path, index: int) -> IO[bytes] | None:
    path = folder / f"{index:03d}.tar"
    return stack.enter_context(path.open("rb")) if path.exists() else None


def _is_layer(name: str) -> bool:
    return name.endswith("/layer.tar") or name.startswith("blobs/sha256/")


def _scan(
    client: Any, image_id: str, epoch: int
) -> tuple[dict[str, normalise.LayerScan], dict[str, str]]:
    """Read the export once: a scan of every layer, and which archive member is which."""
    scans: dict[str, normalise.LayerScan] = {}
    members: dict[str, str] = {}
    with engine.saved_members(client, image_id) as archive:
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
    unchanged = [work.scans.get(d, normalise.LayerScan(d, 0)) for d in work.diff_ids[:first]]
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
    from builder.render import templates as render
    from builder.render import wheelhouse

    lock, project, lock_digest = current.lock, current.project, current.digest
    build_plan = plan.plan(lock, lock_digest)
    progress.note(f"wheels: verifying {len(lock.python.packages)} against the lock")
    wheelhouse.fetch(lock, project, wheel_cache, progress.download)
    texts = context.files(build_plan, render.render(build_plan, lock_digest, project))
    context_dir = context.write(
        project / context.DEFAULT_OUTPUT, texts, project, build_plan, wheelhouse=wheel_cache
    )
    ensure_base(client, lock, build_plan, progress.note)
    reference = image_reference(lock, lock_digest)
    stages = split_stages(texts["Dockerfile"])
    deps: str | None = None
    if stages is None:
        progress.note(
            f"building in one pass (the Dockerfile's last stage is not `FROM {plan.DEPS_STAGE}`)"
        )
        normalised = _build_on_base(
            client, context_dir, build_plan, reference, no_cache=no_cache, progress=progress
        )
    else:
        deps, normalised = _build_on_dependencies(
            client, context_dir, build_plan, reference, stages, no_cache=no_cache, progress=progress
        )
    commit, dirty = source.git_state(project)
    base_layers = len(engine.inspect_image(client, build_plan.base)["RootFS"]["Layers"])
    record = BuildRecord(
        image=reference,
        image_id=normalised.image_id,
        layers=normalised.layers,
        base_layers=base_layers,
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
        dependencies=deps,
    )
    if push is not None:
        record = push_and_point(client, record, push, current, progress.note, build_plan=build_plan)
    return record


@dataclass(frozen=True)
class Stages:
    """A rendered Dockerfile cut before its final stage, `FROM deps`."""

    dependencies: str  # every stage up to and including `deps`
    app: str  # the final stage's instructions after its FROM line
    trust_copies: bool  # no RUN or ADD in the final stage: its COPY steps are from the context

    @property
    def key(self) -> str:
        """Names the dependencies image: a pure function of the text that builds it (which
        names the lock digest and reprobuild's version)."""
        return hashlib.sha256(self.dependencies.encode()).hexdigest()[:16]


_FINAL_FROM = re.compile(rf"^FROM[ \t]+{plan.DEPS_STAGE}[ \t]*$", re.IGNORECASE | re.MULTILINE)
_ANY_FROM = re.compile(r"^FROM[ \t]", re.IGNORECASE | re.MULTILINE)
# What only a one-pass build keeps: parser directives and ARGs before the first FROM (the final
# stage is built on its own), and COPY --from a stage (stage names mean nothing there).
_HEADER_ONLY = re.compile(r"^(?:#[ \t]*(?:syntax|escape)[ \t]*=|ARG[ \t])", re.I | re.M)
_COPY_FROM = re.compile(r"^[ \t]*COPY[ \t][^\n]*--from", re.IGNORECASE | re.MULTILINE)
_RUN_OR_ADD = re.compile(r"^[ \t]*(?:RUN|ADD)[ \t]", re.IGNORECASE | re.MULTILINE)


def split_stages(dockerfile: str) -> Stages | None:
    """The dependencies and the final stage; None when the Dockerfile must be built in one pass
    (a template override whose last stage is not `FROM deps`, that copies from another stage,
    or that sets parser directives or ARGs before the first FROM)."""
    finals = list(_FINAL_FROM.finditer(dockerfile))
    if not finals or _ANY_FROM.search(dockerfile, finals[-1].end()):
        return None
    first_from = _ANY_FROM.search(dockerfile)
    header = dockerfile[: first_from.start() if first_from else 0]
    app = dockerfile[finals[-1].end() :].lstrip("\n")
    instructions = app.replace("\\\n", " ")
    if _HEADER_ONLY.search(header) or _COPY_FROM.search(instructions):
        return None
    trust = _RUN_OR_ADD.search(instructions) is None
    return Stages(dockerfile[: finals[-1].start()], app, trust)


def _build_on_dependencies(
    client: Any,
    context_dir: Path,
    build_plan: plan.BuildPlan,
    reference: str,
    stages: Stages,
    *,
    no_cache: bool,
    progress: Progress,
) -> tuple[str, Normalised]:
    """The deps image (made when missing), then the final stage on it from a context without the
    wheels. Returns the deps image's name and the image, with what both normalisations did."""
    deps, made = _dependencies(
        client, context_dir, build_plan, stages, no_cache=no_cache, progress=progress
    )
    progress.note("building the image on its dependencies")
    app = f"FROM {deps}\n{stages.app}".encode()
    stream = tarstream.folder_stream(
        context_dir, leave_out=frozenset({plan.WHEELS}), replace={"Dockerfile": app}
    )
    built = engine.build(client, _counted(stream, progress.sent), progress.event, no_cache)
    image = normalise_image(
        client,
        built,
        parent=deps,
        epoch=build_plan.epoch,
        reference=reference,
        note=progress.note,
        trust_context_copies=stages.trust_copies,
    )
    if made is None:
        return deps, image
    return deps, replace(
        image,
        rewritten=made.rewritten + image.rewritten,
        scanned_bytes=made.scanned_bytes + image.scanned_bytes,
    )


def _dependencies(
    client: Any,
    context_dir: Path,
    build_plan: plan.BuildPlan,
    stages: Stages,
    *,
    no_cache: bool,
    progress: Progress,
) -> tuple[str, Normalised | None]:
    """The dependencies image (the `deps` stage, normalised): built when missing, when its name
    no longer names the image reprobuild loaded under it, or with `no_cache`; else the one an
    earlier build of this lock left (returned without a `Normalised`)."""
    reference = f"{build_plan.name}:{plan.DEPS_STAGE}-{stages.key}"
    known = imagecache.named(reference)
    if not no_cache and known is not None and engine.image_id(client, reference) == known:
        progress.note(f"dependencies: {reference}, built before")
        return reference, None
    progress.note(f"building the dependencies (stage {plan.DEPS_STAGE})")
    normalised = _build_on_base(
        client,
        context_dir,
        build_plan,
        reference,
        no_cache=no_cache,
        progress=progress,
        target=plan.DEPS_STAGE,
    )
    return reference, normalised


def _build_on_base(
    client: Any,
    context_dir: Path,
    build_plan: plan.BuildPlan,
    reference: str,
    *,
    no_cache: bool,
    progress: Progress,
    target: str | None = None,
) -> Normalised:
    """Build the whole context (up to the stage `target`) and normalise it on the base."""
    stream = _counted(tarstream.folder_stream(context_dir), progress.sent)
    built = engine.build(client, stream, progress.event, no_cache, target=target)
    return normalise_image(
        client,
        built,
        parent=build_plan.base,
        epoch=build_plan.epoch,
        reference=reference,
        note=progress.note,
    )


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
    from builder.render import templates as render

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
