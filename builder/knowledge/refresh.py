"""Regenerate the torch rows from package-index metadata.

What can be read from an index is read from it, through the PEP 503 simple API that pip uses
(the same format serves PyPI and the PyTorch variant indexes): the releases, the Linux wheels
(x86_64 for linux/amd64 rows, aarch64 for linux/arm64 rows) and their CPython tags (supported
Pythons), and each wheel's `Requires-Dist` pins that apply on its machine, which give the CUDA
runtime, cuDNN and NCCL versions. A PyPI wheel that pins no CUDA runtime and holds no
libtorch_cuda.so is a CPU-only build (PyPI's aarch64 wheels up to torch 2.10). Metadata comes
from the PEP 658 `.metadata` file, or, where an index lacks it, from the wheel's own METADATA
read through byte ranges.

The same metadata gives companions.json (builder/knowledge/pairing.py): the triton pin of each
torch release, and the torch release each torchvision and torchaudio release is built for (read
from the x86_64 wheels: the companion rows are per torch release, not per platform).

What cannot be read from metadata is kept from the shipped data: the compiled GPU architectures
(measured from the wheel), and every row of an index that did not answer. Output ordering is
stable and a row whose values did not change keeps its read date, so a scheduled job can diff
the file.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.parser import HeaderParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urldefrag, urljoin, urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from builder.compat import CudaVersion
from builder.engine.http import Getter, RemoteFile
from builder.errors import IndexUnavailable, NotFound, ReprobuildError
from builder.knowledge import (
    AMD64,
    ARM64,
    MACHINES,
    PYPI,
    Knowledge,
    marker_environment,
    pairing,
    row_key,
    store,
)
from builder.knowledge.pairing import CompanionChanges
from builder.knowledge.pins import component_of

OLDEST_TORCH = Version("2.0.0")
PYPI_SIMPLE = "https://pypi.org/simple"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
NOT_MEASURED = "not measured yet: run torch._C._cuda_getArchFlags() on this wheel and record it"
ARCH_LIBRARY = "torch/lib/libtorch_python.so"
CUDA_LIBRARY = "torch/lib/libtorch_cuda.so"
_ARCH_FLAGS = re.compile(rb"(?:sm|compute)_\d+[a-z]?(?: (?:sm|compute)_\d+[a-z]?)+")
_WHEEL = re.compile(
    r"^torch-(?P<version>[^-]+)-cp(?P<major>\d)(?P<minor>\d+)-cp\d+-(?P<plat>.+)\.whl$"
)
_VALUE_FIELDS = ("wheel_version", "cuda", "cuda_runtime", "cudnn", "nccl", "pythons", "archs")
_KEPT_WHEN_UNREAD = ("cuda_runtime", "cudnn", "nccl")


class Index(Protocol):
    def get(self, url: str, headers: dict[str, str] | None = None) -> bytes: ...
    def get_range(self, url: str, start: int, length: int) -> bytes: ...
    def size(self, url: str) -> int: ...


@dataclass(frozen=True)
class Wheel:
    filename: str
    url: str
    version: Version
    python: tuple[int, int]
    platform: str  # AMD64 or ARM64


@dataclass
class RefreshReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    unmeasured: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    companions: CompanionChanges = field(default_factory=CompanionChanges)


@dataclass(frozen=True)
class IndexRows:
    """What one index gave: torch rows, and companion rows (torch's own pins and the releases
    of torchvision and torchaudio)."""

    builds: list[dict[str, Any]]
    companions: list[dict[str, Any]]


@dataclass(frozen=True)
class Refreshed:
    builds: list[dict[str, Any]]
    companions: list[dict[str, Any]]
    report: RefreshReport


class Anchors(HTMLParser):
    """The links of a PEP 503 index page, each with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a" and attributes.get("href"):
            self.links.append((str(attributes["href"]), attributes))


def _builds_of(wheels: list[Wheel], variant: str | None) -> dict[tuple[Version, str], list[Wheel]]:
    """The wheels of the index's own builds, by release and platform: untagged on PyPI, tagged
    with the variant on a variant index. The cu124 index's aarch64 wheels of torch 2.4 and 2.5
    carry no local tag (torch-2.4.0-cp311-cp311-linux_aarch64.whl, pytorch/pytorch#134117), so
    on a CUDA index an untagged aarch64 release with no tagged wheel is the index's build too."""
    by_build: dict[tuple[Version, str], list[Wheel]] = defaultdict(list)
    untagged: dict[tuple[Version, str], list[Wheel]] = defaultdict(list)
    for wheel in wheels:
        local = wheel.version.local
        if (variant is None and local is None) or (variant is not None and local == variant):
            by_build[(wheel.version, wheel.platform)].append(wheel)
        elif local is None and wheel.platform == ARM64 and (variant or "").startswith("cu"):
            untagged[(wheel.version, wheel.platform)].append(wheel)
    tagged = {(version.public, platform) for version, platform in by_build}
    for (version, platform), found in untagged.items():
        if (version.public, platform) not in tagged:
            by_build[(version, platform)] = found
    return by_build


def platform_of(tag: str) -> str | None:
    """The image platform of a wheel's platform tag: `manylinux_2_28_aarch64` -> ARM64,
    `manylinux1_x86_64` or `linux_x86_64` -> AMD64; None for another OS or machine."""
    if "linux" not in tag:
        return None
    return next((platform for platform, machine in MACHINES.items() if machine in tag), None)


def list_wheels(index: Index, index_url: str) -> list[Wheel]:
    """Linux x86_64 and aarch64 CPython wheels of torch >= 2.0 listed by a PEP 503 simple
    index."""
    page_url = f"{index_url.rstrip('/')}/torch/"
    page = index.get(page_url, {"Accept": "text/html"}).decode("utf-8", errors="replace")
    parser = Anchors()
    parser.feed(page)
    wheels = []
    for href, attributes in parser.links:
        if "data-yanked" in attributes:
            continue
        url = urldefrag(urljoin(page_url, href)).url
        filename = url.rsplit("/", 1)[-1].replace("%2B", "+")
        match = _WHEEL.match(filename)
        platform = platform_of(match["plat"]) if match else None
        if match is None or platform is None:
            continue  # free-threaded builds (cp313t) carry another ABI tag and do not match
        try:
            version = Version(match["version"])
        except InvalidVersion:
            continue
        if version >= OLDEST_TORCH and not version.is_prerelease:
            python = (int(match["major"]), int(match["minor"]))
            wheels.append(Wheel(filename, url, version, python, platform))
    return sorted(wheels, key=lambda wheel: (wheel.version, wheel.filename))


def _remote_wheel(index: Index, wheel_url: str) -> zipfile.ZipFile:
    remote = io.BufferedReader(RemoteFile(index, wheel_url), buffer_size=1 << 20)  # type: ignore[arg-type]
    try:
        return zipfile.ZipFile(remote)
    except zipfile.BadZipFile:
        raise IndexUnavailable(f"{wheel_url} is not a zip archive, so not a wheel.") from None


def read_wheel_metadata(index: Index, wheel_url: str) -> str:
    """The wheel's METADATA: from PEP 658, else out of the remote zip through byte ranges."""
    try:
        return index.get(f"{wheel_url}.metadata").decode("utf-8", errors="replace")
    except NotFound:
        pass
    with _remote_wheel(index, wheel_url) as archive:
        names = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        if not names:
            raise IndexUnavailable(f"{wheel_url} holds no .dist-info/METADATA; it is not a wheel.")
        return archive.read(names[0]).decode("utf-8", errors="replace")


def holds_member(index: Index, wheel_url: str, member: str) -> bool:
    """Whether the remote wheel holds `member`, from its zip directory alone."""
    with _remote_wheel(index, wheel_url) as archive:
        return member in archive.namelist()


def measure_archs(index: Index, wheel_url: str) -> list[str] | None:
    """The wheel's compiled arch list, read without a GPU or an install.

    torch stringizes TORCH_CUDA_ARCH_LIST into libtorch_python.so; that string is what
    torch._C._cuda_getArchFlags() returns. Only that member is fetched (about 10 MB).
    None when the library or a single unambiguous string is not there.
    """
    with _remote_wheel(index, wheel_url) as archive:
        try:
            library = archive.read(ARCH_LIBRARY)
        except KeyError:
            return None
    found = set(_ARCH_FLAGS.findall(library))
    return found.pop().decode().split() if len(found) == 1 else None


def fetch_rows(
    index: Index, index_url: str, variant: str | None, today: str, measured: set[str]
) -> list[dict[str, Any]]:
    """Rows for one index: PyPI (variant None, default builds) or a variant index (cu124, cpu).

    Arch lists are measured from the wheel for CUDA builds whose label is not in `measured`.
    """
    return read_index(index, index_url, variant, today, measured).builds


def read_index(
    index: Index, index_url: str, variant: str | None, today: str, measured: set[str]
) -> IndexRows:
    """The torch rows of one index and the companion rows its metadata states."""
    by_build = _builds_of(list_wheels(index, index_url), variant)
    rows = []
    companions = []
    for (version, platform), wheels in sorted(by_build.items()):
        metadata = read_wheel_metadata(index, wheels[0].url)
        requires = HeaderParser().parsestr(metadata).get_all("Requires-Dist") or []
        pins = linux_pins(requires, platform)
        cpu_only = variant is None and "cuda_runtime" not in pins
        if cpu_only and holds_member(index, wheels[0].url, CUDA_LIBRARY):
            raise IndexUnavailable(
                f"torch {version}: {wheels[0].filename} pins no CUDA runtime in its metadata "
                f"but holds {CUDA_LIBRARY}, so its CUDA version cannot be read; report this "
                "with the wheel name."
            )
        row = _row(
            index_url,
            variant,
            version=version,
            wheels=wheels,
            pins=pins,
            today=today,
        )
        if row["archs"] is None and row_key(row) not in measured:
            archs = measure_archs(index, wheels[0].url)
            if archs is not None:
                row["archs"] = archs
                row["archs_source"] = (
                    f"CUDA arch flags string in {ARCH_LIBRARY} of {wheels[0].filename}, "
                    "equal to torch._C._cuda_getArchFlags()"
                )
        rows.append(row)
        if platform != AMD64:
            continue  # the companion rows are read from the x86_64 wheels
        companions += pairing.torch_pinned_rows(
            metadata,
            torch=version,
            pythons=row["pythons"],
            index=row["index"],
            source=row["source"],
            today=today,
        )
    for package in pairing.RELEASE_PAIRED:
        companions += companion_rows(index, index_url, package, variant, today)
    return IndexRows(rows, companions)


def companion_rows(
    index: Index, index_url: str, package: str, variant: str | None, today: str
) -> list[dict[str, Any]]:
    """Rows for the releases of one RELEASE_PAIRED package on one index, newest first, down to
    the first release built for a torch older than OLDEST_TORCH; none when the index lacks it."""
    page_url = f"{index_url.rstrip('/')}/{package}/"
    try:
        page = index.get(page_url, {"Accept": "text/html"}).decode("utf-8", errors="replace")
    except NotFound:
        return []
    parser = Anchors()
    parser.feed(page)
    releases: dict[Version, pairing.Release] = {}
    for href, attributes in parser.links:
        if "data-yanked" in attributes:
            continue
        url = urldefrag(urljoin(page_url, href)).url
        release = pairing.release_of(url.rsplit("/", 1)[-1].replace("%2B", "+"), url, variant)
        if release is not None:
            releases.setdefault(release.version, release)
    rows = []
    for version in sorted(releases, reverse=True):
        release = releases[version]
        torch = pairing.torch_of(read_wheel_metadata(index, release.url))
        if torch is None:
            continue
        if torch < OLDEST_TORCH:
            break
        rows.append(
            pairing.release_row(
                release, torch, package=package, index_url=index_url, variant=variant, today=today
            )
        )
    return rows


def _row(
    index_url: str,
    variant: str | None,
    *,
    version: Version,
    wheels: list[Wheel],
    pins: dict[str, str],
    today: str,
) -> dict[str, Any]:
    runtime = pins.get("cuda_runtime")
    cuda = _cuda_of(variant, runtime)
    public = version.public
    return {
        "torch": public,
        "variant": cuda.variant if cuda else "cpu",
        "platform": wheels[0].platform,
        "wheel_version": str(version),
        "index": PYPI if variant is None else index_url.rstrip("/"),
        "pypi_default": variant is None,
        "cuda": str(cuda) if cuda else None,
        "cuda_runtime": runtime,
        "cudnn": pins.get("cudnn"),
        "nccl": pins.get("nccl"),
        "archs": [] if cuda is None else None,
        "pythons": [f"{major}.{minor}" for major, minor in sorted({w.python for w in wheels})],
        "source": (
            f"{index_url.rstrip('/')}/torch/ (PEP 503); Requires-Dist of {wheels[0].filename}"
        ),
        "archs_source": _cpu_source(variant, wheels[0]) if cuda is None else NOT_MEASURED,
        "read": today,
    }


def _cuda_of(variant: str | None, runtime: str | None) -> CudaVersion | None:
    """The build's CUDA: its runtime pin, else its variant index's tag; None for a CPU build
    (the cpu index, or a PyPI wheel without a runtime pin, which read_index checks)."""
    if variant == "cpu":
        return None
    if runtime is not None:
        return CudaVersion.parse(".".join(runtime.split(".")[:2]))
    if variant is not None:
        return CudaVersion.from_variant(variant)
    return None


def _cpu_source(variant: str | None, wheel: Wheel) -> str:
    if variant is not None:
        return "CPU-only build: no CUDA kernels"
    return (
        f"CPU-only build: no CUDA kernels ({wheel.filename} pins no CUDA runtime on "
        f"{MACHINES[wheel.platform]} and holds no {CUDA_LIBRARY})"
    )


def linux_pins(requires_dist: Iterable[str], platform: str) -> dict[str, str]:
    """The exact CUDA runtime / cuDNN / NCCL pins that apply on Linux on the platform's machine
    (x86_64 for AMD64, aarch64 for ARM64)."""
    environment = marker_environment(platform)
    pins: dict[str, str] = {}
    for line in requires_dist:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        component = component_of(requirement.name)
        if exact and component is not None:
            pins[component] = exact[0]
    return pins


def merge(
    existing: list[dict[str, Any]], fetched: list[dict[str, Any]], refreshed_indexes: set[str]
) -> tuple[list[dict[str, Any]], RefreshReport]:
    """Replace rows of the indexes that answered; keep measured archs and unchanged read dates.

    A fetched PyPI row replaces a variant-index row of the same label on the same platform: one
    row per build.
    """
    report = RefreshReport()
    by_label = {row_key(row): row for row in existing}
    fetched_labels = {row_key(row) for row in fetched}
    kept = [
        row
        for row in existing
        if row_key(row) not in fetched_labels and row["index"] not in refreshed_indexes
    ]
    report.kept = [row_key(row) for row in kept]
    merged = list(kept)
    pypi_labels = {row_key(row) for row in [*kept, *fetched] if row["index"] == PYPI}
    fetched = [row for row in fetched if row["index"] == PYPI or row_key(row) not in pypi_labels]
    for fresh in fetched:
        old = by_label.get(row_key(fresh))
        row = _carry_over(fresh, old)
        if old is None:
            report.added.append(row_key(row))
        elif all(old.get(name) == row.get(name) for name in _VALUE_FIELDS):
            row["read"] = old["read"]
            report.unchanged.append(row_key(row))
        else:
            report.changed.append(row_key(row))
        if row["archs"] is None:
            report.unmeasured.append(row_key(row))
        merged.append(row)
    return sort_rows(merged), report


def _carry_over(fresh: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    row = dict(fresh)
    if old is None:
        return row
    if row["archs"] is None and old.get("archs") is not None:
        row["archs"], row["archs_source"] = old["archs"], old["archs_source"]
    for name in _KEPT_WHEN_UNREAD:
        if row[name] is None and old.get(name) is not None:
            row[name] = old[name]
    return row


def sort_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The linux/amd64 rows, then the other platforms', each by torch release and variant."""
    return sorted(
        rows,
        key=lambda row: (
            row["platform"] != AMD64,
            row["platform"],
            Version(row["torch"]),
            row["variant"],
        ),
    )


def dump(rows: list[dict[str, Any]]) -> str:
    """The torch.json text: sorted rows, sorted keys, one stable layout."""
    return json.dumps({"builds": sort_rows(rows), "schema": 1}, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class IndexSource:
    url: str
    variant: str | None  # None: the PyPI-default builds


def sources(pypi_url: str, pytorch_url: str, variants: Iterable[str]) -> list[IndexSource]:
    base = pytorch_url.rstrip("/")
    return [IndexSource(pypi_url, None)] + [
        IndexSource(f"{base}/{variant}", variant) for variant in sorted(set(variants))
    ]


def refresh(
    index: Index,
    existing: list[dict[str, Any]],
    indexes: list[IndexSource],
    today: str,
    existing_companions: list[dict[str, Any]] | None = None,
) -> Refreshed:
    """Fetch every index that answers; rows of the others are kept and reported unreachable."""
    fetched = IndexRows([], [])
    measured = {row_key(row) for row in existing if row.get("archs") is not None}
    answered: set[str] = set()
    unreachable: list[str] = []
    silent_hosts: set[str] = set()
    for source in indexes:
        host = urlsplit(source.url).netloc
        if host in silent_hosts:
            unreachable.append(f"{source.url}: skipped, {host} did not answer")
            continue
        try:
            rows = read_index(index, source.url, source.variant, today, measured)
        except NotFound as error:
            unreachable.append(f"{source.url}: {error}")
            continue
        except IndexUnavailable as error:
            silent_hosts.add(host)
            unreachable.append(f"{source.url}: {error}")
            continue
        fetched.builds.extend(rows.builds)
        fetched.companions.extend(rows.companions)
        answered.add(PYPI if source.variant is None else source.url.rstrip("/"))
    if not answered:
        raise IndexUnavailable(
            "no package index answered, so the knowledge base was kept as shipped:\n  "
            + "\n  ".join(unreachable)
        )
    merged, report = merge(existing, fetched.builds, answered)
    report.unreachable = unreachable
    companions, report.companions = pairing.merge(
        existing_companions or [], fetched.companions, answered
    )
    return Refreshed(merged, companions, report)


def known_variants(knowledge: Knowledge) -> tuple[str, ...]:
    """The variant indexes of the builds the knowledge base already holds."""
    return tuple(build.variant for build in knowledge.builds if not build.pypi_default)


def refresh_knowledge(
    knowledge: Knowledge, indexes: list[IndexSource], output: Path | None
) -> tuple[Path, RefreshReport]:
    """Read the indexes and write the refreshed torch.json and companions.json (to `output`,
    else where the knowledge base was loaded from); where torch.json was written, and what
    changed. When no index answers, nothing is written and the error says so."""
    today = datetime.now(timezone.utc).date().isoformat()
    existing = [build.to_dict() for build in knowledge.builds]
    companions = [row.to_dict() for row in knowledge.companions]
    try:
        with Getter() as getter:
            refreshed = refresh(getter, existing, indexes, today, companions)
    except ReprobuildError as error:
        raise ReprobuildError(
            f"offline: {error}\nThe knowledge base {knowledge.version} was kept unchanged."
        ) from None
    texts = {
        "torch.json": dump(refreshed.builds),
        "companions.json": pairing.dump(refreshed.companions),
    }
    written = store.write(knowledge.directory, output or knowledge.directory, texts)
    return written, refreshed.report
