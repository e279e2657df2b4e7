"""The Python closure: every wheel the image installs, for the image's platform (linux x86_64 or
aarch64 manylinux, the spec's Python), one per package with its sha256, resolved by
`uv pip compile` into PEP 751 form and cross-checked against the resolution (torch build, CUDA
runtime, cuDNN, NCCL, and the companions paired with torch: torchvision, torchaudio, triton).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from builder.errors import IndexUnavailable, LockError, NotFound
from builder.lock import wheels
from builder.lock.model import LockedPackage, PythonClosure

if TYPE_CHECKING:
    from builder.knowledge import TorchBuild
    from builder.resolve.companions import Pairing
    from builder.resolve.resolve import Resolution
    from builder.spec.model import Spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

PYPI_SIMPLE = "https://pypi.org/simple"
UV_TIMEOUT_S = 600


def torch_requirement(build: TorchBuild) -> str:
    """The exact pin: `torch==2.5.1` from PyPI, `torch==2.5.1+cu121` from a variant index."""
    return f"torch=={build.wheel_version}"


def requirement_lines(
    spec: Spec, build: TorchBuild, companions: Sequence[Pairing] = ()
) -> list[str]:
    """torch's pin, the exact pins of its companions (`torchvision==0.20.1+cu121`: the variant
    index is searched first and uv's first-index strategy keeps a PyPI build from winning),
    then the spec's own requirements."""
    lines = [torch_requirement(build), *(pairing.pin for pairing in companions), *spec.packages]
    if spec.requirements is not None:
        lines.append(f"-r {spec.requirements}")
    return lines


def uv_binary() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def uv_version() -> str:
    import subprocess

    result = subprocess.run([uv_binary(), "--version"], capture_output=True, text=True, check=False)
    return result.stdout.split()[1] if result.returncode == 0 else "unknown"


def lock_python(
    spec: Spec,
    resolution: Resolution,
    project: Path,
    index_url: str = PYPI_SIMPLE,
) -> PythonClosure:
    """Resolve the full closure with uv for the image's platform; one hashed wheel each."""
    import subprocess
    import tempfile

    from builder.knowledge import MACHINES, PYPI

    build = resolution.build
    machine = MACHINES[resolution.platform]
    indexes = [index_url] if build.index == PYPI else [build.index, index_url]
    lines = requirement_lines(spec, build, resolution.companions)
    with tempfile.TemporaryDirectory(prefix="reprobuild-lock-") as folder:
        request = Path(folder) / "requirements.in"
        request.write_text("\n".join(lines) + "\n")
        output = Path(folder) / "pylock.toml"
        argv = [
            uv_binary(),
            "pip",
            "compile",
            str(request),
            "-o",
            str(output),
            "--quiet",
            "--no-header",
            "--python-platform",
            wheels.uv_platform(machine),
            "--python-version",
            spec.python,
            "--only-binary",
            ":all:",
            "--index-url",
            index_url,
        ]
        if build.index != PYPI:
            argv += ["--extra-index-url", build.index]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=UV_TIMEOUT_S, cwd=project, check=False
        )
        if result.returncode != 0:
            from builder.engine.http import Getter

            with Getter() as index:
                query = wheels.Query(spec.python, tuple(lines), index, machine)
                explained = explain_uv_failure(result.stderr, indexes, query)
            raise LockError(explained)
        document = tomllib.loads(output.read_text())
    packages = tuple(sorted(_packages(document, project, machine), key=lambda p: p.name))
    closure = PythonClosure(
        platform=wheels.uv_platform(machine),
        python=spec.python,
        indexes=tuple(indexes),
        find_links=_find_links(spec),
        requirements=tuple(_portable(line, project) for line in lines),
        packages=packages,
        uv_version=uv_version(),
    )
    cross_check(closure, build, resolution.companions)
    return closure


def _portable(line: str, project: Path) -> str:
    """Requirement lines as recorded: paths relative to the project, not to this machine."""
    if not line.startswith("-r "):
        return line
    return f"-r {_relative(Path(line[3:]), project)}"


def _find_links(spec: Spec) -> tuple[str, ...]:
    if spec.requirements is None:
        return ()
    found = re.findall(
        r"^\s*(?:--find-links|-f)[ =](\S+)", spec.requirements.read_text(), re.MULTILINE
    )
    return tuple(found)


def _packages(document: dict[str, Any], project: Path, machine: str) -> list[LockedPackage]:
    packages = []
    for entry in document.get("packages", []):
        name, version = str(entry["name"]), str(entry["version"])
        wheels = entry.get("wheels") or []
        if not wheels:
            raise LockError(
                f"{name} {version} has no wheel for linux {machine} (only a source distribution); "
                "images install binary wheels only. Pin a version that has a wheel, or build one "
                "into a wheelhouse listed with --find-links."
            )
        wheel = wheels[0]
        sha256 = wheel.get("hashes", {}).get("sha256")
        location = str(wheel.get("url") or wheel.get("path") or "")
        if not sha256 or not location:
            raise LockError(
                f"{name} {version}: the resolver gave no sha256 for its wheel. Use an index or "
                "--find-links folder that publishes sha256 hashes (PyPI does)."
            )
        packages.append(
            LockedPackage(
                name=name,
                version=version,
                url=_relative_file_url(location, project),
                sha256=str(sha256),
                size=wheel.get("size"),
                marker=entry.get("marker"),
            )
        )
    return packages


def _relative_file_url(location: str, project: Path) -> str:
    if not location.startswith("file://"):
        return location
    return _relative(Path(unquote(urlsplit(location).path)), project)


def _relative(path: Path, project: Path) -> str:
    """Relative to the project when inside it (portable across checkouts), else as it is."""
    root = project.resolve()
    return str(path.relative_to(root) if path.is_relative_to(root) else path)


def explain_uv_failure(
    stderr: str,
    indexes: list[str],
    query: wheels.Query | None = None,
) -> str:
    """uv's failure as a cause and a fix; with `query`, a release without a wheel for the
    image's Python is told from a conflict by the package's files on the index."""
    detail = "\n".join(
        line.rstrip()
        for line in stderr.strip().splitlines()
        if line.strip() and "warning" not in line
    )
    missing = re.search(r"Because ([\w.\-\[\]]+) was not found in the package registry", stderr)
    if missing:
        return (
            f"the package '{missing.group(1)}' is not on {', '.join(indexes)}: check its name, or "
            f"add the index or wheelhouse that serves it.\n{detail}"
        )
    if "No solution found" in stderr:
        names = wheels.unbuildable(stderr)
        if names and query is not None:
            return _no_wheel(names, stderr, indexes, query, detail)
        return f"the Python requirements conflict; relax or align the pins uv names:\n{detail}"
    if re.search(r"(Failed to fetch|error sending request|Could not connect|dns error)", stderr):
        hosts = sorted({urlsplit(url).netloc for url in indexes})
        return (
            f"the package index ({', '.join(hosts)}) did not answer; check the network or point "
            f"--index-url at a reachable mirror.\n{detail}"
        )
    return (
        f"uv could not lock the Python closure:\n{detail}\nCheck the requirements and the "
        f"indexes ({', '.join(indexes)}) that the output above names."
    )


def _no_wheel(
    names: list[str],
    stderr: str,
    indexes: list[str],
    query: wheels.Query,
    detail: str,
) -> str:
    """Each package uv found no wheel for, explained from its files on the index."""
    python = query.python
    found = [_explained(name, stderr, indexes, query) for name in names]
    explained = [text for text in found if text is not None]
    if len(explained) == len(names):
        return "\n".join(explained)
    return (
        f"{', '.join(names)}: no release that the requirements allow has a wheel for Python "
        f"{python} (cp{python.replace('.', '')}) on {wheels.platform_name(query.machine)}, and "
        "the image "
        "installs wheels only (builds from source are off). Pin a release that has one (the "
        "index's file list shows which), or build a wheel into a wheelhouse listed with "
        f"--find-links:\n{detail}"
    )


def _explained(name: str, stderr: str, indexes: list[str], query: wheels.Query) -> str | None:
    """From the first index that lists the package, as uv reads them (the torch variant's index
    before the main one); None when no index can be read or the asked release is not the cause."""
    asked = wheels.requested(name, query.requirements, stderr)
    if asked is None:
        return None
    for url in indexes:
        try:
            files = wheels.listing(query.index, url, name)
        except NotFound:
            continue
        except (IndexUnavailable, ValueError):
            return None
        return wheels.explain(
            name, asked, query.python, wheels.releases(files), url, machine=query.machine
        )
    return None


def closure_versions(closure: PythonClosure) -> dict[str, str]:
    """torch, CUDA runtime, cuDNN and NCCL as the closure pins them."""
    from builder.knowledge.pins import component_of, is_toolkit_meta

    found: dict[str, str] = {}
    for package in closure.packages:
        component = "torch" if package.name == "torch" else component_of(package.name)
        if component is None:
            continue
        if (
            component == "cuda_runtime"
            and "cuda_runtime" in found
            and not is_toolkit_meta(package.name)
        ):
            continue  # the cuda-toolkit meta-package, where present, names the runtime release
        found[component] = package.version
    return found


def cross_check(
    closure: PythonClosure, build: TorchBuild, companions: Sequence[Pairing] = ()
) -> None:
    """The closure must hold exactly the build the resolver chose, and each companion paired
    with it; a mismatch is an error."""
    found = closure_versions(closure)
    expected = {
        "torch": build.wheel_version,
        "cuda_runtime": build.cuda_runtime,
        "cudnn": build.cudnn,
        "nccl": build.nccl,
    }
    problems = [
        f"{key} {found.get(key, 'missing')} (the resolution says {value})"
        for key, value in expected.items()
        if value is not None and found.get(key) != value
    ]
    if problems:
        raise LockError(
            f"the locked Python closure disagrees with the resolution of {build.label}: "
            + "; ".join(problems)
            + ". An index served another build of torch (e.g. a +cpu wheel of the same version); "
            "check the indexes, or run `reprobuild knowledge refresh` if the knowledge is stale."
        )
    _check_companions(closure, build, companions)


def _check_companions(
    closure: PythonClosure, build: TorchBuild, companions: Sequence[Pairing]
) -> None:
    from packaging.utils import canonicalize_name

    locked = {str(canonicalize_name(p.name)): p.version for p in closure.packages}
    problems = [
        f"{pairing.package} {locked.get(pairing.package, 'missing')} (torch {pairing.torch} "
        f"pairs with {pairing.pin})"
        for pairing in companions
        if pairing.package not in locked or not pairing.admits(locked[pairing.package])
    ]
    if problems:
        raise LockError(
            f"the locked Python closure does not hold the companions paired with {build.label}: "
            + "; ".join(problems)
            + ". Another requirement or index moved them off the pair; pin them as the "
            "resolution says (`reprobuild resolve --explain` shows each pair), or remove the "
            "requirement that overrides it."
        )
