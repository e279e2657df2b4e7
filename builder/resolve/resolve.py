"""Spec x Target x Knowledge -> Resolution: the torch build to install, and why.

Among the builds of the allowed torch releases, keep those that
(a) have a cubin for every target GPU (same major, lower-or-equal minor), or else PTX of a lower
    version that the target driver can JIT,
(b) run on the target driver (the minor-version-compatibility floor of their CUDA family),
(c) have wheels for the spec's Python, and
(d) match an explicit `cuda` (or `+cuXYZ` local tag), and
(e) pair with each companion the spec names (torchvision, torchaudio, triton): the knowledge base
    knows the release built for its torch, and the spec's pin admits it.
Preference: the PyPI default build when it qualifies, else the newest qualifying CUDA, else the
newest torch. The newest CUDA is never chosen just because it exists.
Each image platform (linux/amd64, linux/arm64) is resolved on its own, among the builds whose
wheels install on it; a target GPU whose machine runs another platform (a Grace superchip's Arm
CPU) is left out of that platform's target.
The companions of the chosen build are then pinned to its pairs (builder/resolve/companions.py).
"""

from __future__ import annotations

import platform as host
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from builder.compat import Arch, CudaVersion, DriverVersion, coverage
from builder.errors import ResolutionError
from builder.knowledge import AMD64, PYPI, GpuModel, Knowledge, TorchBuild, machine_platform
from builder.resolve import target
from builder.resolve.companions import CompanionRecord, Pairing, named, pairings, unpaired
from builder.resolve.target import Target, gpu_label
from builder.spec.model import GpuRequest, Spec


class TorchRecord(TypedDict):
    version: str
    label: str
    variant: str
    wheel_version: str
    pin: str
    index: str
    pypi_default: bool


class GpuRecord(TypedDict, total=False):
    label: str
    capability: str
    via: str | None  # absent in a lock file where it was None (TOML has no null)


class TargetRecord(TypedDict, total=False):
    origin: str
    driver: str | None
    gpus: list[GpuRecord]


class SourcesRecord(TypedDict):
    build: str
    archs: str


class _ResolutionRecordKeys(TypedDict):
    name: str
    python: str
    torch: TorchRecord
    target: TargetRecord
    knowledge_version: str
    sources: SourcesRecord


class ResolutionRecord(_ResolutionRecordKeys, total=False):
    """A resolution as the lock keeps it (`Resolution.record`). The optional keys are None in a
    fresh record and absent from one read back from reprobuild.lock (TOML has no null): read
    them with .get()."""

    cuda: str | None
    cuda_runtime: str | None
    cudnn: str | None
    nccl: str | None
    archs: list[str] | None
    min_driver: str | None
    toolkit_driver: str | None
    companions: list[CompanionRecord]  # absent from locks made before companions were paired
    platform: str  # absent for linux/amd64, so the locks of amd64 images read as before


@dataclass(frozen=True)
class Request:
    """What a build is judged against: the spec's choices plus the target."""

    python: str | None  # None: Python is not in question (the doctor judges a host)
    cuda: CudaVersion | None
    variant: str | None
    target: Target
    companions: tuple[Requirement, ...] = ()  # as the spec names them: each must pair

    @classmethod
    def of(cls, spec: Spec, target: Target, knowledge: Knowledge) -> Request:
        variant = spec.torch_variant if spec.torch_variant != "cpu" else None
        return cls(spec.python, spec.cuda, variant, target, named(spec, knowledge))


@dataclass(frozen=True)
class GpuCoverage:
    gpu: GpuRequest
    via: Arch | None


@dataclass(frozen=True)
class Verdict:
    build: TorchBuild
    rejections: tuple[str, ...]
    notes: tuple[str, ...]
    coverage: tuple[GpuCoverage, ...]
    unpaired: tuple[str, ...] = ()  # the rejections by a companion the spec names (also above)

    @property
    def eligible(self) -> bool:
        return not self.rejections

    @property
    def fits_but_for_companions(self) -> bool:
        return bool(self.rejections) and self.rejections == self.unpaired


@dataclass(frozen=True)
class Resolution:
    name: str
    python: str
    build: TorchBuild
    target: Target
    min_driver: DriverVersion | None
    toolkit_driver: DriverVersion | None
    coverage: tuple[GpuCoverage, ...]
    notes: tuple[str, ...]
    verdicts: tuple[Verdict, ...]
    knowledge_version: str
    companions: tuple[Pairing, ...] = ()
    platform: str = AMD64

    @property
    def pin(self) -> str:
        return f"torch=={self.build.wheel_version}"

    def record(self) -> ResolutionRecord:
        """What the lock keeps of the resolution: the choice and its facts, not the candidates
        or the notes. Keys in this order: the lock file is written in it."""
        build = self.build
        record: ResolutionRecord = {
            "name": self.name,
            "python": self.python,
            "torch": {
                "version": str(build.torch),
                "label": build.label,
                "variant": build.variant,
                "wheel_version": build.wheel_version,
                "pin": self.pin,
                "index": build.index,
                "pypi_default": build.pypi_default,
            },
            "cuda": _text(build.cuda),
            "cuda_runtime": build.cuda_runtime,
            "cudnn": build.cudnn,
            "nccl": build.nccl,
            "archs": None if build.archs is None else [str(arch) for arch in build.archs],
            "min_driver": _text(self.min_driver),
            "toolkit_driver": _text(self.toolkit_driver),
            "companions": [pairing.record() for pairing in self.companions],
            "target": {
                "origin": self.target.origin,
                "driver": _text(self.target.driver),
                "gpus": [
                    {"label": c.gpu.label, "capability": str(c.gpu.capability), "via": _text(c.via)}
                    for c in self.coverage
                ],
            },
            "knowledge_version": self.knowledge_version,
            "sources": {"build": build.source, "archs": build.archs_source},
        }
        if self.platform != AMD64:
            record["platform"] = self.platform
        return record

    def to_dict(self) -> dict[str, Any]:
        """`resolve --json`: the record with its platform, the notes before the knowledge
        version and every candidate's verdict last."""
        record: dict[str, Any] = dict(self.record())
        record.pop("platform", None)
        tail = {key: record.pop(key) for key in ("knowledge_version", "sources")}
        head = {key: record.pop(key) for key in ("name", "python")}
        return {
            **head,
            "platform": self.platform,
            **record,
            "notes": list(self.notes),
            **tail,
            "candidates": [
                {
                    "label": verdict.build.label,
                    "eligible": verdict.eligible,
                    "chosen": verdict.build == self.build,
                    "rejections": list(verdict.rejections),
                }
                for verdict in self.verdicts
            ],
        }


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


_ANY = Version("0")


def preference(build: TorchBuild) -> tuple[Version, bool, tuple[int, int], Version]:
    """CUDA builds: PyPI's first, then the newest CUDA, then the newest torch. A CPU build is the
    same build whichever index serves it, so the newest release comes first (PyPI's aarch64 CPU
    wheels end at 2.10, the cpu index's go on), PyPI's own ahead of the cpu index's copy."""
    cuda = (build.cuda.major, build.cuda.minor) if build.cuda else (0, 0)
    return (build.torch if build.is_cpu else _ANY, build.pypi_default, cuda, build.torch)


def candidates(spec: Spec, knowledge: Knowledge, platform: str = AMD64) -> list[TorchBuild]:
    """Builds of the allowed releases on the platform, of the right kind (CPU or CUDA), best
    first."""
    allowed = [
        build
        for build in knowledge.builds_on(platform)
        if spec.torch.contains(build.torch) and build.is_cpu == spec.cpu_only
    ]
    return sorted(allowed, key=preference, reverse=True)


def judge(build: TorchBuild, request: Request, knowledge: Knowledge) -> Verdict:
    """Every reason this build cannot serve the request, plus notes on how it would run."""
    verdict = _judge_build(build, request, knowledge)
    companions = tuple(unpaired(request.companions, build, knowledge))
    return replace(verdict, rejections=verdict.rejections + companions, unpaired=companions)


def _judge_build(build: TorchBuild, request: Request, knowledge: Knowledge) -> Verdict:
    rejections: list[str] = []
    notes: list[str] = []
    if request.python is not None and request.python not in build.pythons:
        rejections.append(
            f"no wheel for Python {request.python} (wheels for {', '.join(build.pythons)})"
        )
    if request.variant is not None and build.variant != request.variant:
        rejections.append(f"+{build.variant} build; the spec asks for +{request.variant}")
    elif request.cuda is not None and build.cuda != request.cuda:
        rejections.append(f"CUDA {build.cuda} build; the spec asks for CUDA {request.cuda}")
    if build.cuda is None:
        return Verdict(build, tuple(rejections), tuple(notes), ())
    _judge_driver(build.cuda, request.target.driver, knowledge, rejections, notes)
    covered = _judge_gpus(build, request.target, knowledge, rejections, notes)
    return Verdict(build, tuple(rejections), tuple(notes), covered)


def _judge_driver(
    cuda: CudaVersion,
    driver: DriverVersion | None,
    knowledge: Knowledge,
    rejections: list[str],
    notes: list[str],
) -> None:
    family = knowledge.family(cuda)
    if family is None:
        rejections.append(f"the knowledge base has no driver floor for CUDA {cuda.major}.x")
        return
    if driver is None:
        return
    if driver < family.min_driver:
        rejections.append(
            f"CUDA {cuda} needs driver >= {family.min_driver}; the target driver is {driver}"
        )
        return
    toolkit = knowledge.toolkit_driver(cuda)
    if toolkit is not None and driver < toolkit:
        notes.append(
            f"runs under CUDA minor-version compatibility: driver {driver} is older than "
            f"{toolkit} of the CUDA {cuda} toolkit, so JIT of newer PTX is unavailable"
        )


def _judge_gpus(
    build: TorchBuild,
    target: Target,
    knowledge: Knowledge,
    rejections: list[str],
    notes: list[str],
) -> tuple[GpuCoverage, ...]:
    if not target.gpus:
        return ()
    if build.archs is None:
        rejections.append(
            "its compiled GPU architectures are not measured yet, so it cannot be promised to "
            "run on " + ", ".join(gpu_label(gpu) for gpu in target.gpus)
        )
        return ()
    covered = []
    toolkit = knowledge.toolkit_driver(build.cuda) if build.cuda else None
    for gpu in target.gpus:
        found = coverage(build.archs, gpu.capability)
        covered.append(GpuCoverage(gpu, found.via))
        label = gpu_label(gpu)
        if found.via is None:
            rejections.append(f"no kernels for {label}: built for {arch_summary(build)}")
        elif found.needs_jit:
            if target.driver is not None and toolkit is not None and target.driver < toolkit:
                rejections.append(
                    f"{label} has no cubin; JIT from {found.via} PTX needs driver >= {toolkit}"
                )
            else:
                notes.append(f"{label} has no cubin and JIT-compiles {found.via} PTX at first use")
        elif found.via.capability != gpu.capability:
            notes.append(f"{label} runs the {found.via} cubins (same major, lower minor)")
    return tuple(covered)


def arch_summary(build: TorchBuild) -> str:
    if build.archs is None:
        return "(not measured)"
    return " ".join(str(arch) for arch in build.archs) or "no GPU"


def resolve(spec: Spec, target: Target, knowledge: Knowledge, platform: str = AMD64) -> Resolution:
    """Choose one build for the image platform, or raise ResolutionError explaining every
    rejection and the way out."""
    pool = candidates(spec, knowledge, platform)
    if not pool:
        raise ResolutionError(_no_build_message(spec, knowledge, platform))
    target, left_out = _on_platform(target, platform, knowledge)
    request = Request.of(spec, target, knowledge)
    verdicts = tuple(judge(build, request, knowledge) for build in pool)
    eligible = [verdict for verdict in verdicts if verdict.eligible]
    if not eligible:
        unpaired_only = [verdict for verdict in verdicts if verdict.fits_but_for_companions]
        if len({verdict.build.torch for verdict in unpaired_only}) == 1:
            # One torch release fits but for a companion: that pair's own error says the fix.
            pairings(request.companions, spec.python, unpaired_only[0].build, knowledge)
        raise ResolutionError(_nothing_qualifies(spec, request, verdicts, knowledge, platform))
    chosen = eligible[0]
    build = chosen.build
    family = knowledge.family(build.cuda) if build.cuda else None
    notes = [*left_out, *_off_pypi(build, verdicts, request, knowledge), *chosen.notes]
    if target.origin == "none" and build.cuda is not None:
        notes.append(
            "no [target] in the spec: the image runs on drivers >= "
            f"{family.min_driver if family else '?'} and GPUs with {arch_summary(build)}"
        )
    return Resolution(
        name=spec.name,
        python=spec.python,
        build=build,
        target=target,
        min_driver=family.min_driver if family else None,
        toolkit_driver=knowledge.toolkit_driver(build.cuda) if build.cuda else None,
        coverage=chosen.coverage,
        notes=tuple(notes),
        verdicts=verdicts,
        knowledge_version=knowledge.version,
        companions=pairings(request.companions, spec.python, build, knowledge),
        platform=platform,
    )


def _off_pypi(
    build: TorchBuild, verdicts: tuple[Verdict, ...], request: Request, knowledge: Knowledge
) -> list[str]:
    """Why a CUDA build the spec did not ask for by variant or CUDA version comes from a variant
    index: PyPI's build of its release does not fit, or PyPI has none for the platform."""
    if build.pypi_default or build.is_cpu or request.variant or request.cuda:
        return []
    instead = f"{build.label} comes from {build.index}"
    for verdict in verdicts:
        if verdict.build.pypi_default and verdict.build.torch == build.torch:
            why = "; ".join(verdict.rejections)
            return [f"PyPI's {verdict.build.label} does not fit ({why}): {instead}"]
    found = f"torch {build.torch} has no CUDA build for {build.platform} on PyPI"
    on_pypi = [b for b in knowledge.builds_on(build.platform) if b.pypi_default and not b.is_cpu]
    later = _first_later(on_pypi, build.torch)
    return [f"{found}{f' ({later} has one)' if later else ''}: {instead}"]


def _first_later(builds: list[TorchBuild], after: Version) -> str | None:
    """The first of `builds` released after `after`, as "torch >= 2.11 with CUDA 13.0"."""
    later = [b for b in builds if b.torch > after]
    if not later:
        return None
    first = _oldest(later)
    cuda = f" with CUDA {first.cuda}" if first.cuda else ""
    return f"torch >= {_series(first.torch)}{cuda}"


def resolve_spec(spec: Spec, knowledge: Knowledge, platform: str = AMD64) -> Resolution:
    """`resolve` against the spec's own target (this host's, with `target.host = true`), for
    one image platform."""
    return resolve(spec, target.of_spec(spec.target), knowledge, platform)


def resolve_platforms(spec: Spec, knowledge: Knowledge) -> tuple[Resolution, ...]:
    """`resolve` for every platform of the spec, in its order, against one reading of its
    target."""
    found = target.of_spec(spec.target)
    return tuple(resolve(spec, found, knowledge, platform) for platform in spec.platforms)


def resolve_here(spec: Spec, knowledge: Knowledge) -> Resolution:
    """`resolve_spec` for the platform of this machine's CPU where the spec builds for it, else
    for the spec's first platform: the image `doctor` judges against this host."""
    here = machine_platform(host.machine())
    return resolve_spec(spec, knowledge, here if here in spec.platforms else spec.platforms[0])


def _on_platform(target: Target, platform: str, knowledge: Knowledge) -> tuple[Target, list[str]]:
    """The target without the GPUs whose machine runs another platform, and a note naming
    them."""
    elsewhere = []
    for gpu in target.gpus:
        model = gpu_model(gpu, target, knowledge)
        if model is not None and model.platform not in (None, platform):
            elsewhere.append((gpu, model.platform))
    if not elsewhere:
        return target, []
    kept = tuple(gpu for gpu in target.gpus if gpu not in {gpu for gpu, _ in elsewhere})
    notes = [
        f"{gpu_label(gpu)} runs {other} images only: left out of the {platform} target"
        for gpu, other in elsewhere
    ]
    return Target(target.driver, kept, target.origin), notes


def gpu_model(gpu: GpuRequest, target: Target, knowledge: Knowledge) -> GpuModel | None:
    """The knowledge base's model of a target GPU: a host's by the name NVML reports ("NVIDIA
    GH200 480GB"), a spec's by the name written."""
    if target.origin == "host":
        return knowledge.gpu_reported(gpu.label, gpu.capability)
    return knowledge.gpu_named(gpu.label)


def _no_build_message(spec: Spec, knowledge: Knowledge, platform: str) -> str:
    """Why no build of the asked kind matches: a platform whose builds of these releases are
    all of the other kind (PyPI's aarch64 wheels up to 2.10 are CPU-only), else no release."""
    on_platform = [b for b in knowledge.builds_on(platform) if spec.torch.contains(b.torch)]
    if on_platform:
        return _other_kind_message(spec, knowledge, platform, on_platform)
    return _no_release_message(spec, knowledge, platform)


def _other_kind_message(
    spec: Spec, knowledge: Knowledge, platform: str, matching: list[TorchBuild]
) -> str:
    kind = "CPU" if spec.cpu_only else "CUDA"
    of_kind = [b for b in knowledge.builds_on(platform) if b.is_cpu == spec.cpu_only]
    where = "on PyPI" if {b.index for b in of_kind} == {PYPI} else "in the knowledge base"
    found = f"{_asked(spec)} has no {kind} build for {platform} {where}"
    newest = max(b.torch for b in matching)
    later = _first_later(of_kind, newest)
    earlier = [b for b in of_kind if b.torch < newest]
    if later:
        return f"{found}; {later} has one."
    if earlier:
        last = max(earlier, key=lambda b: b.torch)
        return f"{found}; torch {last.torch} ({last.label}) is the newest release with one."
    return f"{found}; the knowledge base has no {kind} build for {platform}."


def _asked(spec: Spec) -> str:
    """The spec's torch as a sentence names it: "torch 2.10" for "2.10.*"."""
    text = spec.torch_text.removeprefix("==")
    if text.endswith(".*") and text[:1].isdigit():
        return f"torch {text.removesuffix('.*')}"
    return f"torch {text}" if text[:1].isdigit() else f"torch '{text}'"


def _series(version: Version) -> str:
    return f"{version.major}.{version.minor}" if version.micro == 0 else str(version)


def _no_release_message(spec: Spec, knowledge: Knowledge, platform: str) -> str:
    releases = sorted({b.torch for b in knowledge.builds_on(platform) if b.is_cpu == spec.cpu_only})
    newest = releases[-1]
    newer = _admits_newer(spec, newest)
    exact = _exact_version(spec)
    series = []
    if exact is not None and not newer and exact not in knowledge.releases_of_torch(platform):
        series = [v for v in releases if v.release[:2] == exact.release[:2]]
    if exact is not None and series:
        name = f"{exact.major}.{exact.minor}"
        listed = _and([str(version) for version in series])
        if len(series) > 1:
            which, pin = f"the {name} releases are {listed}", "Pin one of them"
        else:
            which, pin = f"the only {name} release is {listed}", "Pin it"
        return (
            f"torch {exact} is not a release: {which}. {pin}, or write torch = "
            f'"{name}.*" for the newest {name} build that fits.'
        )
    kind = "CPU" if spec.cpu_only else "CUDA"
    text = spec.torch_text
    hint = ""
    if text.count(".") == 1 and text[0].isdigit():
        wildcard = SpecifierSet(f"=={text}.*")
        if newer or any(wildcard.contains(version) for version in releases):
            hint = f' "{text}" means =={text} exactly; did you mean "{text}.*"?'
    known = f"{kind} builds for {platform} of torch" if _names_platform(spec, platform) else "torch"
    found = (
        f"no {kind} build of a torch release matching '{text}' is in the knowledge base, which "
        f"knows {known} {releases[0]} to {newest} (version {knowledge.version}).{hint}"
    )
    if newer:
        return (
            f"{found} If the release came out after {newest}, run `reprobuild knowledge refresh` "
            "to read the releases since."
        )
    return f"{found} Choose a release in that range; `reprobuild knowledge show` lists them."


def _names_platform(spec: Spec, platform: str) -> bool:
    """Whether an error names the platform: unless the image is for linux/amd64 alone."""
    return platform != AMD64 or spec.platforms != (AMD64,)


def _exact_version(spec: Spec) -> Version | None:
    """The one version the spec pins (`2.5.9`, `==2.5.9`, `2.5.9+cu121`); None for a range."""
    specifiers = list(spec.torch)
    if len(specifiers) != 1:
        return None
    only = specifiers[0]
    if only.operator not in ("==", "===") or only.version.endswith("*"):
        return None
    try:
        return Version(only.version)
    except InvalidVersion:
        return None


def _admits_newer(spec: Spec, newest: Version) -> bool:
    """Whether the spec allows a release newer than any the knowledge base knows: only then can
    a refresh of the knowledge base find it."""
    probes = {Version(f"{newest.major}.{newest.minor}.{newest.micro + 1}")}
    probes |= {Version(f"{newest.major}.{newest.minor + 1}.0"), Version(f"{newest.major + 1}.0")}
    probes.add(Version("9999"))
    for specifier in spec.torch:
        try:
            probes.add(Version(specifier.version.removesuffix(".*")))
        except InvalidVersion:
            continue
    return any(probe > newest and spec.torch.contains(probe) for probe in probes)


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _nothing_qualifies(
    spec: Spec,
    request: Request,
    verdicts: tuple[Verdict, ...],
    knowledge: Knowledge,
    platform: str,
) -> str:
    on = f" for {platform}" if _names_platform(spec, platform) else ""
    lines = [
        f"no torch build{on} matching '{spec.torch_text}' fits Python {spec.python} and the "
        f"target ({request.target.describe()}). Each candidate and what rejected it:"
    ]
    width = max(len(verdict.build.label) for verdict in verdicts)
    for verdict in verdicts:
        lines.append(f"  {verdict.build.label:<{width}}  {'; '.join(verdict.rejections)}")
    alternatives = suggestions(spec, request, knowledge, platform)
    if alternatives:
        lines.append("What would work instead:")
        lines.extend(f"  - {text}" for text in alternatives)
    return "\n".join(lines)


def suggestions(
    spec: Spec, request: Request, knowledge: Knowledge, platform: str = AMD64
) -> list[str]:
    """Concrete ways out on the platform: releases that cover each GPU, driver upgrades, the
    best other build."""
    kind_builds = [b for b in knowledge.builds_on(platform) if b.is_cpu == spec.cpu_only]
    found: list[str] = []
    relaxed = Request(request.python, None, None, request.target, request.companions)
    for gpu in request.target.gpus:
        # Python and driver are judged on their own lines: this one names kernels only.
        solo = Request(None, None, None, Target(None, (gpu,), request.target.origin))
        covering = [b for b in kind_builds if judge(b, solo, knowledge).eligible]
        if covering and not any(spec.torch.contains(b.torch) for b in covering):
            first = _oldest(covering)
            found.append(
                f"torch >= {first.torch} with CUDA {first.cuda} ({first.label}) has kernels for "
                f"{gpu_label(gpu)}."
            )
    driver = request.target.driver
    if driver is not None:
        floors = sorted(
            {
                family.min_driver
                for build in kind_builds
                if spec.torch.contains(build.torch)
                and build.cuda is not None
                and (family := knowledge.family(build.cuda)) is not None
            }
        )
        if floors and floors[0] > driver:
            found.append(
                f"a target driver >= {floors[0]} runs the CUDA builds of '{spec.torch_text}'."
            )
    pythons = sorted(
        {p for b in kind_builds if spec.torch.contains(b.torch) for p in b.pythons},
        key=lambda p: tuple(int(x) for x in p.split(".")),
    )
    if pythons and request.python is not None and request.python not in pythons:
        found.append(f"torch '{spec.torch_text}' has wheels for Python {', '.join(pythons)}.")
        wheels = [b for b in kind_builds if request.python in b.pythons]
        if wheels:
            first = _oldest(wheels)
            found.append(f"torch >= {first.torch} has wheels for Python {request.python}.")
    best = [b for b in kind_builds if judge(b, relaxed, knowledge).eligible]
    if best:
        top = max(best, key=preference)
        found.append(
            f"torch=={top.torch} ({top.label}) satisfies everything but the torch/CUDA pin."
        )
    return found


def _oldest(builds: list[TorchBuild]) -> TorchBuild:
    return min(builds, key=lambda b: (b.torch, b.cuda or CudaVersion(0, 0)))
