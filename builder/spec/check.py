"""Load and validate the project spec: `reprobuild.toml`, or `[tool.reprobuild]` in
`pyproject.toml`, into a `Spec` (spec.model).

Loading validates everything it can without the network: unknown keys (with a "did you mean"),
types, value formats, exclusive keys. All problems are collected and raised together as one
`SpecError`, so a user fixes the file in one pass.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from builder.codeset import Rules
from builder.compat import ComputeCapability, CudaVersion, DriverVersion
from builder.errors import SpecError
from builder.knowledge import AMD64, ARM64, PLATFORMS, GpuModel, Knowledge
from builder.reference import name_problem, well_formed
from builder.spec.file import has_spec, locate
from builder.spec.model import (
    BootstrapBase,
    Determinism,
    GpuRequest,
    LoadedSpec,
    Spec,
    TargetSpec,
)

CUBLAS_CONFIGS = (":4096:8", ":16:8")
CUDA_TOOLKITS = ("none", "devel")
_PYTHON = re.compile(r"^3\.\d{1,2}$")
_DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.\-]+(:[a-z0-9]+)?$")
_SNAPSHOT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_BOOTSTRAP = re.compile(r"^debian:[a-z]+$")

TOP_KEYS = (
    "name",
    "python",
    "torch",
    "cuda",
    "cpu_only",
    "cuda_toolkit",
    "requirements",
    "packages",
    "system_packages",
    "base",
    "target",
    "determinism",
    "exclude",
    "include",
    "platforms",
)
TARGET_KEYS = ("driver", "gpus", "host")
DETERMINISM_KEYS = ("seed", "tf32", "cublas_workspace_config")
BOOTSTRAP_KEYS = ("bootstrap", "snapshot", "mirror")


def load_spec(project: Path, knowledge: Knowledge) -> LoadedSpec:
    """Locate, parse and validate the spec of a project directory."""
    return loaded(*locate(project), knowledge)


def loaded(path: Path, table: dict[str, Any], notes: list[str], knowledge: Knowledge) -> LoadedSpec:
    """A spec table already located (`spec.file.locate`), validated."""
    spec, implied = _checked(table, path, knowledge)
    return LoadedSpec(spec, path, (*notes, *implied), table)


def parse(table: dict[str, Any], path: Path, knowledge: Knowledge) -> Spec:
    """Validate a spec table; raise one SpecError listing every problem."""
    return _checked(table, path, knowledge)[0]


def _checked(table: dict[str, Any], path: Path, knowledge: Knowledge) -> tuple[Spec, list[str]]:
    """The spec and the notes on what it implies; one SpecError listing every problem."""
    checker = _Checker(path, knowledge)
    spec = checker.spec(table)
    if checker.problems or spec is None:
        raise SpecError(str(path), checker.problems)
    return spec, checker.notes


def code_rules(project: Path) -> Rules:
    """The spec's `exclude` and `include`, checked as `load_spec` checks them (without the
    knowledge base it needs for the rest); none for a project without a spec."""
    if not has_spec(project):
        return Rules()
    path, table, _ = locate(project)
    checker = _Types(path)
    rules = Rules(checker.patterns(table, "exclude"), checker.patterns(table, "include"))
    if checker.problems:
        raise SpecError(str(path), checker.problems)
    return rules


class _Types:
    """The checks of a value's type and form, which need nothing but the table."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def unknown_keys(self, table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in table:
            if key in allowed:
                continue
            close = _close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = (
                f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}."
            )
            self.problem(f"unknown key '{where}{key}': {hint}")

    def typed(self, table: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
        value = table.get(key)
        if value is None:
            return None
        if kind is int and isinstance(value, bool):
            self.problem(f"'{where}{key}' must be an integer; got {value!r}.")
            return None
        if not isinstance(value, kind):
            self.problem(
                f"'{where}{key}' must be a {_type_name(kind)}; "
                f"got {_type_name(type(value))} {_show(value)}."
            )
            return None
        return value

    def string_list(self, table: dict[str, Any], key: str) -> list[str] | None:
        values: list[str] | None = self.typed(table, key, list)
        if values is None:
            return None
        bad = [value for value in values if not isinstance(value, str)]
        if bad:
            self.problem(f"'{key}' must be a list of strings; {_show(bad[0])} is not a string.")
            return None
        return values

    def patterns(self, table: dict[str, Any], key: str) -> tuple[str, ...]:
        """A list of gitignore-style patterns (`exclude`, `include`)."""
        values = self.string_list(table, key) or []
        if not values:
            return ()
        from pathspec import GitIgnoreSpec

        for value in values:
            try:
                GitIgnoreSpec.from_lines([value])
            except ValueError:
                self.problem(
                    f"'{key}' entry {value!r} is not a gitignore-style pattern (a lone '!' or a "
                    'trailing backslash?): write e.g. "data/", "*.ckpt" or "!data/sample.csv".'
                )
        return tuple(values)


class _Checker(_Types):
    def __init__(self, path: Path, knowledge: Knowledge) -> None:
        super().__init__(path)
        self.knowledge = knowledge
        self.notes: list[str] = []

    def spec(self, table: dict[str, Any]) -> Spec | None:
        self.unknown_keys(table, TOP_KEYS, "")
        name = self.name(table)
        python = self.python(table)
        torch = self.torch(table)
        cuda = self.cuda(table)
        cpu_only = self.typed(table, "cpu_only", bool) or False
        toolkit = self.choice(table, "cuda_toolkit", CUDA_TOOLKITS) or "none"
        requirements = self.requirements(table)
        packages = self.packages(table)
        system = self.system_packages(table)
        base = self.base(table)
        target = self.target(table)
        determinism = self.determinism(table)
        exclude = self.patterns(table, "exclude")
        include = self.patterns(table, "include")
        platforms = self.platforms(table)
        if torch is not None:
            cuda = self.reconcile_variant(torch[2], cuda, cpu_only)
        self.exclusive(table, cpu_only, target, toolkit)
        if None in (name, python, torch, target, determinism):
            return None
        assert name is not None and python is not None and torch is not None
        assert target is not None and determinism is not None
        return Spec(
            name=name,
            python=python,
            torch=torch[0],
            torch_text=torch[1],
            torch_variant=torch[2],
            cuda=cuda,
            cpu_only=cpu_only,
            cuda_toolkit=toolkit,
            requirements=requirements,
            packages=packages,
            system_packages=system,
            base=base,
            target=target,
            determinism=determinism,
            exclude=exclude,
            include=include,
            platforms=platforms,
        )

    def required(self, table: dict[str, Any], key: str, example: str) -> str | None:
        if key not in table:
            self.problem(f"'{key}' is required, e.g. {key} = {example}.")
            return None
        value: str | None = self.typed(table, key, str)
        return value

    def name(self, table: dict[str, Any]) -> str | None:
        name = self.required(table, "name", '"lab/resnet-train"')
        problem = None if name is None else name_problem(name)
        if problem is not None:
            self.problem(f"'name' = {name!r} is not a valid image name: {problem}.")
            return None
        return name

    def python(self, table: dict[str, Any]) -> str | None:
        python = self.required(table, "python", '"3.11"')
        if python is not None and not _PYTHON.match(python):
            self.problem(f"'python' = {python!r} must be a major.minor version such as \"3.11\".")
            return None
        return python

    def torch(self, table: dict[str, Any]) -> tuple[SpecifierSet, str, str | None] | None:
        text = self.required(table, "torch", '"2.5.*" or "==2.5.1"')
        if text is None:
            return None
        stripped = text.strip()
        try:
            version = Version(stripped)
        except InvalidVersion:
            version = None
        if version is not None:
            return SpecifierSet(f"=={version.public}"), stripped, version.local
        written = f"=={stripped}" if stripped[:1].isdigit() else stripped  # "2.5.*" -> "==2.5.*"
        try:
            specifier = SpecifierSet(written)
        except InvalidSpecifier:
            self.problem(
                f"'torch' = {text!r} is neither a version nor a PEP 440 specifier; write e.g. "
                '"2.5.1", "2.5.*" or ">=2.4,<2.6".'
            )
            return None
        if not len(specifier):
            self.problem('\'torch\' is empty; write e.g. "2.5.1" or "2.5.*".')
            return None
        return specifier, stripped, None

    def cuda(self, table: dict[str, Any]) -> CudaVersion | None:
        text = self.typed(table, "cuda", str)
        if text is None or text == "auto":
            return None
        try:
            return CudaVersion.parse(text)
        except ValueError:
            self.problem(
                f'\'cuda\' = {text!r} must be "auto" or a CUDA major.minor such as "12.4".'
            )
            return None

    def reconcile_variant(
        self, variant: str | None, cuda: CudaVersion | None, cpu_only: bool
    ) -> CudaVersion | None:
        if variant is None:
            return cuda
        if variant == "cpu":
            if not cpu_only:
                self.problem(
                    "'torch' names a +cpu build; set cpu_only = true for an image without CUDA."
                )
            return cuda
        try:
            implied = CudaVersion.from_variant(variant)
        except ValueError:
            self.problem(
                f"'torch' has the local tag '+{variant}'; only +cuXYZ and +cpu tags are known."
            )
            return cuda
        if cuda is not None and cuda != implied:
            self.problem(
                f"'torch' asks for +{variant} (CUDA {implied}) but 'cuda' = \"{cuda}\"; keep one."
            )
        return implied

    def choice(self, table: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
        value: str | None = self.typed(table, key, str)
        if value is not None and value not in allowed:
            self.problem(f"'{key}' = {value!r} is not one of: {', '.join(allowed)}.")
            return None
        return value

    def requirements(self, table: dict[str, Any]) -> Path | None:
        text: str | None = self.typed(table, "requirements", str)
        if text is None:
            return None
        if "packages" in table:
            self.problem("'requirements' and 'packages' are exclusive: list packages in one place.")
        try:
            path: Path = (self.path.parent / text).resolve()
            found = path.is_file()
        except (OSError, ValueError) as error:  # e.g. a NUL byte, a name too long
            self.problem(f"'requirements' = {text!r} is not a usable path ({error}).")
            return None
        if not found:
            self.problem(f"'requirements' = {text!r}: no such file (looked for {path}).")
            return None
        return path

    def packages(self, table: dict[str, Any]) -> tuple[str, ...]:
        values = self.string_list(table, "packages") or []
        if not values:
            return ()
        from packaging.requirements import InvalidRequirement, Requirement

        for value in values:
            try:
                requirement = Requirement(value)
            except InvalidRequirement as error:
                self.problem(f"'packages' entry {value!r} is not a PEP 508 requirement ({error}).")
                continue
            if requirement.name.lower() == "torch":
                self.problem(
                    "'packages' must not list torch: set the version with the 'torch' key."
                )
        return tuple(values)

    def system_packages(self, table: dict[str, Any]) -> tuple[str, ...]:
        values = self.string_list(table, "system_packages") or []
        for value in values:
            if "=" in value:
                self.problem(
                    f"'system_packages' entry {value!r}: give the package name only; the lock pins "
                    "the exact version from the archive snapshot."
                )
            elif not _DEBIAN_PACKAGE.match(value):
                self.problem(f"'system_packages' entry {value!r} is not a Debian package name.")
        return tuple(sorted(set(values)))

    def base(self, table: dict[str, Any]) -> str | BootstrapBase | None:
        value = table.get("base")
        if value is None:
            return None
        if isinstance(value, str):
            if well_formed(value):
                return value
            self.problem(
                f"'base' = {value!r} is not an image reference; write e.g. "
                '"python:3.11-slim-bookworm" or "name@sha256:<64 hex digits>".'
            )
            return None
        if isinstance(value, dict):
            return self.bootstrap(value)
        self.problem(
            f"'base' must be an image reference string or a table "
            f'{{ bootstrap = "debian:bookworm", snapshot = "..." }}; got {_type_name(type(value))}.'
        )
        return None

    def bootstrap(self, table: dict[str, Any]) -> BootstrapBase | None:
        self.unknown_keys(table, BOOTSTRAP_KEYS, "base.")
        suite = self.typed(table, "bootstrap", str, "base.")
        snapshot = self.typed(table, "snapshot", str, "base.")
        mirror = self.typed(table, "mirror", str, "base.")
        if suite is None or not _BOOTSTRAP.match(suite):
            self.problem("'base.bootstrap' must name a Debian suite such as \"debian:bookworm\".")
            return None
        if snapshot is None or not _SNAPSHOT.match(snapshot):
            self.problem(
                "'base.snapshot' must be a UTC time such as \"2026-11-01T00:00:00Z\" (the archive "
                "snapshot the base is built from)."
            )
            return None
        if mirror is not None and not mirror.startswith(("http://", "https://", "file://")):
            self.problem(f"'base.mirror' = {mirror!r} must be an http(s):// or file:// URL.")
            return None
        return BootstrapBase(suite, snapshot, mirror)

    def target(self, table: dict[str, Any]) -> TargetSpec | None:
        section = self.typed(table, "target", dict)
        if section is None:
            return None if "target" in table else TargetSpec()
        self.unknown_keys(section, TARGET_KEYS, "target.")
        host = self.typed(section, "host", bool, "target.") or False
        driver = self.driver(section)
        gpus = self.gpus(section)
        if host and ("driver" in section or "gpus" in section):
            self.problem(
                "'target.host = true' reads driver and GPUs from this machine; "
                "drop 'target.driver' and 'target.gpus'."
            )
        return TargetSpec(driver=driver, gpus=gpus, host=host)

    def driver(self, section: dict[str, Any]) -> DriverVersion | None:
        text = self.typed(section, "driver", str, "target.")
        if text is None:
            return None
        try:
            return DriverVersion.parse(text)
        except ValueError:
            self.problem(
                f"'target.driver' = {text!r} must be an NVIDIA driver version "
                'such as "535.104.05".'
            )
            return None

    def gpus(self, section: dict[str, Any]) -> tuple[GpuRequest, ...]:
        labels = self.string_list(section, "gpus") or []
        requests = []
        for label in labels:
            capability = self.capability(label)
            if capability is not None:
                requests.append(GpuRequest(label, capability))
        return tuple(requests)

    def capability(self, label: str) -> ComputeCapability | None:
        try:
            return ComputeCapability.parse(label)
        except ValueError:
            pass
        model = self.knowledge.gpu_named(label)
        if model is not None:
            return model.capability
        close = _close_matches(label, self.knowledge.gpu_names(), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(name) for name in close)}? " if close else ""
        self.problem(
            f'\'target.gpus\' entry {label!r} is neither a compute capability ("sm_80", "8.6") nor '
            f"a GPU the knowledge base knows; {hint}`reprobuild knowledge gpus` lists the names."
        )
        return None

    def platforms(self, table: dict[str, Any]) -> tuple[str, ...]:
        """The image platforms: as written, else linux/arm64 where a target GPU is a superchip
        with an Arm CPU (its machine runs nothing else), else linux/amd64."""
        superchips = self.superchips(table)
        values = self.string_list(table, "platforms")
        if values is None:
            if superchips and "platforms" not in table:
                return self.implied(superchips, self.discrete(table))
            return (AMD64,)
        allowed = ", ".join(PLATFORMS)
        if not values:
            self.problem(f"'platforms' is empty; list one or more of: {allowed}.")
        for value in values:
            if value not in PLATFORMS:
                self.problem(f"'platforms' entry {value!r} is not one of: {allowed}.")
        for value in sorted({value for value in values if values.count(value) > 1}):
            self.problem(f"'platforms' lists {value!r} more than once; list each platform once.")
        if superchips and ARM64 not in values:
            names = _and([model.name for model in superchips])
            self.problem(
                f"'target.gpus' names {names}, whose machine has an Arm CPU, but 'platforms' "
                f"leaves out \"{ARM64}\": add it to 'platforms', or remove 'platforms' to "
                f"build for {ARM64} alone."
            )
        return tuple(values) or (AMD64,)

    def implied(self, superchips: list[GpuModel], discrete: list[str]) -> tuple[str, ...]:
        """linux/arm64 with a note when every target GPU is a Grace superchip; beside other
        GPUs, whose machines may be x86_64, a problem asking for 'platforms'."""
        if discrete:
            self.problem(
                f"'target.gpus' names {_and([model.name for model in superchips])}, whose "
                f"machine has an Arm CPU, beside {_and(discrete)}, which x86_64 machines may "
                f"hold: write 'platforms': [\"{ARM64}\"] if those GPUs sit in Arm servers too, "
                f'or ["{AMD64}", "{ARM64}"] for an image per platform.'
            )
            return (ARM64,)
        described = [f"{model.name} is a {model.superchip} superchip" for model in superchips]
        self.notes.append(f"{_and(described)} (Arm CPU): the image is built for {ARM64}")
        return (ARM64,)

    def discrete(self, table: dict[str, Any]) -> list[str]:
        """The target GPUs, as written, that are not Grace superchips, each once."""
        labels = self.gpu_labels(table)
        found = [
            label
            for label in labels
            if (model := self.knowledge.gpu_named(label)) is None or model.platform != ARM64
        ]
        return list(dict.fromkeys(found))

    def gpu_labels(self, table: dict[str, Any]) -> list[str]:
        section = table.get("target")
        labels = section.get("gpus") if isinstance(section, dict) else None
        if not isinstance(labels, list):
            return []
        return [label for label in labels if isinstance(label, str)]

    def superchips(self, table: dict[str, Any]) -> list[GpuModel]:
        """The target GPUs that come with their own Arm CPU (Grace), each once."""
        models = [self.knowledge.gpu_named(label) for label in self.gpu_labels(table)]
        found = [model for model in models if model is not None and model.platform == ARM64]
        return list(dict.fromkeys(found))

    def determinism(self, table: dict[str, Any]) -> Determinism | None:
        section = self.typed(table, "determinism", dict)
        if section is None:
            return None if "determinism" in table else Determinism()
        self.unknown_keys(section, DETERMINISM_KEYS, "determinism.")
        seed = self.typed(section, "seed", int, "determinism.")
        if seed is not None and not 0 <= seed < 2**32:
            self.problem(f"'determinism.seed' = {seed} must be between 0 and 2**32 - 1.")
            seed = None
        tf32 = self.typed(section, "tf32", bool, "determinism.")
        cublas = self.typed(section, "cublas_workspace_config", str, "determinism.")
        if cublas is not None and cublas not in CUBLAS_CONFIGS:
            self.problem(
                f"'determinism.cublas_workspace_config' = {cublas!r} must be one of "
                f"{', '.join(CUBLAS_CONFIGS)} (the values cuBLAS documents as deterministic)."
            )
            cublas = None
        defaults = Determinism()
        return Determinism(
            seed=defaults.seed if seed is None else seed,
            tf32=defaults.tf32 if tf32 is None else tf32,
            cublas_workspace_config=cublas or defaults.cublas_workspace_config,
        )

    def exclusive(
        self, table: dict[str, Any], cpu_only: bool, target: TargetSpec | None, toolkit: str
    ) -> None:
        if not cpu_only:
            return
        if table.get("cuda", "auto") != "auto":
            self.problem("'cpu_only = true' builds an image without CUDA; remove 'cuda'.")
        if toolkit == "devel":
            self.problem("'cpu_only = true' and cuda_toolkit = \"devel\" contradict; keep one.")
        if target is not None and (target.gpus or target.driver or target.host):
            self.problem("'cpu_only = true' images run on no GPU; remove the [target] table.")


_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "float",
    bool: "boolean",
    list: "list",
    dict: "table",
}


def _type_name(kind: type) -> str:
    return _TYPE_NAMES.get(kind, kind.__name__)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _close_matches(word: str, choices: Any, *, n: int, cutoff: float) -> list[str]:
    import difflib  # only a misspelt spec needs it

    return difflib.get_close_matches(word, list(choices), n=n, cutoff=cutoff)
