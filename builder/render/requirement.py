"""NVIDIA_REQUIRE_CUDA: the value an image carries, and the NVIDIA container runtime's check of it.

Before it starts a container, the runtime (libnvidia-container's `nvidia-container-cli configure
--require`, to which nvidia-container-toolkit passes every NVIDIA_REQUIRE_* variable of the image
unless NVIDIA_DISABLE_REQUIRE is true) evaluates each value against the host, and refuses the
container when one is unmet. Its rules (src/cli/dsl.c `dsl_evaluate`,
`evaluate_rule`, `dsl_compare_version`, `dsl_compare_string`; src/cli/configure.c `check_*` and
`configure_command`; src/driver.c), implemented here:

- Space-separated alternatives, any one of which suffices (OR); within one, comma-separated
  conditions that must all hold (AND). Empty pieces are skipped. An alternative of commas only
  ends the evaluation with the verdict so far (true when it comes first).
- A condition is NAME OP VALUE. NAME is `cuda`, `driver`, `arch` or `brand`, in any case; OP is
  the longest run of the characters `<>=!` and must be one of = != < <= > >=, where a lone `!`
  reads as `!=`; VALUE is the rest and not empty.
- `cuda` compares the driver's CUDA version (NVML's CUDA driver API version as major.minor,
  e.g. 12.2 for driver 535.104.05), `driver` the driver version, `arch` each visible GPU's
  compute capability; all three as dotted numbers, part by part, missing parts read as 0, so
  12 = 12.0 and 535.104.05 > 535.54. `brand` compares each visible GPU's brand (Tesla,
  GeForce, ...), ignoring case, with = or != only.
- A fact the runtime cannot read passes its condition: no visible GPU for `arch` and `brand`,
  no version for `cuda` or `driver`.
- Each value is evaluated once per visible GPU, or once without one when none is visible.

The runtime parses lazily (a malformed condition it never reaches goes unnoticed); `parse`
rejects every condition the runtime would reject on some host.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from builder.compat import CudaVersion, DriverVersion
from builder.errors import LockError, RenderError
from builder.knowledge import Knowledge
from builder.resolve.resolve import ResolutionRecord

NAMES = ("cuda", "driver", "arch", "brand")
_COMPARISONS: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
OPERATORS = tuple(_COMPARISONS)
_OPERATOR_CHARACTERS = "<>=!"
_VERSION_CHARACTERS = frozenset("0123456789.")
_UINTMAX = 2**64 - 1  # strtoumax's overflow value, which the runtime takes for an error
# The runtime formats an unmet condition as "NAME OP VALUE" into 128 bytes and calls the
# condition invalid when that does not fit.
_FORMATTED_LIMIT = 128


@dataclass(frozen=True)
class Condition:
    name: str  # lower case, one of NAMES
    operator: str  # one of OPERATORS
    value: str

    def __str__(self) -> str:
        return f"{self.name}{self.operator}{self.value}"


@dataclass(frozen=True)
class Requirement:
    text: str
    alternatives: tuple[tuple[Condition, ...], ...]


@dataclass(frozen=True)
class Driver:
    """The host facts the runtime reads once: the driver version and its CUDA version."""

    version: DriverVersion | None
    cuda: CudaVersion | None


@dataclass(frozen=True)
class Device:
    """One visible GPU as the runtime reads it: compute capability ("8.0") and NVML brand."""

    arch: str | None
    brand: str | None


@dataclass(frozen=True)
class Verdict:
    satisfied: bool
    unmet: tuple[Condition, ...]  # the condition that failed in each alternative tried


def require_cuda(cuda: CudaVersion, min_driver: DriverVersion) -> str:
    """The NVIDIA_REQUIRE_CUDA of an image with a CUDA `cuda` runtime whose family floor under
    minor-version compatibility is `min_driver`: it admits exactly the drivers >= that floor.

    Not `cuda>=X.Y`: with it the runtime refused a 12.4 image on driver 535.104.05 (CUDA 12.2),
    which runs it under minor-version compatibility ("unsatisfied condition: cuda>=12.4, please
    update your driver"). The `driver` condition is the floor; the `cuda` one says it in CUDA
    terms (every driver from the floor on reports X.0 or newer) and keeps it where the runtime
    reads no driver version.
    """
    return f"cuda>={cuda.major}.0,driver>={min_driver}"


def of_record(record: ResolutionRecord) -> str:
    """`require_cuda` of a locked resolution with a CUDA runtime."""
    cuda, min_driver = record.get("cuda"), record.get("min_driver")
    if not cuda or not min_driver:
        raise LockError(
            f"the lock's resolution gives CUDA {cuda or '(none)'} and minimum driver "
            f"{min_driver or '(none)'}; an image's NVIDIA_REQUIRE_CUDA needs both. The lock is "
            "damaged or hand-edited: run `reprobuild lock` again."
        )
    return require_cuda(CudaVersion.parse(cuda), DriverVersion.parse(min_driver))


def parse(text: str) -> Requirement:
    """Read a requirement as the runtime does; RenderError naming the bad condition otherwise."""
    alternatives = []
    for alternative in text.split(" "):
        if alternative:
            pieces = alternative.split(",")
            alternatives.append(tuple(_condition(text, piece) for piece in pieces if piece))
    return Requirement(text, tuple(alternatives))


def _condition(text: str, piece: str) -> Condition:
    start = next((i for i, c in enumerate(piece) if c in _OPERATOR_CHARACTERS), len(piece))
    end = start
    while end < len(piece) and piece[end] in _OPERATOR_CHARACTERS:
        end += 1
    name, run, value = piece[:start], piece[start:end], piece[end:]
    symbol = "!=" if run == "!" else run
    problem = None
    if not name or name.lower() not in NAMES:
        problem = f"it names {name!r}; the runtime knows {', '.join(NAMES)}"
    elif symbol not in OPERATORS:
        problem = f"{run!r} is not one of {' '.join(OPERATORS)}" if run else "it has no operator"
    elif not value:
        problem = "it has no value"
    elif name.lower() == "brand" and symbol not in ("=", "!="):
        problem = "a brand compares with = or != only"
    elif name.lower() != "brand" and not _is_version(value):
        problem = f"{value!r} is not a version of dotted numbers"
    elif len(f"{name} {symbol} {value}") >= _FORMATTED_LIMIT:
        problem = f"it is too long for the runtime's {_FORMATTED_LIMIT}-byte buffer"
    if problem is not None:
        raise RenderError(
            f"NVIDIA_REQUIRE_CUDA {text!r}: the condition {piece!r} is one the NVIDIA container "
            f"runtime rejects, refusing the container: {problem}. Write conditions as NAME OP "
            "VALUE, like cuda>=12.0,driver>=525.60.13, alternatives separated by spaces."
        )
    return Condition(name.lower(), symbol, value)


def _is_version(value: str) -> bool:
    if not set(value) <= _VERSION_CHARACTERS or value.startswith("."):
        return False
    return all(int(part) < _UINTMAX for part in value.split(".") if part)


def _version_parts(value: str) -> tuple[int, ...]:
    return tuple(int(part) for part in value.split(".") if part)


def _compare(actual: tuple[int, ...], symbol: str, wanted: tuple[int, ...]) -> bool:
    width = max(len(actual), len(wanted))
    left = actual + (0,) * (width - len(actual))
    right = wanted + (0,) * (width - len(wanted))
    return _COMPARISONS[symbol](left, right)


def holds(condition: Condition, driver: Driver, device: Device | None) -> bool:
    """One condition against the host, as the runtime judges it."""
    if condition.name == "brand":
        if device is None or device.brand is None:
            return True
        same = device.brand.lower() == condition.value.lower()
        return same if condition.operator == "=" else not same
    actual: str | None
    if condition.name == "cuda":
        actual = None if driver.cuda is None else str(driver.cuda)
    elif condition.name == "driver":
        actual = None if driver.version is None else str(driver.version)
    else:
        actual = None if device is None else device.arch
    if actual is None:
        return True
    return _compare(_version_parts(actual), condition.operator, _version_parts(condition.value))


def _evaluate_once(requirement: Requirement, driver: Driver, device: Device | None) -> Verdict:
    satisfied = True
    unmet: list[Condition] = []
    for alternative in requirement.alternatives:
        if not alternative:
            break
        failed = next((c for c in alternative if not holds(c, driver, device)), None)
        satisfied = failed is None
        if failed is None:
            break
        unmet.append(failed)
    return Verdict(satisfied, () if satisfied else tuple(unmet))


def evaluate(requirement: Requirement, driver: Driver, devices: Sequence[Device] = ()) -> Verdict:
    """Whether the runtime starts a container with this requirement on this host: once per
    visible GPU, all of which must pass, or once without a GPU when none is visible."""
    for device in devices or (None,):
        verdict = _evaluate_once(requirement, driver, device)
        if not verdict.satisfied:
            return verdict
    return Verdict(True, ())


def driver_cuda(driver: DriverVersion, knowledge: Knowledge) -> CudaVersion | None:
    """The CUDA version a driver reports, where NVML cannot be asked: the newest CUDA whose first
    driver (releases[].toolkit_driver) or family floor (families[].min_driver, X.0) it reaches.
    A lower bound between the table's rows; None below every row."""
    reached = [r.cuda for r in knowledge.releases if r.toolkit_driver <= driver]
    reached += [CudaVersion(f.major, 0) for f in knowledge.families if f.min_driver <= driver]
    return max(reached, default=None)
