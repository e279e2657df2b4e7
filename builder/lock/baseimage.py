"""Lock the base image and the system packages on top of it.

A registry base is pinned to its manifest digest for the image's platform (linux/amd64,
linux/arm64) through the OCI distribution API, then probed in the Docker engine (Debian suite,
Python version) rather than guessed; an arm64 base runs there under qemu's binfmt emulation. A
bootstrapped base is pinned as suite + snapshot + mirror + the exact package set that
mmdebstrap's simulation reports for the platform's Debian architecture. System packages are
resolved by apt against the archive snapshot: inside the base image for a registry base, by
mmdebstrap's simulation for a bootstrapped one.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace

from builder import snapshots
from builder.compat import CudaVersion
from builder.engine.registry import RegistryClient
from builder.engine.sdk import Engine
from builder.errors import EngineError, LockError, RegistryUnreachable, tail
from builder.knowledge import AMD64, Knowledge
from builder.lock import bootstrap
from builder.lock.apt import AptArchive
from builder.lock.model import BaseLock, SystemLock
from builder.reference import ImageReference
from builder.spec.model import BootstrapBase, Spec

DEFAULT_SUITE = "bookworm"
SIMULATE_TIMEOUT_S = 300
_PROBE = re.compile(r"^reprobuild-(suite|python)=(.*)$", re.MULTILINE)
# apt's two ways of saying a package is not in the archive for this architecture.
_MISSING = re.compile(
    r"Unable to locate package (\S+)|Package '(\S+)' has no installation candidate"
)


# cuda_toolkit = "devel" bases are nvidia/cuda on Ubuntu; its Python comes from the release.
UBUNTU_FOR_PYTHON = {"3.10": "22.04", "3.12": "24.04"}
_DEVEL_TAG = re.compile(r"^nvidia/cuda:(\d+\.\d+)\.\d+-devel-ubuntu(\d+\.\d+)$")


def default_reference(spec: Spec, cuda: CudaVersion | None, knowledge: Knowledge) -> str:
    """python:<X.Y>-slim-bookworm; for cuda_toolkit = "devel" the nvidia/cuda devel image of the
    resolved CUDA on the Ubuntu release that ships the spec's Python (no cuDNN: torch brings it)."""
    if spec.cuda_toolkit != "devel" or cuda is None:
        return f"python:{spec.python}-slim-{DEFAULT_SUITE}"
    ubuntu = UBUNTU_FOR_PYTHON.get(spec.python)
    if ubuntu is None:
        choices = ", ".join(f"{p} (Ubuntu {u})" for p, u in UBUNTU_FOR_PYTHON.items())
        raise LockError(
            f'cuda_toolkit = "devel" uses an nvidia/cuda image on Ubuntu, whose Python is the '
            f"release's: {choices}. Set python to one of those, or set base to a devel image "
            f"with Python {spec.python}."
        )
    for known in knowledge.bases:
        match = _DEVEL_TAG.match(known.reference)
        if match and match.groups() == (str(cuda), ubuntu):
            return known.reference
    raise LockError(
        f"the knowledge base knows no nvidia/cuda devel image for CUDA {cuda} on Ubuntu {ubuntu}: "
        f'set base = "nvidia/cuda:{cuda}.<patch>-devel-ubuntu{ubuntu}" explicitly.'
    )


def lock_base(
    spec: Spec,
    cuda: CudaVersion | None,
    knowledge: Knowledge,
    registry: RegistryClient,
    connect: Callable[[], Engine],  # the engine, connected on first use
    *,
    platform: str = AMD64,
) -> BaseLock:
    base = spec.base
    if isinstance(base, BootstrapBase):
        return lock_bootstrap(base, spec.python, platform)
    reference = base or default_reference(spec, cuda, knowledge)
    return lock_registry_base(spec, reference, knowledge, registry, connect, platform=platform)


def lock_registry_base(
    spec: Spec,
    text: str,
    knowledge: Knowledge,
    registry: RegistryClient,
    connect: Callable[[], Engine],  # the engine, connected on first use
    *,
    platform: str = AMD64,
) -> BaseLock:
    reference = ImageReference.parse(text)
    digest, index_digest, config_digest, source = _pin(reference, knowledge, registry, platform)
    image = reference.pinned(digest)
    known = knowledge.base_named(text)
    python_source = "image"
    try:
        suite, python = probe_image(connect(), image)
    except EngineError:
        # Offline with a digest from the knowledge base: its recorded Python and suite stand in,
        # unless apt must run in the image (system packages), which needs the image itself.
        if known is None or known.python is None or spec.system_packages:
            raise
        suite, python, python_source = known.suite, known.python, "knowledge base"
    if python:
        check_python(spec.python, python, text)
    else:
        python_source = "apt"  # filled in from the system packages' resolution
    return BaseLock(
        kind="registry",
        reference=text,
        python=python,
        suite=suite,
        image=image,
        digest=digest,
        index_digest=index_digest,
        config_digest=config_digest,
        digest_source=source,
        python_source=python_source,
    )


def _pin(
    reference: ImageReference, knowledge: Knowledge, registry: RegistryClient, platform: str
) -> tuple[str, str | None, str, str]:
    try:
        resolved = registry.resolve(reference, platform)
    except RegistryUnreachable:
        known = knowledge.base_named(reference.written)
        if known is None or platform != AMD64:  # the knowledge base's digests are amd64's
            raise
        unreachable = f"registry {reference.registry} unreachable"
        return (known.digest, None, "", f"knowledge base {knowledge.version} ({unreachable})")
    source = "given" if reference.digest else "registry"
    return resolved.digest, resolved.index_digest, resolved.config_digest, source


def probe_image(engine: Engine, image: str) -> tuple[str, str]:
    """The distribution suite and full Python version inside an image ("" when it has none)."""
    engine.ensure_image(image)
    script = (
        '. /etc/os-release; echo "reprobuild-suite=${VERSION_CODENAME:-}"; '
        "echo \"reprobuild-python=$(python3 -c 'import platform; print(platform.python_version())' "
        '2>/dev/null)"'
    )
    result = engine.run_script(image, script)
    found = dict(_PROBE.findall(result.output))
    if not found.get("suite"):
        raise LockError(
            f"{image} is not a Debian or Ubuntu image (no VERSION_CODENAME); use one of those."
        )
    return found["suite"], found.get("python", "")


def check_python(wanted: str, found: str, base: str) -> None:
    if ".".join(found.split(".")[:2]) != wanted:
        raise LockError(
            f"the base {base} has Python {found}, but the spec asks for Python {wanted}: set "
            f'python = "{".".join(found.split(".")[:2])}", or choose a base with Python {wanted} '
            f"(e.g. python:{wanted}-slim-{DEFAULT_SUITE})."
        )


def _simulate(
    source: bootstrap.DebianSource, packages: tuple[str, ...], platform: str
) -> list[tuple[str, str]]:
    if shutil.which("mmdebstrap") is None:
        raise LockError(
            "locking a bootstrapped base needs mmdebstrap: install it (`apt-get install "
            "mmdebstrap`) or use a registry base."
        )
    architecture = bootstrap.DEBIAN_ARCHITECTURES[platform]
    argv = bootstrap.mmdebstrap_argv(
        source, "/dev/null", packages, simulate=True, architecture=architecture
    )
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=SIMULATE_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise LockError(
            f"apt could not resolve {', '.join(packages)} from {source.mirror} ({source.suite}):\n"
            f"{tail(result.stderr, 6)}\n"
            "Check the package names, the suite and that the mirror answers."
        )
    return bootstrap.parse_simulation(result.stdout + result.stderr)


def lock_bootstrap(base: BootstrapBase, python: str, platform: str = AMD64) -> BaseLock:
    suite = base.suite.split(":", 1)[1]
    mirror = base.mirror or snapshots.snapshot_mirror(base.snapshot)
    source = bootstrap.DebianSource(suite, mirror)
    packages = _simulate(source, bootstrap.BOOTSTRAP_PACKAGES, platform)
    versions = dict(packages)
    interpreter = max(
        (name for name in versions if re.fullmatch(r"python3\.\d+", name)), default=None
    )
    if interpreter is None:
        raise LockError(
            f"the bootstrapped {base.suite} base has no python3.X package: choose another suite "
            "(or snapshot) whose archive packages Python, or a registry base with Python."
        )
    full = versions[interpreter].split("-")[0]
    check_python(python, full, base.suite)
    return BaseLock(
        kind="bootstrap",
        reference=base.suite,
        python=full,
        suite=suite,
        snapshot=base.snapshot,
        mirror=mirror,
        packages=tuple(f"{name}={version}" for name, version in packages),
    )


def python_from_apt(base: BaseLock, system: SystemLock, wanted: str) -> BaseLock:
    """A Python-less base gets the spec's Python from apt: record the version apt resolved."""
    prefix = f"python{wanted}="
    version = next((p[len(prefix) :] for p in system.packages if p.startswith(prefix)), None)
    if version is None:
        raise LockError(
            f"apt resolved no python{wanted} for {base.image}: choose a base that ships Python "
            f"{wanted}, or set python to a version its distribution packages."
        )
    return replace(base, python=version.split("-")[0].split("+")[0])


def lock_system(
    base: BaseLock,
    requested: tuple[str, ...],
    archive: AptArchive,
    connect: Callable[[], Engine],  # the engine, connected on first use
    *,
    platform: str = AMD64,
) -> SystemLock:
    """Exact versions of the requested packages and everything apt would add for them, for the
    platform's architecture (apt in the base image runs as that architecture)."""
    if not requested:
        packages: list[str] = []
    elif base.kind == "bootstrap":
        source = bootstrap.DebianSource(base.suite, base.mirror)
        wanted = tuple(sorted({*bootstrap.BOOTSTRAP_PACKAGES, *requested}))
        both = _simulate(source, wanted, platform)
        already = set(base.packages)
        packages = [f"{n}={v}" for n, v in both if f"{n}={v}" not in already]
    else:
        packages = _apt_in_image(connect(), base, requested, archive, platform)
    return SystemLock(
        snapshot=archive.snapshot,
        mirror=archive.mirror,
        security_mirror=archive.security_mirror,
        requested=requested,
        packages=tuple(sorted(packages)),
    )


def _apt_in_image(
    engine: Engine, base: BaseLock, requested: tuple[str, ...], archive: AptArchive, platform: str
) -> list[str]:
    names = " ".join(shlex.quote(name) for name in requested)
    script = (
        "rm -f /etc/apt/sources.list.d/*; "
        f"printf '%s\\n' {shlex.quote(archive.sources(base.suite))} > /etc/apt/sources.list; "
        "apt-get update -qq --error-on=any -o Acquire::Check-Valid-Until=false "
        ">/tmp/update.log 2>&1 "
        "|| { cat /tmp/update.log; exit 90; }; "
        f"apt-get install --simulate --no-install-recommends -y {names}"
    )
    result = engine.run_script(base.image, script)
    if result.exit_code == 90:
        raise LockError(
            f"apt in {base.image} could not read the archive {archive.mirror}:\n"
            f"{tail(result.output)}\nCheck that the mirror answers, or pass --debian-mirror."
        )
    if result.exit_code != 0:
        missing = [
            located or uncandidate for located, uncandidate in _MISSING.findall(result.output)
        ]
        if missing:
            where = base.suite if platform == AMD64 else f"{base.suite} for {platform}"
            raise LockError(
                f"system package(s) {', '.join(missing)} not found in {where} at "
                f"{archive.mirror}: check the names (`apt-cache search` on a {base.suite} machine)."
            )
        raise LockError(
            f"apt could not resolve {', '.join(requested)}:\n{tail(result.output)}\n"
            "Check the package names and that the mirror (--debian-mirror) answers."
        )
    return [f"{name}={version}" for name, version in bootstrap.parse_simulation(result.output)]
