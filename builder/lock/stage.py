"""The lock stage end to end: spec + resolution -> Lock, reporting progress through a callback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from builder import __version__
from builder.engine import sdk as engine
from builder.engine.registry import RegistryClient
from builder.knowledge import Knowledge
from builder.lock import apt, baseimage
from builder.lock.model import PYPI_SIMPLE, Lock, lock_python, now_snapshot
from builder.resolve.resolve import Resolution
from builder.spec.check import LoadedSpec, Spec

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LockOptions:
    index_url: str = PYPI_SIMPLE
    debian_mirror: str | None = None  # None: snapshot.debian.org at the snapshot time
    debian_security_mirror: str | None = None
    snapshot: str | None = None  # None: now


def resolution_record(resolution: Resolution) -> dict[str, Any]:
    """What the lock keeps of the resolution: the choice and its facts, not every candidate."""
    record = resolution.to_dict()
    record.pop("candidates")
    record.pop("notes")
    return record


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
    clients: list[Any] = []

    def client() -> Any:
        if not clients:
            clients.append(engine.connect())
        return clients[0]

    try:
        progress(
            f"python: resolving the closure of {resolution.build.label} for Python {spec.python}"
        )
        closure = lock_python(spec, resolution, project, options.index_url)
        progress(f"python: {len(closure.packages)} wheels pinned with sha256")
        progress(f"base: pinning {_describe_base(spec)}")
        with RegistryClient() as registry:
            base = baseimage.lock_base(spec, resolution.build.cuda, knowledge, registry, client)
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
        system = baseimage.lock_system(base, requested, archive, client)
        if base.python_source == "apt":
            base = baseimage.python_from_apt(base, system, spec.python)
    finally:
        for handle in clients:
            handle.close()
    notes = tuple(resolution.notes)
    if base.digest_source.startswith("knowledge base"):
        notes += (f"the base digest came from the knowledge base: {base.digest_source}",)
    return Lock(
        spec_hash=spec_digest,
        knowledge_version=knowledge.version,
        reprobuild_version=__version__,
        resolution=resolution_record(resolution),
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
