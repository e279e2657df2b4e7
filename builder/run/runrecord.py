"""A run's record (runs/<start>-<image>/run.json): what decides its result and what it made.

`reprobuild run` imports this module on a thread while the engine starts the container: it
costs nothing on the way to the start, and the facts (git, the GPUs, the read-only data's
digests) are read in the meantime. The record holds the image and lock digests, the command,
each data input's digest (its file listing beside it, in data/NAME.json, so that a replay can
name the file that changed), the environment's names (a secret's value never), /dev/shm's size,
what the image's hook applied in each process that imported torch (seed, mode, TF32, threads)
with the fingerprint key, every output file's digest, the logs, and the trace's head.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder import __version__, layout, source
from builder.engine import host
from builder.errors import ReplayError, ReprobuildError
from builder.files import write_output, writing
from builder.run import datadigest
from builder.run.args import REPORT_FOLDER
from builder.shapes import typed

if TYPE_CHECKING:
    from builder.run.inputs import DataMount, Environment

FORMAT = 2
RECORD_FILE = "run.json"
DATA_FOLDER = "data"  # data/NAME.json: each input's file listing
TRACE_FILE = "trace.jsonl"


@dataclass(frozen=True)
class DataRecord:
    """One --data input: where it was, where it was mounted, and its content's digest."""

    path: str
    inside: str
    mode: str
    root: str
    files: int
    bytes: int


@dataclass(frozen=True)
class FileRecord:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class OutputsRecord:
    """Every file the outputs folder held after the run, and their Merkle root."""

    folder: str
    root: str
    files: int
    bytes: int
    entries: list[FileRecord]


@dataclass(frozen=True)
class LogRecord:
    file: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class TraceRecord:
    """The training trace: every `interval` optimizer steps, a chained hash of the parameters
    and the optimizer state; `head` is the last entry's hash."""

    file: str
    interval: int
    entries: int
    head: str | None


@dataclass(frozen=True)
class ProcessRecord:
    """What the image's hook applied in one process that imported torch, and its key."""

    argv: list[str]
    rank: str | None
    mode: str
    seed: int | None
    tf32: bool
    threads: int
    interop_threads: int
    cublas_workspace_config: str | None
    error: str | None
    key: dict[str, Any] | None


@dataclass(frozen=True)
class HostFacts:
    git_commit: str | None
    git_dirty: bool | None
    driver: str | None
    gpus: list[str]
    data: dict[str, datadigest.Digest] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # for the user, not the record

    @classmethod
    def unread(cls, error: BaseException | None) -> HostFacts:
        why = f"{type(error).__name__}: {error}" if error else "no answer"
        problem = (
            f"the host's git state, GPUs and read-only data could not be read ({why}); the "
            "record has none"
        )
        return cls(None, None, None, [], {}, [problem])


@dataclass(frozen=True)
class RunRecord:
    format: int
    reprobuild: str
    image: str
    image_id: str
    pushed: str | None
    lock: str | None
    command: list[str]
    code_mounted: bool
    git_commit: str | None
    git_dirty: bool | None
    driver: str | None
    gpus: list[str]
    gpus_requested: str | None
    user: str
    data: dict[str, DataRecord]
    env: dict[str, str | None]  # a secret's value is None: never recorded
    shm_size: int
    tty: bool
    processes: list[ProcessRecord]
    key: dict[str, Any] | None  # the first process's fingerprint key
    outputs: OutputsRecord
    logs: dict[str, LogRecord]
    trace: TraceRecord | None
    started: str
    ended: str
    exit_code: int
    replay_of: str | None = None

    @property
    def secrets(self) -> list[str]:
        return sorted(name for name, value in self.env.items() if value is None)

    @property
    def threads(self) -> int | None:
        """The torch thread count every process had; None when they differ (a launcher and
        its ranks, which the launcher sets themselves) or none imported torch."""
        counts = {process.threads for process in self.processes}
        return counts.pop() if len(counts) == 1 else None


class Ran:
    """What `run.execute` knows once the command has ended."""

    def __init__(
        self,
        *,
        image: tuple[str, str, str | None, dict[str, str]],  # reference, ID, pushed, labels
        command: list[str],
        code_mounted: bool,
        gpus: str | None,
        data: list[DataMount],
        environment: Environment | None,
        shm_size: int,
        tty: bool,
        trace: int | None,
        replay_of: str | None,
        folder: str,
        outputs: str,
        user: str,
        started: str,
        ended: str,
        exit_code: int,
        logs: list[str],
        data_before: dict[str, datadigest.Digest],
    ) -> None:
        self.image = image
        self.command = command
        self.code_mounted = code_mounted
        self.gpus = gpus
        self.data = data
        self.environment = environment
        self.shm_size = shm_size
        self.tty = tty
        self.trace = trace
        self.replay_of = replay_of
        self.folder = folder
        self.outputs = outputs
        self.user = user
        self.started = started
        self.ended = ended
        self.exit_code = exit_code
        self.logs = logs
        self.data_before = data_before


def gather(project: str, outputs: str | None, data: list[DataMount]) -> HostFacts:
    """The project's commit and whether its tree is dirty (what the run writes to its outputs
    folder not counted); the NVIDIA driver and GPU names; the read-only data's digests. Each
    fact that cannot be read is a problem of its own; the others are kept."""
    problems = []
    ignored = () if outputs is None else (Path(outputs),)
    try:
        commit, dirty = source.git_state(Path(project), also_ignored=ignored)
        found = host.probe_nvidia()
    except Exception as error:  # noted: the run itself went well
        commit, dirty, driver, gpus = None, None, None, []
        problems.append(
            f"the host's git state and GPUs could not be read ({type(error).__name__}: "
            f"{error}); the record has none"
        )
    else:
        driver = str(found.driver) if found.driver else None
        gpus = [gpu.name for gpu in found.gpus]
    digests = {}
    for mount in data:
        if mount.writable:
            continue
        try:
            digests[mount.name] = datadigest.digest_data(mount.name, mount.path)
        except ReprobuildError as error:
            problems.append(f"{error} The run's record has no digest of it, so no replay.")
    return HostFacts(commit, dirty, driver, gpus, digests, problems)


def data_digests(mounts: list[DataMount]) -> dict[str, datadigest.Digest]:
    return {mount.name: datadigest.digest_data(mount.name, mount.path) for mount in mounts}


def assemble(ran: Ran, facts: HostFacts, remedy: str = "") -> RunRecord:
    """The record of a run that ended; the report folder the hook wrote is read and removed,
    the data listings written beside the record (a refused write is a WriteError that names
    `remedy`, see files.refused)."""
    digests = {**facts.data, **ran.data_before}
    data = {}
    for mount in ran.data:
        if mount.name in digests:
            digest = digests[mount.name]
            data[mount.name] = DataRecord(
                mount.path, mount.inside, mount.mode, digest.root, digest.files, digest.bytes
            )
            write_listing(ran.folder, mount.name, digest, remedy)
    report = Path(ran.folder) / REPORT_FOLDER
    processes = read_processes(report)
    trace = collect_trace(report, Path(ran.folder), ran.trace, remedy)
    shutil.rmtree(report, ignore_errors=True)
    reference, image_id, pushed, labels = ran.image
    return RunRecord(
        format=FORMAT,
        reprobuild=__version__,
        image=reference,
        image_id=image_id,
        pushed=pushed,
        lock=labels.get(layout.LOCK_LABEL),
        command=ran.command,
        code_mounted=ran.code_mounted,
        git_commit=facts.git_commit if ran.code_mounted else None,
        git_dirty=facts.git_dirty if ran.code_mounted else None,
        driver=facts.driver,
        gpus=facts.gpus,
        gpus_requested=ran.gpus,
        user=ran.user,
        data=data,
        env={} if ran.environment is None else ran.environment.recorded(),
        shm_size=ran.shm_size,
        tty=ran.tty,
        processes=processes,
        key=main_key(processes),
        outputs=outputs_record(ran.outputs),
        logs={Path(log).stem: log_record(Path(log)) for log in ran.logs},
        trace=trace,
        started=ran.started,
        ended=ran.ended,
        exit_code=ran.exit_code,
        replay_of=ran.replay_of,
    )


def main_key(processes: list[ProcessRecord]) -> dict[str, Any] | None:
    """The key of the process that trained: rank 0 of a distributed run, else the first that
    used CUDA, else the first (a launcher such as torchrun imports torch too, on the CPU)."""
    keyed = [process for process in processes if process.key]
    for chosen in (
        [process for process in keyed if process.rank == "0"],
        [process for process in keyed if (process.key or {}).get("device") == "cuda"],
        keyed,
    ):
        if chosen:
            return chosen[0].key
    return None


def write_listing(folder: str, name: str, digest: datadigest.Digest, remedy: str = "") -> None:
    path = Path(folder) / DATA_FOLDER / f"{name}.json"
    with writing(path.parent, remedy, verb="create"):
        path.parent.mkdir(exist_ok=True)
    write_output(path, json.dumps(digest.listing(), separators=(",", ":")) + "\n", remedy)


def read_listing(folder: Path, name: str) -> list[list[Any]] | None:
    """A recorded input's file listing; None when the record has none."""
    try:
        listing = json.loads((folder / DATA_FOLDER / f"{name}.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return as_listing(listing)


def as_listing(value: object) -> list[list[Any]] | None:
    """A stored listing as `datadigest.Digest.listing` writes it (a list of lists), else None;
    its items' contents are judged by `datadigest.verify_listing`."""
    if isinstance(value, list) and all(isinstance(item, list) for item in value):
        return value
    return None


def outputs_record(folder: str) -> OutputsRecord:
    digest = datadigest.digest_outputs(folder)
    entries = [FileRecord(path, size, sha256) for path, size, sha256 in digest.entries]
    return OutputsRecord(folder, digest.root, digest.files, digest.bytes, entries)


def log_record(path: Path) -> LogRecord:
    digest = hashlib.sha256()
    with path.open("rb") as handle:  # not tarstream's reader: that module imports tarfile
        while block := handle.read(1 << 20):
            digest.update(block)
    return LogRecord(path.name, path.stat().st_size, digest.hexdigest())


PROCESS_KEYS = {f.name for f in ProcessRecord.__dataclass_fields__.values()}


def read_processes(report: Path) -> list[ProcessRecord]:
    """The hook's process reports, in the order the processes started; one the hook could not
    finish (a process killed as it wrote) is left out."""
    found: list[tuple[float, ProcessRecord]] = []
    for path in sorted(report.glob("process-*.json")):
        try:
            document = json.loads(path.read_text())
            started = float(typed(document["started"], float))
            values = {name: document[name] for name in PROCESS_KEYS}
            found.append((started, typed(values, ProcessRecord)))
        except (OSError, ValueError, RecursionError, OverflowError, KeyError, TypeError):
            continue
    return [process for _, process in sorted(found, key=lambda pair: pair[0])]


def collect_trace(
    report: Path, folder: Path, interval: int | None, remedy: str = ""
) -> TraceRecord | None:
    """The processes' traces, one file: each process's entries in the order the processes
    started (most runs have one training process)."""
    if interval is None:
        return None
    parts = sorted(report.glob("trace-*.jsonl"), key=lambda path: _started(report, path))
    lines: list[str] = []
    for part in parts:
        lines.extend(line for line in part.read_text().splitlines() if line.strip())
    write_output(folder / TRACE_FILE, "".join(f"{line}\n" for line in lines), remedy)
    head = None
    if lines:
        try:
            head = str(json.loads(lines[-1])["hash"])
        except (ValueError, KeyError, TypeError):
            head = None
    return TraceRecord(TRACE_FILE, interval, len(lines), head)


def _started(report: Path, trace: Path) -> tuple[float, float]:
    """A trace's place: by its process's rank (the ranks of a distributed run start in any
    order), then by when the process started."""
    pid = trace.stem.removeprefix("trace-")
    try:
        process = json.loads((report / f"process-{pid}.json").read_text())
        rank = process.get("rank")
        return (float(rank) if rank is not None else -1.0, float(process["started"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return (float("inf"), float("inf"))


def write(folder: str, record: RunRecord, remedy: str = "") -> str:
    """runs/<run>/run.json; its path (a refused write is a WriteError that names `remedy`)."""
    path = Path(folder) / RECORD_FILE
    document = asdict(record)
    write_output(path, json.dumps(document, indent=2, sort_keys=True) + "\n", remedy)
    return str(path)


def read(folder: Path) -> RunRecord:
    """The record in a run folder; ReplayError naming the fix."""
    path = folder / RECORD_FILE if folder.is_dir() else folder
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReplayError(
            f"{path} does not exist: give a run folder (runs/<run>) that `reprobuild run` wrote, "
            "or a manifest that `reprobuild publish --run` wrote."
        ) from None
    except (OSError, ValueError, RecursionError) as error:
        raise ReplayError(f"{path} is unreadable ({error}); give another run.") from None
    return from_document(document, str(path))


def from_document(document: Any, where: str) -> RunRecord:
    """A record from its JSON form; ReplayError when it is not one of this version's."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ReplayError(
            f"{where} is not a run record of this reprobuild (format {FORMAT}): a run recorded "
            "by an older version cannot be replayed; run it again with `reprobuild run`."
        )
    try:
        record: RunRecord = typed(document, RunRecord)
    except ValueError as misfit:
        raise ReplayError(
            f"{where} is damaged: it {misfit}. Give a record that `reprobuild run` wrote."
        ) from None
    return record
