"""What a run is given besides its command: data folders, environment variables, shared memory.

`--data NAME=PATH[:rw]` mounts a host folder or file at /data/NAME, read-only unless `:rw`.
`--env NAME` (the value from this environment), `--env NAME=VALUE` and `--env-file FILE` pass
variables; the value of a secret (a name holding KEY, TOKEN, SECRET or PASSWORD, or one named
with `--secret NAME`) is passed to the container and never written anywhere: records keep its
name only. `--shm-size` sizes /dev/shm, where DataLoader workers hand their batches over.

Standard library only: the record and the entry point's parse of `run` read it.
"""

from __future__ import annotations

import os
import re

from builder import layout
from builder.errors import RunInputError
from builder.run.args import MIN_SHM

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

DATA_ROOT = "/data"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
# Set by `run` itself: a user's value would point the outputs or the hook's report elsewhere.
RESERVED = (layout.OUTPUTS_VARIABLE, layout.REPORT_VARIABLE, "REPROBUILD_TRACE")
UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
SIZE = re.compile(r"(\d+)\s*([bkmgt]?)(?:i?b)?\Z", re.IGNORECASE)


class DataMount:
    """One --data: a host path (absolute, symlinks resolved) mounted at /data/NAME."""

    __slots__ = ("name", "path", "writable")

    def __init__(self, name: str, path: str, writable: bool) -> None:
        self.name = name
        self.path = path
        self.writable = writable

    @property
    def inside(self) -> str:
        return f"{DATA_ROOT}/{self.name}"

    @property
    def mode(self) -> str:
        return "rw" if self.writable else "ro"


def data_mount(text: str) -> DataMount:
    """NAME=PATH, NAME=PATH:ro or NAME=PATH:rw."""
    name, equals, path = text.partition("=")
    if not equals or not NAME.match(name) or not path:
        raise RunInputError(
            f"--data {text!r}: give NAME=PATH (NAME of letters, digits, '.', '_' or '-'), "
            "with :rw after PATH to mount it writable, e.g. --data train=~/datasets/shakespeare."
        )
    writable = path.endswith(":rw")
    if writable or path.endswith(":ro"):
        path = path[:-3]
    real = os.path.realpath(os.path.expanduser(path))
    if not os.path.exists(real):
        raise RunInputError(
            f"--data {name}={path}: {real} does not exist. Give an existing folder or file."
        )
    return DataMount(name, real, writable)


def data_mounts(
    texts: Iterable[str], parse: Callable[[str], DataMount] = data_mount
) -> list[DataMount]:
    """Each --data, parsed by `parse` (a host path here; export reads a cluster's), once."""
    mounts: dict[str, DataMount] = {}
    for text in texts:
        mount = parse(text)
        if mount.name in mounts:
            raise RunInputError(f"--data {mount.name} is given twice; give each NAME once.")
        mounts[mount.name] = mount
    return list(mounts.values())


def is_secret(name: str, declared: Iterable[str] = ()) -> bool:
    """A name given to --secret, or one with a word (between underscores) that is or ends in
    KEY, TOKEN, SECRET or PASSWORD: WANDB_API_KEY, HF_TOKEN, DB_PASSWORD, OPENAI_APIKEY; not
    MAX_TOKENS or TOKENIZERS_PARALLELISM."""
    words = name.upper().split("_")
    return name in declared or any(word.endswith(SECRET_WORDS) for word in words)


class Environment:
    """The variables a run passes to its command, and which of them are secrets."""

    __slots__ = ("secrets", "values")

    def __init__(self, values: dict[str, str], secrets: frozenset[str]) -> None:
        self.values = values
        self.secrets = secrets

    def recorded(self) -> dict[str, str | None]:
        """What a record keeps: each name, with its value unless it is a secret."""
        return {
            name: None if name in self.secrets else value for name, value in self.values.items()
        }


def environment(
    assignments: Iterable[str],
    env_files: Iterable[str] = (),
    declared_secrets: Iterable[str] = (),
    source: Mapping[str, str] | None = None,
) -> Environment:
    """--env-file FILEs first, in order, then --env values (a later value wins, as docker run
    reads them); NAME alone takes this environment's value, which must be set."""
    source = os.environ if source is None else source
    declared = frozenset(declared_secrets)
    for name in declared:
        check_name(name, "--secret")
    values: dict[str, str] = {}
    for path in env_files:
        for line_number, line in _env_file_lines(path):
            where = f"--env-file {path}, line {line_number}"
            if not VARIABLE.match(line.partition("=")[0]):
                # The line is not echoed: it may be part of a secret (a multi-line key).
                raise RunInputError(
                    f"{where}: not NAME=VALUE or NAME (NAME of letters, digits and '_', not "
                    "starting with a digit). A value cannot span lines in an env file."
                )
            name, value = _assignment(line, source, where)
            values[name] = value
    for text in assignments:
        name, value = _assignment(text, source, "--env")
        values[name] = value
    for name in sorted(declared - set(values)):  # --secret NAME alone passes this one's value
        values[name] = _assignment(name, source, "--secret")[1]
    secrets = frozenset(name for name in values if is_secret(name, declared))
    return Environment(values, secrets)


def _env_file_lines(path: str) -> Iterable[tuple[int, str]]:
    """docker's env-file format: NAME=VALUE or NAME per line, value as written (no quotes
    removed); blank lines and lines starting with # skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise RunInputError(
            f"--env-file {path}: {error.strerror or error}. Give a readable file of NAME=VALUE "
            "lines."
        ) from None
    except UnicodeDecodeError:
        raise RunInputError(f"--env-file {path}: not UTF-8 text; give NAME=VALUE lines.") from None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, line.lstrip()


def _assignment(text: str, source: Mapping[str, str], where: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    check_name(name, where)
    if equals:
        return name, value
    if name not in source:
        raise RunInputError(
            f"{where} {name}: {name} is not set in this environment. Set it (export {name}=...) "
            f"or give its value: --env {name}=VALUE."
        )
    return name, source[name]


def check_name(name: str, where: str) -> None:
    if not VARIABLE.match(name):
        raise RunInputError(
            f"{where} {name!r}: not a variable name; give NAME=VALUE or NAME, NAME of letters, "
            "digits and '_' not starting with a digit."
        )
    if name in RESERVED:
        raise RunInputError(
            f"{where} {name}: `reprobuild run` sets {name} itself; choose another name."
        )


def shm_bytes(text: str) -> int:
    """A size as docker takes it: 2g, 512m, 1GiB, 1073741824 (bytes)."""
    match = SIZE.match(text.strip())
    size = int(match[1]) * UNITS[match[2].lower()] if match else 0
    if size < MIN_SHM:
        raise RunInputError(f"--shm-size {text!r}: give a size of at least 1m, such as 512m or 8g.")
    return size
