"""The lock stage end to end: spec + resolution -> Lock -> reprobuild.lock, written atomically.
Progress and notes go to callbacks; nothing here prints.
"""

from __future__ import annotations

import platform as host
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from builder import __version__
from builder.engine.registry import RegistryClient
from builder.engine.sdk import Engine
from builder.errors import PlatformNotLockable
from builder.knowledge import AMD64, ARM64, Knowledge, machine_platform
from builder.lock import apt, baseimage, lockfile
from builder.lock.lockfile import CurrentLock, LockState
from builder.lock.model import Lock, now_snapshot
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
    snapshot: str | None = None  # None: now


def write_new_lock(
    loaded: LoadedSpec,
    state: LockState,
    knowledge: Knowledge,
    options: LockOptions,
    progress: Progress,
) -> CurrentLock:
    """Resolve, lock and write the lock file atomically; the current lock written. A platform
    that cannot be locked yet is refused first, the spec's and this host's with target.host."""
    refuse_unlockable_platforms(loaded)
    found = target.of_spec(loaded.spec.target)
    refuse_arm_host(loaded, found, knowledge, host.machine())
    resolution = resolve(loaded.spec, found, knowledge, AMD64)
    lock = make_lock(
        loaded,
        spec_digest=state.spec_digest,
        resolution=resolution,
        knowledge=knowledge,
        options=options,
        progress=progress,
    )
    text = lockfile.dumps(lock)
    lockfile.write(state.path, text)
    return lockfile.current(replace(state, lock=lock, text=text))


def refuse_unlockable_platforms(loaded: LoadedSpec) -> None:
    """Raise PlatformNotLockable unless the spec's image is for linux/amd64 alone."""
    platforms = loaded.spec.platforms
    if platforms == (AMD64,):
        return
    written = ", ".join(f'"{platform}"' for platform in platforms)
    why = (
        f"platforms = [{written}]"
        if "platforms" in loaded.table
        else f"a target GPU implies platforms = [{written}]"
    )
    raise PlatformNotLockable(
        f"{loaded.path.name} asks for an image for {', '.join(platforms)} ({why}), and "
        "locking and building for linux/arm64 is not available yet: reprobuild locks, builds "
        "and publishes linux/amd64 images only. `reprobuild resolve` shows the torch build "
        'chosen for linux/arm64; to lock a linux/amd64 image, set platforms = ["linux/amd64"] '
        "and name target GPUs that an x86_64 machine holds."
    )


def refuse_arm_host(loaded: LoadedSpec, found: Target, knowledge: Knowledge, machine: str) -> None:
    """Raise PlatformNotLockable when the target is this host's and it runs linux/arm64 (an
    Arm CPU, or a Grace superchip's GPU): the linux/amd64 image a lock makes would not run here."""
    if found.origin != "host":
        return
    grace = [
        f"{gpu.label} is a {model.superchip} superchip"
        for gpu in found.gpus
        if (model := gpu_model(gpu, found, knowledge)) is not None and model.platform == ARM64
    ]
    arm = machine_platform(machine) == ARM64
    if not grace and not arm:
        return
    why = "; ".join([*([f"its CPU is {machine}"] if arm else []), *grace])
    raise PlatformNotLockable(
        f"{loaded.path.name} sets target.host = true and this machine runs {ARM64} images "
        f"({why}), and locking and building for {ARM64} is not available yet: an image locked "
        f"here would be {AMD64}, which this machine cannot run. `reprobuild resolve` shows the "
        f"torch build chosen for {ARM64}; to lock a {AMD64} image, replace target.host with "
        "target.driver and target.gpus that an x86_64 machine holds."
    )


def current_lock(project: Path, knowledge: Callable[[], Knowledge]) -> CurrentLock:
    """The project's current lock, for the verbs that render or build from it: refused when
    missing, stale or edited by hand, and when the spec's platform cannot be locked (a lock
    made before, or with another knowledge base, stays current by the spec's hash)."""
    spec_path, table, notes = locate(project)
    refuse_unlockable_platforms(loaded(spec_path, table, notes, knowledge()))
    return lockfile.current(lockfile.inspect_at(spec_path, table))


def current_or_new_lock(
    project: Path,
    knowledge: Callable[[], Knowledge],
    options: LockOptions,
    *,
    note: Progress,
    progress: Progress,
) -> CurrentLock:
    """The project's current lock; a missing or stale one is (re)made first. A hand-edited one
    is refused, and so is a spec whose platform cannot be locked."""
    spec_path, table, notes = locate(project)  # read once: its hash and its checks
    loaded_knowledge = knowledge()  # even for a current lock: a GPU may imply linux/arm64
    spec = loaded(spec_path, table, notes, loaded_knowledge)
    refuse_unlockable_platforms(spec)
    state = lockfile.inspect_at(spec_path, table)
    if state.reason is None:
        return lockfile.current(state)
    note(f"{state.path.name} is {state.reason}: locking first")
    for text in spec.notes:
        note(text)
    return write_new_lock(spec, state, loaded_knowledge, options, progress)


def make_lock(
    loaded: LoadedSpec,
    *,
    spec_digest: str,
    resolution: Resolution,
    knowledge: Knowledge,
    options: LockOptions,
    progress: Progress,
) -> Lock:
    spec = loaded.spec
    project = loaded.path.parent
    engines: list[Engine] = []

    def engine() -> Engine:  # connected only when the base must be probed in the engine
        if not engines:
            engines.append(Engine.connect())
        return engines[0]

    try:
        progress(
            f"python: resolving the closure of {resolution.build.label} for Python {spec.python}"
        )
        closure = lock_python(spec, resolution, project, options.index_url)
        progress(f"python: {len(closure.packages)} wheels pinned with sha256")
        progress(f"base: pinning {_describe_base(spec)}")
        with RegistryClient() as registry:
            base = baseimage.lock_base(spec, resolution.build.cuda, knowledge, registry, engine)
        python = base.python or f"from apt ({' '.join(apt.python_packages(spec.python))})"
        progress(f"base: {base.image or base.mirror} (Python {python}, {base.suite})")
        archive = apt.AptArchive.at(
            options.snapshot or base.snapshot or now_snapshot(),
            base.suite,
            options.debian_mirror if base.kind == "registry" else base.mirror,
            options.debian_security_mirror,
        )
        requested = spec.system_packages
        if base.python_source == "apt":
            requested = tuple(sorted({*requested, *apt.python_packages(spec.python)}))
        if requested:
            progress(f"system: resolving {', '.join(requested)} with apt at {archive.mirror}")
        system = baseimage.lock_system(base, requested, archive, engine)
        if base.python_source == "apt":
            base = baseimage.python_from_apt(base, system, spec.python)
    finally:
        for connected in engines:
            connected.close()
    notes = tuple(resolution.notes)
    if base.digest_source.startswith("knowledge base"):
        notes += (f"the base digest came from the knowledge base: {base.digest_source}",)
    return Lock(
        spec_hash=spec_digest,
        knowledge_version=knowledge.version,
        reprobuild_version=__version__,
        resolution=resolution.record(),
        determinism={
            "seed": spec.determinism.seed,
            "tf32": spec.determinism.tf32,
            "cublas_workspace_config": spec.determinism.cublas_workspace_config,
        },
        base=base,
        system=system,
        python=closure,
        notes=notes,
    )


def _describe_base(spec: Spec) -> str:
    base = spec.base
    if base is None:
        return "the default base"
    return base if isinstance(base, str) else f"{base.suite} bootstrapped at {base.snapshot}"
