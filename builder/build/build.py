"""Context -> image: build with the engine, normalise, load back under its name, push.

The result is a `BuildRecord` whose image ID is a pure function of the lock: two clean builds
of one lock give one ID, and pushing either gives one manifest digest. The image is named only
after normalisation, so a failed or interrupted build leaves no tag behind.
"""

from __future__ import annotations

import contextlib
import platform as host
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from builder import __version__, codeset, source, tarstream
from builder.build import imagecache, pushindex, pylayer
from builder.build.base import ensure_base
from builder.build.buildrecord import BuildRecord, PlatformImage
from builder.build.deps import assemble
from builder.build.gc import final_reference
from builder.build.image import Normalised, build_normalised
from builder.engine.emulation import refuse_without_emulation
from builder.engine.sdk import BuildEvent, Engine
from builder.errors import ReprobuildError
from builder.knowledge import architecture, machine_platform
from builder.lock.lockfile import CurrentLock
from builder.lock.model import Lock, LockedPackage
from builder.reference import ImageReference
from builder.render import context, plan, templates, wheelhouse
from builder.render.templates import DockerfileStages

Note = Callable[[str], None]


def image_reference(lock: Lock, lock_digest: str) -> str:
    """The local name: the spec's image name, tagged by the lock it was built from (and by the
    architecture of an image for another platform than linux/amd64)."""
    return final_reference(str(lock.resolution["name"]), lock_digest, lock.platform)


@dataclass(frozen=True)
class Progress:
    """Where a build reports: free-text notes, engine build events, wheel downloads."""

    note: Note
    event: Callable[[BuildEvent], None]
    download: Callable[[str, int, int], None]
    sent: Callable[[int], None]


def _counted(chunks: Iterator[bytes], sent: Callable[[int], None]) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        sent(total)
        yield chunk


def build_platforms(
    engine: Engine,
    current: CurrentLock,
    platforms: Sequence[str],
    *,
    no_cache: bool,
    push: str | None,
    progress: Progress,
    wheel_cache: Path | None = None,
) -> BuildRecord:
    """The image of each platform of the lock (`platforms`, in the lock's order); with `push`,
    one image is pushed at `push`, and several are pushed once all are built, each at its own
    tag (`push`'s with the architecture: `:v1-arm64`), and then the OCI image index of them at
    `push`, which a failure before that leaves as it was. The record is of the image this
    machine runs natively when it was built, else of the first, and lists the others. That
    image is built last, so the context left behind is its own."""
    ordered = sorted(platforms, key=lambda platform: platform == main_platform(platforms))
    for platform in ordered:  # before any is built: a refusal leaves nothing half done
        refuse_without_emulation(engine, platform, f"building the {platform} image")
    records = []
    for platform in ordered:
        if len(ordered) > 1:
            progress.note(f"{platform}: building the image")
        records.append(
            build_lock(
                engine,
                current,
                platform=platform,
                no_cache=no_cache,
                push=push if len(ordered) == 1 else None,
                progress=progress,
                wheel_cache=wheel_cache,
            )
        )
    *others, main = records
    if push is not None and others:
        return _push_platforms(engine, current, main, others, push=push, note=progress.note)
    return replace(main, other_platforms=tuple(_platform_image(other) for other in others))


def _push_platforms(
    engine: Engine,
    current: CurrentLock,
    main: BuildRecord,
    others: list[BuildRecord],
    *,
    push: str,
    note: Note,
) -> BuildRecord:
    """Each image at its platform's tag, then the index of them all at `push`."""
    pushed = [
        push_image(engine, other, platform_tag(push, other.platform), note) for other in others
    ]
    main = push_and_point(engine, main, platform_tag(push, main.platform), current, note)
    in_order = sorted([main, *pushed], key=lambda each: current.lock.platforms.index(each.platform))
    index = pushindex.push_index(push, [pushindex.Pushed.of(each) for each in in_order])
    note(f"pushed the image index of {', '.join(each.platform for each in in_order)}: {index}")
    return replace(
        main,
        other_platforms=tuple(_platform_image(other) for other in pushed),
        pushed_index=index,
        pushed_tag=tagged(push),  # the tag users pull, which names the index of them all
    )


def tagged(reference: str) -> str:
    """`reference` with its tag written out: registry/name:latest for registry/name."""
    parsed = ImageReference.parse(reference)
    return f"{parsed.written_name}:{parsed.tag or 'latest'}"


def platform_tag(reference: str, platform: str) -> str:
    """`reference` with its tag suffixed by the platform's architecture: registry/name:v1-arm64."""
    return f"{tagged(reference)}-{architecture(platform)}"


def main_platform(platforms: Sequence[str]) -> str:
    """The platform this machine runs natively when it is among `platforms`, else the first."""
    here = machine_platform(host.machine())
    return here if here is not None and here in platforms else platforms[0]


def _platform_image(record: BuildRecord) -> PlatformImage:
    return PlatformImage(
        record.platform,
        record.image,
        record.image_id,
        record.manifest_digest,
        record.pushed,
        record.dependencies,
    )


def build_lock(
    engine: Engine,
    current: CurrentLock,
    *,
    no_cache: bool,
    push: str | None,
    progress: Progress,
    platform: str | None = None,  # default: the lock's first
    wheel_cache: Path | None = None,  # default: this user's cache, shared by every project
) -> BuildRecord:
    """Plan, render, fetch, build, normalise, (push): the record of an image built from one lock
    for one of its platforms. The context's Apptainer definition bootstraps from the pushed
    image after a push (written once the push has given its digest), else from the base."""
    lock = current.lock.on(platform or current.lock.platform)
    project, lock_digest = current.project, current.digest
    refuse_without_emulation(engine, lock.platform, f"building the {lock.platform} image")
    build_plan = plan.plan(lock, lock_digest)
    progress.note(f"wheels: verifying {len(lock.python.packages)} against the lock")
    wheel_cache = wheel_cache or wheelhouse.default_cache()
    wheelhouse.fetch(lock, project, wheel_cache, progress.download, note=progress.note)

    def refetch(package: LockedPackage) -> None:
        wheelhouse.fetch_again(
            lock, package, project, wheel_cache, progress=progress.download, note=progress.note
        )

    dockerfile = templates.render_dockerfile(build_plan, lock_digest, project)
    rendered = {"Dockerfile": dockerfile.text}
    if push is None:
        rendered[templates.DEFINITION] = templates.render_definition(
            build_plan, lock_digest, project, None
        )
    context_dir, code = context.write(
        project / context.DEFAULT_OUTPUT,
        context.files(build_plan, rendered),
        project,
        build_plan,
        wheelhouse=wheel_cache,
    )
    for line in codeset.describe(code):
        progress.note(line)
    ensure_base(engine, lock, build_plan, progress.note)
    reference = image_reference(lock, lock_digest)
    stages = dockerfile.stages
    deps: str | None = None
    if stages is None:
        progress.note(
            "building in one pass (the template override does not keep the "
            f"`{templates.DOCKERFILE_BLOCKS[0]}` and `{templates.DOCKERFILE_BLOCKS[1]}` blocks "
            f"around `FROM {plan.DEPS_STAGE}`)"
        )
        normalised = _build_on_base(
            engine, context_dir, build_plan, reference, no_cache=no_cache, progress=progress
        )
    else:
        deps, normalised = _build_on_dependencies(
            engine,
            context_dir,
            build_plan,
            reference,
            stages,
            no_cache=no_cache,
            progress=progress,
            wheels=pylayer.Wheels(wheel_cache, refetch),
        )
    commit, dirty = source.git_state(project, rules=code.rules)
    base_layers = len(engine.inspect_image(build_plan.base)["RootFS"]["Layers"])
    record = BuildRecord(
        image=reference,
        image_id=normalised.image_id,
        layers=normalised.layers,
        base_layers=base_layers,
        lock=lock_digest,
        knowledge_version=lock.knowledge_version,
        reprobuild_version=__version__,
        engine_version=engine.version(),
        base=build_plan.base,
        git_commit=commit,
        git_dirty=dirty,
        normalisation={
            "rewritten": list(normalised.rewritten),
            "scanned_bytes": normalised.scanned_bytes,
        },
        dependencies=deps,
        platform=lock.platform,
    )
    if push is not None:
        record = push_and_point(engine, record, push, current, progress.note, build_plan=build_plan)
    return record


def _build_on_dependencies(
    engine: Engine,
    context_dir: Path,
    build_plan: plan.BuildPlan,
    reference: str,
    stages: DockerfileStages,
    *,
    no_cache: bool,
    progress: Progress,
    wheels: pylayer.Wheels,
) -> tuple[str, Normalised]:
    """The deps image (made when missing), then the final stage on it from a context without the
    wheels. Returns the deps image's name and the image, with what both normalisations did."""
    deps, made = _dependencies(
        engine,
        context_dir,
        build_plan,
        stages,
        no_cache=no_cache,
        progress=progress,
        wheels=wheels,
    )
    progress.note("building the image on its dependencies")
    app = f"FROM {deps}\n{stages.image}".encode()
    stream = tarstream.folder_stream(
        context_dir, leave_out=frozenset({plan.WHEELS}), replace={"Dockerfile": app}
    )
    image = build_normalised(
        engine,
        _counted(stream, progress.sent),
        event=progress.event,
        no_cache=no_cache,
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
    engine: Engine,
    context_dir: Path,
    build_plan: plan.BuildPlan,
    stages: DockerfileStages,
    *,
    no_cache: bool,
    progress: Progress,
    wheels: pylayer.Wheels,
) -> tuple[str, Normalised | None]:
    """The dependencies image (the `deps` stage, normalised): built when missing, when its name
    no longer names the image reprobuild loaded under it, or with `no_cache`; else the one an
    earlier build of this lock left (returned without a `Normalised`). The packaged template's
    is assembled (build/deps.py); an override's is built as its Dockerfile says."""
    reference = f"{build_plan.name}:{plan.DEPS_STAGE}-{stages.key}"
    known = imagecache.named(reference, progress.note)
    if not no_cache and known is not None and engine.image_id(reference) == known:
        progress.note(f"dependencies: {reference}, built before")
        return reference, None
    progress.note(f"building the dependencies (stage {plan.DEPS_STAGE})")
    if stages.system is not None:
        return reference, assemble(
            engine,
            build_plan,
            stages,
            reference,
            wheels=wheels,
            no_cache=no_cache,
            note=progress.note,
            event=progress.event,
        )
    normalised = _build_on_base(
        engine,
        context_dir,
        build_plan,
        reference,
        no_cache=no_cache,
        progress=progress,
        target=plan.DEPS_STAGE,
    )
    return reference, normalised


def _build_on_base(
    engine: Engine,
    context_dir: Path,
    build_plan: plan.BuildPlan,
    reference: str,
    *,
    no_cache: bool,
    progress: Progress,
    target: str | None = None,
) -> Normalised:
    """Build the whole context (up to the stage `target`) and normalise it on the base (the
    other stages of a template override stay, as the engine's cache)."""
    return build_normalised(
        engine,
        _counted(tarstream.folder_stream(context_dir), progress.sent),
        event=progress.event,
        no_cache=no_cache,
        parent=build_plan.base,
        epoch=build_plan.epoch,
        reference=reference,
        note=progress.note,
        target=target,
    )


def push_and_point(
    engine: Engine,
    record: BuildRecord,
    reference: str,
    current: CurrentLock,
    note: Note,
    *,
    build_plan: plan.BuildPlan | None = None,  # the lock's plan, when the caller has it
) -> BuildRecord:
    """Push, then point the context's Apptainer definition at the pushed digest."""
    record = push_image(engine, record, reference, note)
    context_dir = current.project / context.DEFAULT_OUTPUT
    if context_dir.is_dir():
        build_plan = build_plan or plan.plan(current.lock.on(record.platform), current.digest)
        templates.write_definition(
            context_dir, build_plan, current.digest, current.project, record.pushed
        )
    return record


def push_image(engine: Engine, record: BuildRecord, reference: str, note: Note) -> BuildRecord:
    """Tag the built image as `reference` and push it; the record gains the manifest digest. A
    push that fails or is interrupted leaves the local name as it was."""
    before = engine.image_id(reference)
    tagged = engine.tag(record.image_id, reference)
    note(f"pushing {tagged}")
    try:
        digest = engine.push(tagged)
    except BaseException:
        _put_back(engine, tagged, before, record.image_id)
        raise
    repository = ImageReference.parse(tagged).written_name
    return replace(
        record, manifest_digest=digest, pushed=f"{repository}@{digest}", pushed_tag=tagged
    )


def _put_back(engine: Engine, tagged: str, before: str | None, image_id: str) -> None:
    """Name `before` as `tagged` again, or no image when it named none (the image keeps its
    other names: a name is removed only where the image has another)."""
    if before == image_id:
        return
    with contextlib.suppress(ReprobuildError):
        if before is not None:
            engine.tag(before, tagged)
        elif len(engine.inspect_image(image_id).get("RepoTags") or []) > 1:
            engine.untag(tagged)
