"""`reprobuild lock --export FILE`: the lock's Python closure for installers outside the image.

`pylock.toml` (or `pylock.NAME.toml`): a PEP 751 lock file, built and validated with packaging's
own `Pylock` (the reference implementation of the format), one wheel per package with its URL,
size and sha256. Any other `.txt` name: a requirements file for `pip install --require-hashes`,
the indexes first, then `name==version` pins each with the one hash the lock holds, so an
installer can take no other file. Both name the platform the closure was resolved for: the
image's (linux x86_64 or aarch64, the lock's Python); elsewhere an installer refuses them, rightly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import tomli_w
from packaging.markers import Marker
from packaging.pylock import Package, PackageWheel, Pylock, is_valid_pylock_path
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from builder import __version__, files
from builder.errors import LockExportError
from builder.lock.model import Lock, LockedPackage

PYLOCK_VERSION = Version("1.0")
# The image's platform, as markers: the closure's wheels are for it alone.
MARKERS = (
    "sys_platform == 'linux' and platform_machine == '{machine}' and python_version == '{python}'"
)
FORMATS = "pylock.toml (or pylock.NAME.toml) or a requirements file ending in .txt"


def local_path(package: LockedPackage, project: Path, beside: Path) -> str:
    """A local wheel (its URL a path relative to the project), relative to the exported file."""
    return Path(os.path.relpath(project / package.url, beside)).as_posix()


def environment_marker(lock: Lock) -> Marker:
    return Marker(MARKERS.format(machine=lock.python.machine, python=lock.python.python))


def pylock(lock: Lock, project: Path, beside: Path) -> str:
    """The closure as a PEP 751 lock file whose local wheels are named relative to `beside`."""
    packages = [_pylock_package(package, project, beside) for package in lock.python.packages]
    document = Pylock(
        lock_version=PYLOCK_VERSION,
        environments=[environment_marker(lock)],
        requires_python=SpecifierSet(f"=={lock.python.python}.*"),
        created_by="reprobuild",
        packages=packages,
        tool={"reprobuild": {"version": __version__, "indexes": list(lock.python.indexes)}},
    )
    document.validate()
    return tomli_w.dumps(document.to_dict())


def _pylock_package(package: LockedPackage, project: Path, beside: Path) -> Package:
    remote = package.remote
    wheel = PackageWheel(
        name=package.filename,
        url=package.url if remote else None,
        path=None if remote else local_path(package, project, beside),
        size=package.size,
        hashes={"sha256": package.sha256},
    )
    return Package(
        name=canonicalize_name(package.name),
        version=Version(package.version),
        marker=Marker(package.marker) if package.marker else None,
        wheels=[wheel],
    )


def requirements(lock: Lock, project: Path, beside: Path) -> str:
    """The closure as a hash-checked requirements file (pip's --require-hashes mode)."""
    closure = lock.python
    lines = [
        f"# The Python closure of reprobuild.lock, written by reprobuild {__version__}; install "
        "with",
        "#   pip install --require-hashes -r FILE",
        f"# for Python {closure.python} on {closure.platform}: the lock's one wheel per package "
        "and its sha256.",
        "# Local wheels are paths relative to this file's folder: run pip from there.",
    ]
    for position, index in enumerate(closure.indexes):
        lines.append(f"--{'index-url' if position == 0 else 'extra-index-url'} {index}")
    lines += [f"--find-links {link}" for link in closure.find_links]
    for package in closure.packages:
        lines.append(_requirement(package, project, beside))
    return "\n".join(lines) + "\n"


def _requirement(package: LockedPackage, project: Path, beside: Path) -> str:
    pin = f"{package.name}=={package.version}"
    if not package.remote:
        pin = f"./{local_path(package, project, beside)}"
    marker = f" ; {package.marker}" if package.marker else ""
    return f"{pin}{marker} \\\n    --hash=sha256:{package.sha256}"


def export_format(path: Path) -> str:
    """ "pylock" or "requirements", as `path`'s name asks; LockExportError names the two."""
    if is_valid_pylock_path(Path(path.name)):
        return "pylock"
    if path.name.startswith("pylock."):
        raise LockExportError(
            f"--export {path}: a PEP 751 lock file is named pylock.toml or pylock.NAME.toml "
            "(NAME without dots); rename it."
        )
    if path.suffix == ".txt":
        return "requirements"
    raise LockExportError(f"--export {path}: name the file for its format: {FORMATS}.")


def check_formats(paths: Iterable[Path]) -> None:
    """Refuse, before any work, an export whose name says no format."""
    for path in paths:
        export_format(path)


def render(lock: Lock, project: Path, path: Path) -> str:
    """The export `path`'s name asks for, its local wheels named relative to its folder."""
    write = pylock if export_format(path) == "pylock" else requirements
    return write(lock, project, path.absolute().parent)


def export(lock: Lock, project: Path, path: Path) -> None:
    """Write the export atomically: readers see the old file or the new one."""
    files.write_output(path, render(lock, project, path), "give --export a writable path.")
