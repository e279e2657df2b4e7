"""What a repository's own files say its spec should be: the packages and where they come from,
torch's version, Python, the image name, CUDA, and the target, each with the place it was read.

The packages come from the first of these that has some: `pyproject.toml`'s
`[project].dependencies`, `setup.cfg`'s `install_requires`, the requirements files, the `pip:`
section of `environment.yml`. `--group NAME` adds a dependency group, an optional dependency or a
`requirements-NAME.txt` of that same source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from builder.compat import ComputeCapability, CudaVersion, DriverVersion
from builder.errors import HostError, InitError
from builder.knowledge import AMD64, Knowledge, marker_environment
from builder.reference import name_problem
from builder.spec.sources import (
    Aside,
    CondaEnvironment,
    CondaPackage,
    Listed,
    Origin,
    Pyproject,
    SetupCfg,
    group_key,
    read_environment,
    read_pyproject,
    read_requirements,
    read_setup_cfg,
    read_text,
    requirement,
)

TORCH_FAMILY = ("torchvision", "torchaudio", "triton")
DEFAULT_PYTHON = "3.11"
ENVIRONMENT_FILES = ("environment.yml", "environment.yaml")
MAIN_REQUIREMENTS = (
    "requirements.txt",
    "requirements/base.txt",
    "requirements/main.txt",
    "requirements/prod.txt",
    "requirements/train.txt",
)
# conda packages the spec takes in its own keys, and conda's own tools.
CONDA_SPEC_KEYS = {"python", "pip", "pytorch", "pytorch-cuda", "cudatoolkit", "cuda-version"}
CONDA_CUDA = ("pytorch-cuda", "cudatoolkit", "cuda-version")
_PYTHON_VERSION = re.compile(r"^(?:cpython-|python)?(3\.\d{1,2})(\.\d+)?(?:[.\-\s]|$)")
_OPERATOR_ORDER = ("===", "==", "~=", ">=", ">", "!=", "<=", "<")


@dataclass(frozen=True)
class Value:
    """A spec value and where it came from, as a comment says it."""

    text: str
    why: str


@dataclass(frozen=True)
class InitRequest:
    """What `init` was asked beyond the repository: groups to add and where the image runs."""

    groups: tuple[str, ...] = ()
    host: bool = False
    gpus: tuple[str, ...] = ()
    driver: str | None = None


@dataclass(frozen=True)
class TargetFinding:
    driver: Value | None
    gpus: tuple[Value, ...]
    why: str


@dataclass(frozen=True)
class PackageSource:
    """The packages the image installs besides torch, and what they were read from."""

    describe: str
    listed: tuple[Listed, ...]
    files: tuple[str, ...]
    asides: tuple[Aside, ...] = ()
    requirements_file: str | None = None  # one requirements file the spec can point at


@dataclass(frozen=True)
class Findings:
    name: Value
    python: Value
    torch: Value
    cuda: Value | None
    cpu_only: Value | None
    packages: PackageSource
    read: tuple[str, ...]
    family: tuple[Listed, ...]
    conda_only: tuple[CondaPackage, ...]
    unused: tuple[str, ...]
    target: TargetFinding | None

    @property
    def requirements(self) -> str | None:
        return self.packages.requirements_file

    @property
    def package_lines(self) -> tuple[Listed, ...]:
        """What `packages` lists: every requirement but torch's, whose version is `torch`."""
        return tuple(item for item in self.packages.listed if item.name != "torch")


@dataclass(frozen=True)
class _TorchSources:
    """What torch's version is read from: the packages' torch lines, conda's pytorch, and the
    line naming a PyTorch index, if any."""

    listed: tuple[Listed, ...]
    conda: tuple[CondaPackage, ...]
    index: Aside | None


@dataclass(frozen=True)
class _PinnedPython:
    value: Value
    full_version: str  # for python_full_version markers: the patch the file names, else .0


@dataclass(frozen=True)
class _RequiresPython:
    specifier: SpecifierSet
    described: str  # "pyproject.toml's requires-python '>=3.9'"


@dataclass(frozen=True)
class _Repository:
    """The files read, each parsed once."""

    pyproject: Pyproject | None
    setup_cfg: SetupCfg | None
    requirement_files: tuple[str, ...]
    environment: CondaEnvironment | None
    environment_file: str | None


def discover(project: Path, request: InitRequest, knowledge: Knowledge) -> Findings:
    """Read the repository's dependency files and infer a spec, each value with its origin."""
    repository = _read(project)
    source = _package_source(project, repository, request.groups)
    conda = repository.environment.conda if repository.environment else ()
    index = next((aside for aside in source.asides if aside.variant is not None), None)
    python, torch = _python_and_torch(
        project, repository, _TorchSources(source.listed, conda, index), knowledge
    )
    cuda, cpu_only = _build(torch, index, conda)
    if cpu_only is not None and (request.host or request.gpus or request.driver):
        raise InitError(
            "--host, --gpus and --driver name where a GPU image runs, but torch is a CPU build "
            f"({cpu_only.why}); leave them out, or name a CUDA build of torch."
        )
    env_files = (repository.environment_file,) if repository.environment_file else ()
    python_file = (".python-version",) if (project / ".python-version").is_file() else ()
    read = tuple(dict.fromkeys((*source.files, *env_files, *python_file)))
    return Findings(
        name=_name(project, repository),
        python=python,
        torch=torch,
        cuda=cuda,
        cpu_only=cpu_only,
        packages=source,
        read=read,
        family=tuple(item for item in source.listed if item.name in TORCH_FAMILY),
        conda_only=_conda_only(conda, source.listed),
        unused=tuple(f for f in repository.requirement_files if f not in source.files),
        target=_target(request, knowledge),
    )


def _read(project: Path) -> _Repository:
    environment_file = next((f for f in ENVIRONMENT_FILES if (project / f).is_file()), None)
    return _Repository(
        pyproject=read_pyproject(project) if (project / "pyproject.toml").is_file() else None,
        setup_cfg=read_setup_cfg(project) if (project / "setup.cfg").is_file() else None,
        requirement_files=_requirement_files(project),
        environment=read_environment(project, environment_file) if environment_file else None,
        environment_file=environment_file,
    )


def _requirement_files(project: Path) -> tuple[str, ...]:
    found = [
        *project.glob("requirements.txt"),
        *project.glob("requirements[-_]*.txt"),
        *project.glob("requirements/*.txt"),
    ]
    return tuple(sorted(path.relative_to(project).as_posix() for path in found if path.is_file()))


# The packages.


def _package_source(
    project: Path, repository: _Repository, groups: tuple[str, ...]
) -> PackageSource:
    pyproject, setup_cfg = repository.pyproject, repository.setup_cfg
    if pyproject is not None and (pyproject.dependencies or _names_any(groups, pyproject.groups)):
        return _with_groups(
            "pyproject.toml [project].dependencies",
            pyproject.dependencies or (),
            pyproject.groups,
            groups,
            "pyproject.toml",
        )
    if setup_cfg is not None and (
        setup_cfg.install_requires or _names_any(groups, setup_cfg.extras)
    ):
        return _with_groups(
            "setup.cfg [options] install_requires",
            setup_cfg.install_requires,
            setup_cfg.extras,
            groups,
            "setup.cfg",
        )
    if repository.requirement_files:
        return _requirements_source(project, repository.requirement_files, groups)
    environment = repository.environment
    if environment is not None and repository.environment_file is not None:
        listed = (*environment.pip, *_conda_companions(environment.conda))
        source = PackageSource(
            f"{repository.environment_file} (its pip section)",
            tuple(listed),
            (repository.environment_file, *environment.included),
            environment.pip_asides,
        )
        return _without_groups(source, groups)
    return _without_groups(PackageSource("no dependency file found", (), ()), groups)


def _names_any(groups: tuple[str, ...], available: dict[str, tuple[Listed, ...]]) -> bool:
    return any(group_key(group) in available for group in groups)


def _with_groups(
    describe: str,
    base: tuple[Listed, ...],
    available: dict[str, tuple[Listed, ...]],
    groups: tuple[str, ...],
    file: str,
) -> PackageSource:
    listed = list(base)
    for group in groups:
        key = group_key(group)
        if key not in available:
            raise _unknown_group(group, file, sorted(available))
        listed += available[key]
    named = "".join(f" and group {group}" for group in groups)
    return PackageSource(f"{describe}{named}", _unique(listed), (file,))


def _without_groups(source: PackageSource, groups: tuple[str, ...]) -> PackageSource:
    if groups:
        raise InitError(
            f"--group {groups[0]}: there is no group to add (packages: {source.describe}); init "
            "adds pyproject.toml's dependency groups and extras, setup.cfg's extras and "
            "requirements-NAME.txt files. Leave out --group."
        )
    return source


def _unknown_group(group: str, where: str, available: list[str]) -> InitError:
    known = f"it has {', '.join(available)}" if available else "it has none"
    return InitError(
        f"--group {group}: {where} has no dependency group, extra or requirements file of that "
        f"name ({known}); name one of those, or leave --group out."
    )


def _unique(listed: list[Listed]) -> tuple[Listed, ...]:
    """Each requirement text once (a group may repeat the base's), first place first."""
    first: dict[str, Listed] = {}
    for item in listed:
        first.setdefault(item.text, item)
    return tuple(first.values())


def _requirements_source(
    project: Path, files: tuple[str, ...], groups: tuple[str, ...]
) -> PackageSource:
    main = next((f for f in MAIN_REQUIREMENTS if f in files), None)
    if main is None and len(files) == 1:
        main = files[0]
    chosen = [main] if main else []
    for group in groups:
        named = _group_file(group, files)
        if named is None:
            raise _unknown_group(group, "the requirements files", list(files))
        chosen.append(named)
    if not chosen:
        raise InitError(
            f"found {', '.join(files)} but none is requirements.txt or requirements/base.txt, "
            "main.txt, prod.txt or train.txt; name the one the image needs with --group "
            "(e.g. --group gpu for requirements-gpu.txt)."
        )
    chosen = list(dict.fromkeys(chosen))
    read = read_requirements(project, chosen)
    pointable = len(chosen) == 1 and all(aside.portable for aside in read.asides)
    return PackageSource(
        " and ".join(chosen),
        _unique(list(read.listed)),
        read.files,
        read.asides,
        requirements_file=chosen[0] if pointable else None,
    )


def _group_file(group: str, files: tuple[str, ...]) -> str | None:
    key = group_key(group)
    for file in files:
        stem = Path(file).stem
        plain = stem if file.startswith("requirements/") else stem[len("requirements") + 1 :]
        if file != "requirements.txt" and group_key(plain) == key:
            return file
    return None


def _conda_companions(conda: tuple[CondaPackage, ...]) -> list[Listed]:
    """torchvision and torchaudio from conda are the same distributions on PyPI."""
    return [
        requirement(f"{package.name}{package.version}", package.origin)
        for package in conda
        if package.name in TORCH_FAMILY
    ]


def _conda_only(
    conda: tuple[CondaPackage, ...], listed: tuple[Listed, ...]
) -> tuple[CondaPackage, ...]:
    named = {item.name for item in listed}
    return tuple(
        package
        for package in conda
        if package.name not in CONDA_SPEC_KEYS and package.name.replace("_", "-") not in named
    )


# torch, Python, CUDA, the name.


def _torch(sources: _TorchSources, full_version: str, knowledge: Knowledge) -> Value:
    """torch's version as the files give it for this Python (`python_full_version`, "3.10.13")."""
    lines = [
        item for item in sources.listed if item.name == "torch" and _on_linux(item, full_version)
    ]
    specifiers = [spec for item in lines for spec in item.requirement.specifier]
    origin = lines[0].origin if lines else None
    written = ", ".join(item.text for item in lines)
    conda_torch = next((package for package in sources.conda if package.name == "pytorch"), None)
    if not specifiers and conda_torch is not None and conda_torch.version:
        specifiers = list(SpecifierSet(conda_torch.version))
        origin, written = conda_torch.origin, conda_torch.written
    if specifiers:
        return Value(torch_text(specifiers), f"{origin}: {written}")
    return _newest_series(sources.index.variant if sources.index else None, origin, knowledge)


def _newest_series(variant: str | None, origin: Origin | None, knowledge: Knowledge) -> Value:
    """The newest release series, of those with a build of `variant` when an index names one."""
    releases = [
        release
        for release in knowledge.releases_of_torch(AMD64)
        if variant is None
        or any(b.variant == variant for b in knowledge.builds_for(release, AMD64))
    ]
    newest = releases[-1] if releases else knowledge.releases_of_torch(AMD64)[-1]
    of = f" a {variant} build of" if variant is not None and releases else ""
    unpinned = f"{origin} leaves torch unpinned" if origin else "no file names torch"
    return Value(
        f"{newest.major}.{newest.minor}.*",
        f"the newest torch release series the knowledge base has{of}; {unpinned}",
    )


def _on_linux(item: Listed, full_version: str) -> bool:
    marker: Marker | None = item.requirement.marker
    if marker is None:
        return True
    return marker.evaluate(marker_environment(AMD64, full_version))


def torch_text(specifiers: list[Specifier]) -> str:
    """The spec's `torch` for these specifiers: `2.5.1+cu121` for one exact pin, `2.5.*` for one
    wildcard, else the specifiers lower bound first (`>=2.1,<2.6`)."""
    unique = sorted(
        set(specifiers), key=lambda spec: (_OPERATOR_ORDER.index(spec.operator), spec.version)
    )
    if len(unique) == 1 and unique[0].operator == "==":
        return unique[0].version
    return ",".join(str(spec) for spec in unique)


def torch_pythons(text: str, knowledge: Knowledge) -> list[str]:
    """The Pythons some build of the torch releases `text` admits has wheels for, oldest first."""
    try:
        admitted = SpecifierSet(f"=={Version(text).public}")
    except InvalidVersion:
        admitted = SpecifierSet(f"=={text}" if text[:1].isdigit() else text)
    found = {
        python
        for build in knowledge.builds_on(AMD64)
        if admitted.contains(build.torch, prereleases=True)
        for python in build.pythons
    }
    return sorted(found, key=Version)


def _python_and_torch(
    project: Path, repository: _Repository, sources: _TorchSources, knowledge: Knowledge
) -> tuple[Value, Value]:
    """Python first where a file pins it, and torch as the files give it for that Python; else
    the Python whose own torch (its markers evaluated for it) has wheels for it."""
    pinned = _python_version_file(project) or _conda_python(repository.environment)
    if pinned is not None:
        return pinned.value, _torch(sources, pinned.full_version, knowledge)
    requires = _requires_python(repository)
    if requires is not None:
        admitted = _python_from_torch(sources, requires, knowledge)
        if admitted is not None:
            python, torch = admitted
            why = (
                f"the newest Python that {requires.described} admits and torch {torch.text} "
                "has wheels for"
            )
            return Value(python, why), torch
    python, torch = _python_from_torch(sources, None, knowledge) or (
        DEFAULT_PYTHON,
        _torch(sources, f"{DEFAULT_PYTHON}.0", knowledge),
    )
    return Value(python, _why_not_admitted(python, torch, requires)), torch


def _why_not_admitted(python: str, torch: Value, requires: _RequiresPython | None) -> str:
    """Why a Python that no requires-python chose: the default, or torch's newest."""
    if python != DEFAULT_PYTHON:
        why = f"the newest Python torch {torch.text} has wheels for"
    elif requires is None:
        return "the default Python: no file names a version"
    else:
        why = "the default Python"
    if requires is None:
        return why
    return f"{why}, as {requires.described} admits no Python that torch {torch.text} has wheels for"


def _python_from_torch(
    sources: _TorchSources, requires: _RequiresPython | None, knowledge: Knowledge
) -> tuple[str, Value] | None:
    """The first Python (the default, then the newest; with requires-python, the newest it
    admits) that the torch its files name for it has wheels for, with that torch."""
    known = sorted({p for build in knowledge.builds_on(AMD64) for p in build.pythons}, key=Version)
    if requires is None:
        candidates = [DEFAULT_PYTHON, *reversed(known)]
    else:
        candidates = [p for p in reversed(known) if requires.specifier.contains(p)]
    for python in candidates:
        torch = _torch(sources, f"{python}.0", knowledge)
        if python in torch_pythons(torch.text, knowledge):
            return python, torch
    return None


def _python_version_file(project: Path) -> _PinnedPython | None:
    path = project / ".python-version"
    if not path.is_file():
        return None
    for number, line in enumerate(read_text(path, ".python-version").splitlines(), start=1):
        pinned = _pinned(line.strip(), f"{Origin('.python-version', number)}: {line.strip()}")
        if pinned is not None:
            return pinned
    return None


def _conda_python(environment: CondaEnvironment | None) -> _PinnedPython | None:
    package = (
        next((p for p in environment.conda if p.name == "python"), None) if environment else None
    )
    if package is None or not package.version.startswith("=="):
        return None
    return _pinned(package.version[2:], f"{package.origin}: {package.written}")


def _pinned(written: str, why: str) -> _PinnedPython | None:
    match = _PYTHON_VERSION.match(written)
    if match is None:
        return None
    return _PinnedPython(Value(match.group(1), why), match.group(1) + (match.group(2) or ".0"))


def _requires_python(repository: _Repository) -> _RequiresPython | None:
    if repository.pyproject is not None and repository.pyproject.requires_python:
        text, file, key = repository.pyproject.requires_python, "pyproject.toml", "requires-python"
    elif repository.setup_cfg is not None and repository.setup_cfg.requires_python:
        text, file, key = repository.setup_cfg.requires_python, "setup.cfg", "python_requires"
    else:
        return None
    try:
        specifier = SpecifierSet(text)
    except InvalidSpecifier:
        raise InitError(
            f"{file}: {key} = {text!r} is not a PEP 440 version specifier; write one such as "
            "'>=3.10', then run `reprobuild init` again."
        ) from None
    return _RequiresPython(specifier, f"{file}'s {key} {text!r}")


def _build(
    torch: Value, index: Aside | None, conda: tuple[CondaPackage, ...]
) -> tuple[Value | None, Value | None]:
    """`cuda` and `cpu_only`: torch's own local tag decides, else a PyTorch index line, else the
    CUDA a conda environment asks for."""
    if "+" in torch.text:
        cpu = torch.text.endswith("+cpu")
        return None, _cpu_only(f"torch's +cpu build ({torch.why})") if cpu else None
    if index is not None and index.variant == "cpu":
        return None, _cpu_only(f"{index.origin}: {index.text} ({index.reason})")
    if index is not None and index.variant is not None:
        cuda = str(CudaVersion.from_variant(index.variant))
        return Value(cuda, f"{index.origin}: {index.text} ({index.reason})"), None
    return _conda_cuda(conda), None


def _cpu_only(why: str) -> Value:
    return Value("true", f"{why}: an image without CUDA")


def _conda_cuda(conda: tuple[CondaPackage, ...]) -> Value | None:
    """The CUDA a conda environment asks for."""
    for package in conda:
        match = re.match(r"^==(\d+\.\d+)", package.version)
        if package.name in CONDA_CUDA and match:
            return Value(match.group(1), f"{package.origin}: {package.written}")
    return None


def _name(project: Path, repository: _Repository) -> Value:
    declared = [
        (
            repository.pyproject.name if repository.pyproject else None,
            "pyproject.toml [project].name",
        ),
        (repository.setup_cfg.name if repository.setup_cfg else None, "setup.cfg [metadata] name"),
    ]
    for name, why in declared:
        if name:
            return Value(image_name(name), f"{why}: {name}")
    folder = project.resolve().name
    return Value(image_name(folder), f"the folder's name: {folder}")


def image_name(text: str) -> str:
    """`text` as an image name: lower case, each run of other characters one '-'."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return name if name and name_problem(name) is None else "project"


# The target.


def _target(request: InitRequest, knowledge: Knowledge) -> TargetFinding | None:
    if request.host:
        if request.gpus or request.driver:
            raise InitError(
                "--host reads the driver and GPUs from this machine; leave out --gpus and "
                "--driver, or leave out --host."
            )
        return _host_target(knowledge)
    if not request.gpus and request.driver is None:
        return None
    gpus = tuple(Value(_gpu_name(label, knowledge), f"--gpus {label}") for label in request.gpus)
    driver = (
        None
        if request.driver is None
        else Value(_driver(request.driver), f"--driver {request.driver}")
    )
    return TargetFinding(driver, _each_once(gpus), "from --gpus and --driver")


def _each_once(values: tuple[Value, ...]) -> tuple[Value, ...]:
    """Each GPU once (two names of one model, or a host's eight of a kind), first first."""
    first: dict[str, Value] = {}
    for value in values:
        first.setdefault(value.text, value)
    return tuple(first.values())


def _driver(text: str) -> str:
    try:
        return str(DriverVersion.parse(text))
    except ValueError:
        raise InitError(
            f"--driver {text!r} is not an NVIDIA driver version; give one such as 535.104.05 "
            "(`nvidia-smi` shows the host's)."
        ) from None


def _gpu_name(label: str, knowledge: Knowledge) -> str:
    try:
        return ComputeCapability.parse(label).sm
    except ValueError:
        pass
    model = knowledge.gpu_named(label)
    if model is not None:
        return model.name
    import difflib

    close = difflib.get_close_matches(label, knowledge.gpu_names(), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(name) for name in close)}? " if close else ""
    raise InitError(
        f'--gpus {label!r} is neither a compute capability ("sm_80", "8.6") nor a GPU the '
        f"knowledge base knows; {hint}`reprobuild knowledge gpus` lists the names."
    )


def _host_target(knowledge: Knowledge) -> TargetFinding:
    from builder.engine.host import probe_nvidia

    host = probe_nvidia()
    if host.problem is not None or host.driver is None or not host.gpus:
        reason = host.problem or "NVML lists no GPU."
        raise HostError(
            "--host reads this machine's driver and GPUs through NVML, which cannot here: "
            f"{reason} Run `reprobuild init --host` on the GPU machine, or give --gpus and "
            "--driver."
        )
    gpus = tuple(
        Value(host_gpu_name(gpu.name, gpu.capability, knowledge), f"GPU {gpu.index}: {gpu.name}")
        for gpu in host.gpus
    )
    driver = Value(str(host.driver), "this host's driver, read through NVML")
    return TargetFinding(driver, _each_once(gpus), "this host's, read through NVML")


def host_gpu_name(reported: str, capability: ComputeCapability, knowledge: Knowledge) -> str:
    """The knowledge base's name for a GPU as NVML reports it ("NVIDIA H100 80GB HBM3" is an
    H100), trying ever shorter leading words; its compute capability where none matches."""
    model = knowledge.gpu_reported(reported, capability)
    return capability.sm if model is None else model.name
