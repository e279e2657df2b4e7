"""The lock stage end to end: spec + resolution per platform -> Lock -> reprobuild.lock, written
atomically. Progress and notes go to callbacks; nothing here prints.
"""

from __future__ import annotations

import platform as host
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from builder import __version__
from builder.engine.emulation import refuse_without_emulation
from builder.engine.registry import RegistryClient
from builder.engine.sdk import Engine
from builder.errors import LockFileError, PlatformNotLockable
from builder.knowledge import ARM64, Knowledge, machine_platform
from builder.lock import apt, baseimage, lockfile
from builder.lock.lockfile import CurrentLock, LockState
from builder.lock.model import Lock, PlatformLock, now_snapshot
from builder.lock.python import PYPI_SIMPLE, lock_python
from builder.resolve import target
from builder.resolve.resolve import Resolution, gpu_model, resolve
from builder.resolve.target import Target
from builder.spec.check import loaded
from builder.spec.file import locate
from builder.spec.model import LoadedSpec, Spec

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LockOptions:
    index_url: str = PYPI_SIMPLE
    debian_mirror: str | None = None  # None: snapshot.debian.org at the snapshot time
    debian_security_mirror: str | None = None
    snapshot: str | None = None  # None: the bootstrapped base's, else now
    now: str | None = None  # the time "now" is, once for every platform of a lock


def write_new_lock(
    loaded: LoadedSpec,
    state: LockState,
    knowledge: Knowledge,
    options: LockOptions,
    progress: Progress,
) -> CurrentLock:
    """Resolve, lock and write the lock file atomically, every platform of the spec; the
    current lock written. A target.host on a machine whose platform the spec leaves out is
    refused first."""
    found = target.of_spec(loaded.spec.target)
    refuse_foreign_host(loaded, found, knowledge, host.machine())
    resolutions = [resolve(loaded.spec, found, knowledge, p) for p in loaded.spec.platforms]
    lock = make_lock(
        loaded,
        spec_digest=state.spec_digest,
        resolutions=resolutions,
        knowledge=knowledge,
        options=options,
        progress=progress,
    )
    text = lockfile.dumps(lock)
    lockfile.write(state.path, text)
    return lockfile.current(replace(state, lock=lock, text=text))


def refuse_foreign_host(
    loaded: LoadedSpec, found: Target, knowledge: Knowledge, machine: str
) -> None:
    """Raise PlatformNotLockable when the target is this host's and its images run on a
    platform the spec builds none for (an Arm CPU, or a Grace superchip's GPU, with
    platforms = ["linux/amd64"]): the image a lock makes would not run here."""
    if found.origin != "host":
        return
    grace = [
        f"{gpu.label} is a {model.superchip} superchip"
        for gpu in found.gpus
        if (model := gpu_model(gpu, found, knowledge)) is not None and model.platform == ARM64
    ]
    here = ARM64 if grace else machine_platform(machine)
    if here is None or here in loaded.spec.platforms:
        return
    why = "; ".join([*([f"its CPU is {machine}"] if not grace else []), *grace])
    written = ", ".join(f'"{platform}"' for platform in loaded.spec.platforms)
    raise PlatformNotLockable(
        f"{loaded.path.name} sets target.host = true and this machine runs {here} images "
        f"({why}), but the spec builds for {', '.join(loaded.spec.platforms)} only: an image "
        f'locked here would not run on it. Add "{here}" to platforms (platforms = [{written}, '
        f'"{here}"]), or replace target.host with target.driver and target.gpus of the '
        "machines that will run the image."
    )


def current_lock(project: Path, knowledge: Callable[[], Knowledge]) -> CurrentLock:
    """The project's current lock, for the verbs that render or build from it: refused when
    missing, stale, edited by hand, or made for other platforms than the spec builds for."""
    spec_path, table, notes = locate(project)
    current = lockfile.current(lockfile.inspect_at(spec_path, table))
    mismatch = platforms_differ(loaded(spec_path, table, notes, knowledge()), current.lock)
    if mismatch is not None:
        raise other_platforms(current.path, mismatch)
    return current


def other_platforms(path: Path, mismatch: str) -> LockFileError:
    return LockFileError(f"{path} was {mismatch}: run `reprobuild lock` to lock every platform.")


def platforms_differ(spec: LoadedSpec, lock: Lock) -> str | None:
    """Why a lock that is current by the spec's hash still does not fit the spec: it pins other
    platforms than the spec builds for (a GPU that a newer knowledge base knows as a Grace
    superchip implies linux/arm64); None when they are the same."""
    if lock.platforms == spec.spec.platforms:
        return None
    return (
        f"made for {', '.join(lock.platforms)}, and the spec builds for "
        f"{', '.join(spec.spec.platforms)}"
    )


def current_or_new_lock(
    project: Path,
    knowledge: Callable[[], Knowledge],
    options: LockOptions,
    *,
    note: Progress,
    progress: Progress,
) -> CurrentLock:
    """The project's current lock; a missing or stale one is (re)made first, and so is one made
    for other platforms than the spec builds for. A hand-edited one is refused."""
    spec_path, table, notes = locate(project)  # read once: its hash and its checks
    loaded_knowledge = knowledge()  # even for a current lock: a GPU may imply linux/arm64
    spec = loaded(spec_path, table, notes, loaded_knowledge)
    state = lockfile.inspect_at(spec_path, table)
    reason = state.reason or (state.lock and platforms_differ(spec, state.lock))
    if not reason:
        return lockfile.current(state)
    note(f"{state.path.name} is {reason}: locking first")
    for text in spec.notes:
        note(text)
    return write_new_lock(spec, state, loaded_knowledge, options, progress)


def make_lock(
    loaded: LoadedSpec,
    *,
    spec_digest: str,
    resolutions: Sequence[Resolution],
    knowledge: Knowledge,
    options: LockOptions,
    progress: Progress,
) -> Lock:
    """The lock of every platform resolved (the first at the top level, the others after)."""
    spec = loaded.spec
    several = len(resolutions) > 1
    # One archive time for every platform: their system packages come from one archive state.
    options = replace(options, now=options.now or now_snapshot())
    locked = [
        lock_platform(
            loaded,
            resolution,
            knowledge,
            options,
            _headed(progress, f"{resolution.platform}: " if several else ""),
        )
        for resolution in resolutions
    ]
    first, *others = locked
    notes = tuple(dict.fromkeys(note for each in locked for note in each[1]))
    return Lock(
        spec_hash=spec_digest,
        knowledge_version=knowledge.version,
        reprobuild_version=__version__,
        resolution=first[0].resolution,
        determinism={
            "seed": spec.determinism.seed,
            "tf32": spec.determinism.tf32,
            "cublas_workspace_config": spec.determinism.cublas_workspace_config,
        },
        base=first[0].base,
        system=first[0].system,
        python=first[0].python,
        notes=notes,
        other_platforms=tuple(records for records, _ in others),
    )


def lock_platform(
    loaded: LoadedSpec,
    resolution: Resolution,
    knowledge: Knowledge,
    options: LockOptions,
    progress: Progress,
) -> tuple[PlatformLock, tuple[str, ...]]:
    """One platform's wheels, base and system packages, and the notes they gave."""
    spec = loaded.spec
    project = loaded.path.parent
    platform = resolution.platform
    engines: list[Engine] = []

    def engine() -> Engine:  # connected only when the base must be probed in the engine
        if not engines:
            engines.append(Engine.connect())
            refuse_without_emulation(engines[0], platform, f"locking the {platform} base")
        return engines[0]

    try:
        progress(
            f"python: resolving the closure of {resolution.build.label} for Python {spec.python}"
        )
        closure = lock_python(spec, resolution, project, options.index_url)
        progress(f"python: {len(closure.packages)} wheels pinned with sha256")
        progress(f"base: pinning {_describe_base(spec)}")
        cuda = resolution.build.cuda
        with RegistryClient() as registry:
            base = baseimage.lock_base(spec, cuda, knowledge, registry, engine, platform=platform)
        python = base.python or f"from apt ({' '.join(apt.python_packages(spec.python))})"
        progress(f"base: {base.image or base.mirror} (Python {python}, {base.suite})")
        archive = apt.AptArchive.at(
            options.snapshot or base.snapshot or options.now or now_snapshot(),
            base.suite,
            options.debian_mirror if base.kind == "registry" else base.mirror,
            options.debian_security_mirror,
        )
        requested = spec.system_packages
        if base.python_source == "apt":
            requested = tuple(sorted({*requested, *apt.python_packages(spec.python)}))
        if requested:
            progress(f"system: resolving {', '.join(requested)} with apt at {archive.mirror}")
        system = baseimage.lock_system(base, requested, archive, engine, platform=platform)
        if base.python_source == "apt":
            base = baseimage.python_from_apt(base, system, spec.python)
    finally:
        for connected in engines:
            connected.close()
    notes = tuple(resolution.notes)
    if base.digest_source.startswith("knowledge base"):
        notes += (f"the base digest came from the knowledge base: {base.digest_source}",)
    return PlatformLock(resolution.record(), base, system, closure), notes


def _headed(progress: Progress, heading: str) -> Progress:
    return lambda text: progress(heading + text)


def _describe_base(spec: Spec) -> str:
    base = spec.base
    if base is None:
        return "the default base"
    return base if isinstance(base, str) else f"{base.suite} bootstrapped at {base.snapshot}"
