"""`reprobuild run -- COMMAND...`: train inside the built image, and record the run.

The image runs by ID (the config digest the build recorded), never by tag. The project is
mounted read-only at /workspace, an outputs folder writable at /outputs, and the command runs
as the host user so what it writes there is the user's. Each run leaves a record under runs/.

A short command's whole `docker run` takes about 0.3 s, and `reprobuild run` is held to 1.1
times that. So the way to the container's start imports little (the engine is spoken to
through `engine.wire`, not the docker SDK), and what the record needs besides the exit code
(the git state, the GPUs, the record's own modules) is read on a thread while the engine
starts the container.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from builder import layout, snapshots
from builder.build import recordfile
from builder.engine.wire import Container, Mounts, Wire, container_spec
from builder.errors import ReprobuildError, RunInputError, WriteError
from builder.run.args import DEFAULT_ENV, REPORT_FOLDER, default_shm

TYPE_CHECKING = False  # typing's own flag, without importing typing on `run`'s way to the start
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

    from builder.build.recordfile import Folder
    from builder.run.datadigest import Digest
    from builder.run.inputs import DataMount, Environment
    from builder.run.runrecord import HostFacts

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class RunPlan:
    """What to run: the project, the image (None: the project's last build), the command, the
    outputs folder (None: runs/<run>/outputs), the GPUs to give it (None: none), the data
    mounts, the environment (`run.inputs`), /dev/shm's size (None: half the host's memory), the
    trace interval (None: no trace), and whether the command gets a terminal (None: when this
    process writes to one). A replay from a
    manifest runs the image's own code (`mount_code` False) and names what it replays. Folders
    are kept as absolute paths with symlinks resolved; they are strings (os.path), because
    pathlib's import is a percent of a short run."""

    def __init__(
        self,
        project: Folder,
        image: str | None,
        command: list[str],
        *,
        outputs: Folder | None = None,
        gpus: str | None = None,
        data: list[DataMount] | None = None,
        environment: Environment | None = None,
        shm_size: int | None = None,
        trace: int | None = None,
        tty: bool | None = None,
        mount_code: bool = True,
        replay_of: str | None = None,
    ) -> None:
        self.project = os.path.realpath(project)
        self.image = image
        self.command = command
        self.outputs = None if outputs is None else os.path.realpath(outputs)
        self.gpus = gpus
        self.data = data or []
        self.environment = environment
        self.shm_size = default_shm() if shm_size is None else shm_size
        self.trace = trace
        # A terminal when this process writes to one (progress bars draw, Python line-buffers).
        self.tty = sys.stdout.isatty() and sys.stderr.isatty() if tty is None else tty
        self.mount_code = mount_code
        self.replay_of = replay_of


class Outcome:
    """What a run left: the command's exit code, the record's path, and notes for the user."""

    def __init__(self, code: int, record: str, notes: list[str]) -> None:
        self.code = code
        self.record = record
        self.notes = notes


# The other way out when a folder of the run cannot be written (the clause after "..., or").
RUNS_REMEDY = (
    "run from a copy of the project you can write to (each run's record goes in its runs/ folder)."
)
OUTPUTS_REMEDY = "give --outputs another folder."

READ_ONLY_HINT = (
    f"the project is read-only at {layout.CODE}: write to ${layout.OUTPUTS_VARIABLE} "
    f"({layout.OUTPUTS}) or mount a folder with --data NAME=PATH:rw."
)


def execute(wire: Wire, run_plan: RunPlan, output: Callable[[bytes, bool], None]) -> Outcome:
    """Run the command (its stdout and stderr passed to `output`, second argument True for
    stderr, and saved in the run folder) and write its record, runs/<start>-<image>/run.json.
    A run that fails before its command ends leaves no record."""
    image = chosen_image(wire, run_plan)
    user, owner = container_user(run_plan.project)
    check_readable(run_plan, user)
    started = snapshots.utc_now()
    folder = run_folder(run_plan.project, started, image.image_id)
    outputs = run_plan.outputs or os.path.join(folder, "outputs")
    try:
        capture = Capture(folder, output, run_plan.tty)
    except OSError as error:
        _discard(folder)
        raise _refused(error.filename or folder, error, RUNS_REMEDY) from None
    writable = [mount.path for mount in run_plan.data if mount.writable]
    lent: list[tuple[str, int, int]] = []
    try:
        prepare_folders(outputs, OUTPUTS_REMEDY if run_plan.outputs else RUNS_REMEDY, user)
        prepare_folders(os.path.join(folder, REPORT_FOLDER), RUNS_REMEDY, user)
        before = _writable_data_digests(run_plan)
        existing = present([outputs, *writable]) if owner is not None else set()
        lend(writable, user, lent)
        spec = container_spec(
            image.image_id,
            run_plan.command,
            mounts(run_plan, folder, outputs, user),
            run_plan.gpus,
        )
        code, ended, facts = _run(wire, image.reference, spec, run_plan, capture.output)
    except BaseException:
        capture.close()
        _discard(folder)
        give_back([], user, None, lent, set())
        raise
    capture.close()
    give_back([outputs, *writable], user, owner, lent, existing)
    if capture.failure is not None:
        log, failed = capture.failure
        _discard(folder)
        raise _unrecorded(_refused(log, failed, RUNS_REMEDY), code, outputs)
    from builder.run import runrecord

    notes = list(facts.problems)
    if code != 0 and capture.saw_read_only:
        notes.append(READ_ONLY_HINT)
    ran = runrecord.Ran(
        image=(image.reference, image.image_id, image.pushed, image.labels),
        command=run_plan.command,
        code_mounted=run_plan.mount_code,
        gpus=run_plan.gpus,
        data=run_plan.data,
        environment=run_plan.environment,
        shm_size=run_plan.shm_size,
        tty=run_plan.tty,
        trace=run_plan.trace,
        replay_of=run_plan.replay_of,
        folder=folder,
        outputs=outputs,
        user=user,
        started=started,
        ended=ended,
        exit_code=code,
        logs=capture.files(),
        data_before=before,
    )
    try:
        assembled = runrecord.assemble(ran, facts, RUNS_REMEDY)
        record = runrecord.write(folder, assembled, RUNS_REMEDY)
    except WriteError as error:  # a full disk, say: nothing of the record stays
        _discard(folder, also=(runrecord.TRACE_FILE, runrecord.DATA_FOLDER))
        raise _unrecorded(error, code, outputs) from None
    hand_over(run_plan.project, folder)
    return Outcome(code, record, notes)


def _refused(path: str, error: OSError, remedy: str, verb: str = "write") -> ReprobuildError:
    from builder import files

    return files.refused(path, error, remedy, verb=verb)


def _unrecorded(error: ReprobuildError, code: int, outputs: str) -> WriteError:
    """`error`, saying that the command ran but has no record, and where its outputs stay."""
    kept = ""
    if os.path.isdir(outputs) and os.listdir(outputs):
        kept = f"; what it wrote to {layout.OUTPUTS} is in {outputs}"
    return WriteError(f"{error} The command ran (exit {code}) but has no record{kept}.")


def _writable_data_digests(run_plan: RunPlan) -> dict[str, Digest]:
    """The digests of the writable data, taken before the command can change them (read-only
    data is hashed while the command runs)."""
    writable = [mount for mount in run_plan.data if mount.writable]
    if not writable:
        return {}
    from builder.run import runrecord

    return runrecord.data_digests(writable)


def _run(
    wire: Wire,
    image: str,
    spec: dict[str, Any],
    run_plan: RunPlan,
    output: Callable[[bytes, bool], None],
) -> tuple[int, str, HostFacts]:
    """Create, attach, start, relay until the output ends, and read the exit code the engine
    gives once it removed the container; on an error the container is removed here. The exit
    code, when the run ended, and the host's facts."""
    container = wire.create(image, spec)
    with contextlib.ExitStack() as opened:
        try:
            stream = opened.enter_context(contextlib.closing(container.attach()))
            removal = opened.enter_context(contextlib.closing(container.removal()))
            facts = Gathering(run_plan)
            with ForwardedSignals(container) as signals:
                container.start(run_plan.command, run_plan.gpus)
                signals.started()
                if run_plan.tty:
                    wire.relay_raw(stream, output)
                else:
                    wire.relay_frames(stream, output)
                code = wire.exit_code(removal)
        except BaseException:
            opened.close()  # our streams first: an unread attach stream can stall the removal
            container.remove()
            raise
    return code, snapshots.utc_now(), facts.result()


def chosen_image(wire: Wire, run_plan: RunPlan) -> ImageToRun:
    """The named image (pulled if the engine lacks it), or the project's last build, with its
    labels (the lock's digest among them): one inspection of the image when the engine has it,
    as `docker run` makes."""
    labels: dict[str, dict[str, str]] = {}

    def find(reference: str) -> str | None:
        found = wire.image_labels(reference)
        if found is None:
            return None
        labels[found[0]] = found[1]
        return found[0]

    def fetch(reference: str) -> str:
        return find(reference) or wire.ensure_image(reference)

    if run_plan.image is not None:
        chosen = recordfile.ImageToRun(run_plan.image, fetch(run_plan.image), None)
    else:
        document = recordfile.load(run_plan.project)
        chosen = recordfile.recorded_image(run_plan.project, document, find, fetch)
    if chosen.image_id not in labels:  # pulled just now
        find(chosen.image_id)
    return ImageToRun(chosen, labels.get(chosen.image_id, {}))


class ImageToRun:
    """The image a run uses (`recordfile.ImageToRun`) and its labels."""

    def __init__(self, image: recordfile.ImageToRun, labels: dict[str, str]) -> None:
        self.reference = image.reference
        self.image_id = image.image_id
        self.pushed = image.pushed
        self.labels = labels


class Capture:
    """The command's output: passed on as it comes, saved complete under the run folder
    (stdout.log and stderr.log; one stdout.log with a terminal, which merges the two), and
    watched for a write refused on the read-only project."""

    def __init__(self, folder: str, output: Callable[[bytes, bool], None], tty: bool) -> None:
        self._output = output
        self._folder = folder
        names = ("stdout.log",) if tty else ("stdout.log", "stderr.log")
        self._logs = {name: open(os.path.join(folder, name), "wb") for name in names}  # noqa: SIM115
        self._tails = {False: b"", True: b""}
        self.saw_read_only = False
        # The first log write that failed (a full disk): the command goes on, its output still
        # shown, and the run ends without a record (whose log digests would be of a part).
        self.failure: tuple[str, OSError] | None = None

    def output(self, data: bytes, to_stderr: bool) -> None:
        name = "stderr.log" if to_stderr and "stderr.log" in self._logs else "stdout.log"
        if self.failure is None:
            try:
                self._logs[name].write(data)
            except OSError as error:
                self.failure = (os.path.join(self._folder, name), error)
        self._output(data, to_stderr)
        if not self.saw_read_only:
            # The tail of the last chunk goes with this one: a line can arrive in two frames.
            seen = self._tails[to_stderr] + data
            self.saw_read_only = _read_only_write(seen)
            self._tails[to_stderr] = seen[-READ_ONLY_WINDOW:]

    def close(self) -> None:
        for name, log in self._logs.items():
            try:
                log.close()  # the buffer's last bytes are written here
            except OSError as error:
                if self.failure is None:
                    self.failure = (os.path.join(self._folder, name), error)

    def files(self) -> list[str]:
        return [os.path.join(self._folder, name) for name in self._logs]


READ_ONLY_WINDOW = 512
READ_ONLY_TEXT = b"Read-only file system"
DATA_PREFIX = b"/data/"
PATH_STARTS = (b" ", b"'", b'"', b"(", b"=", b":", b"\t", b",", b"`")


def _read_only_write(data: bytes) -> bool:
    """Whether a line says a write was refused as read-only, not under /data (whose read-only
    mounts the user chose): the project, at the working directory, is the other read-only
    place, and a relative path names no folder at all."""
    at = data.find(READ_ONLY_TEXT)
    while at >= 0:
        line_start = data.rfind(b"\n", 0, at) + 1
        line_end = data.find(b"\n", at)
        if not _names_data(data[line_start : None if line_end < 0 else line_end]):
            return True
        at = data.find(READ_ONLY_TEXT, at + 1)
    return False


def _names_data(line: bytes) -> bool:
    """Whether the line holds an absolute path under /data (not ./data/x, /workspace/data/x)."""
    at = line.find(DATA_PREFIX)
    while at >= 0:
        if at == 0 or line[at - 1 : at] in PATH_STARTS:
            return True
        at = line.find(DATA_PREFIX, at + 1)
    return False


class Gathering:
    """The host's facts for the record, read on a thread: the record's modules are imported,
    git and NVML asked, and the read-only data hashed while the engine starts the container and
    the command runs. Facts that cannot be read leave the record's fields empty and a note;
    they never cost a run its record."""

    def __init__(self, run_plan: RunPlan) -> None:
        self._plan = run_plan
        self._result: HostFacts | Exception | None = None
        self._thread = threading.Thread(target=self._gather, name="run-facts", daemon=True)
        self._thread.start()

    def _gather(self) -> None:
        from builder.run import runrecord

        try:
            plan = self._plan
            self._result = runrecord.gather(plan.project, plan.outputs, plan.data)
        except Exception as error:  # noted by result(): the run itself went well
            self._result = error

    def result(self) -> HostFacts:
        from builder.run import runrecord

        self._thread.join()
        if isinstance(self._result, runrecord.HostFacts):
            return self._result
        return runrecord.HostFacts.unread(self._result)


class ForwardedSignals:
    """While entered, SIGINT, SIGTERM and SIGHUP go to the container instead of this process:
    the command decides how to stop, and its exit code is the run's. One that arrives while the
    engine is still starting the container is sent once it runs."""

    def __init__(self, container: Container) -> None:
        self._container = container
        self._previous: dict[int, Any] = {}
        self._pending: list[int] | None = []  # None once the container runs

    def __enter__(self) -> ForwardedSignals:
        for number in FORWARDED_SIGNALS:
            if signal.getsignal(number) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                self._previous[number] = signal.signal(number, self._forward)
        return self

    def __exit__(self, *_exception: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)

    def started(self) -> None:
        pending, self._pending = self._pending, None
        for signum in pending or ():
            self._container.kill(signum)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        if self._pending is None:
            self._container.kill(signum)
        else:
            self._pending.append(signum)


def mounts(run_plan: RunPlan, folder: str, outputs: str, user: str) -> Mounts:
    binds = [(mount.path, mount.inside, mount.mode) for mount in run_plan.data]
    binds.append((outputs, layout.OUTPUTS, "rw"))
    binds.append((os.path.join(folder, REPORT_FOLDER), layout.REPORT, "rw"))
    if run_plan.mount_code:
        binds.insert(0, (run_plan.project, layout.CODE, "ro"))
    return Mounts(
        binds=binds,
        environment=container_environment(run_plan),
        user=user,
        working_dir=layout.CODE,
        shm_size=run_plan.shm_size,
        tty=run_plan.tty,
    )


def container_environment(run_plan: RunPlan) -> dict[str, str]:
    """The user's variables over run's defaults (Python unbuffered, so output streams as it is
    written), then what run itself owns: the outputs, the report and the trace."""
    environment = dict(DEFAULT_ENV)
    if run_plan.environment is not None:
        environment.update(run_plan.environment.values)
    environment[layout.OUTPUTS_VARIABLE] = layout.OUTPUTS
    environment[layout.REPORT_VARIABLE] = layout.REPORT
    if run_plan.trace is not None:
        environment["REPROBUILD_TRACE"] = str(run_plan.trace)
    return environment


def container_user(project: str) -> tuple[str, tuple[int, int] | None]:
    """The uid:gid the command runs as, and to whom its files go afterwards (None: they are
    already theirs). The host user, so that what the command writes is theirs; started as root,
    the project's owner; when root owns the project too, the image's own non-root user runs
    the command and root gets its files back."""
    uid, gid = os.getuid(), os.getgid()
    if uid != 0:
        return f"{uid}:{gid}", None
    status = os.stat(project)
    if status.st_uid != 0:
        return f"{status.st_uid}:{status.st_gid}", None
    return f"{layout.UID}:{layout.UID}", (0, 0)


def check_readable(run_plan: RunPlan, user: str) -> None:
    """Started as root, the command runs as another user: the project and the data must be
    readable by it (a folder only root can enter would fail the command at its first read)."""
    if os.getuid() != 0:
        return
    uid, gid = (int(part) for part in user.split(":"))
    paths = [mount.path for mount in run_plan.data if not mount.writable]
    if run_plan.mount_code:
        paths.insert(0, run_plan.project)
    for path in paths:
        status = os.stat(path)
        shift = 6 if status.st_uid == uid else 3 if status.st_gid == gid else 0
        needed = 0o5 if os.path.isdir(path) else 0o4
        if (status.st_mode >> shift) & needed != needed:
            raise RunInputError(
                f"{path} cannot be read by uid {uid}, the user the command runs as (started as "
                "root, `reprobuild run` runs the command as the project's owner, or as the "
                "image's non-root user when root owns the project). Make it readable "
                f"(chmod o+rX {path}), or run reprobuild as the user who owns it."
            )


def prepare_folders(folder: str, remedy: str, user: str) -> None:
    """Create a folder the command writes to (a refusal names it, with `remedy`); as root, hand
    it to the user the command runs as."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise _refused(folder, error, remedy, verb="create") from None
    if os.getuid() == 0:
        uid, gid = (int(part) for part in user.split(":"))
        os.chown(folder, uid, gid)


def lend(paths: list[str], user: str, loans: list[tuple[str, int, int]]) -> None:
    """As root, each writable data folder (or file) the command's user could not write is lent
    to it: its owner becomes that user until the run ends. `loans` gets each, to be returned."""
    if os.getuid() != 0:
        return
    uid, gid = (int(part) for part in user.split(":"))
    for path in paths:
        status = os.stat(path)
        if status.st_uid != uid:
            loans.append((path, status.st_uid, status.st_gid))
            try:
                os.chown(path, uid, gid)
            except OSError as error:
                raise RunInputError(
                    f"--data {path}: cannot lend it to uid {uid}, the user the command runs "
                    f"as ({error.strerror or error}; a root-squashed network mount refuses "
                    "root). Make it writable by that user, or run reprobuild as its owner."
                ) from None


def present(folders: list[str]) -> set[tuple[int, int]]:
    """The (device, inode) of everything in the folders before the run: what the command did
    not make keeps its owner."""
    found = set()
    for folder in folders:
        for root, names, files in os.walk(folder):
            for name in [".", *names, *files]:
                try:
                    status = os.lstat(os.path.join(root, name))
                except OSError:
                    continue
                found.add((status.st_dev, status.st_ino))
    return found


def give_back(
    folders: list[str],
    user: str,
    owner: tuple[int, int] | None,
    loans: list[tuple[str, int, int]],
    existing: set[tuple[int, int]],
) -> None:
    """What the command's user made in the host folders goes to their owner (when the command
    ran as another user than the host's; what was there before keeps its owner), and each lent
    folder to its own owner again."""
    uid = int(user.partition(":")[0])
    for folder in folders:
        if owner is None:
            break
        for root, names, files in os.walk(folder):
            for name in [".", *names, *files]:
                _give_back_path(os.path.join(root, name), uid, owner, existing)
    for path, owner_uid, owner_gid in loans:
        os.chown(path, owner_uid, owner_gid)


def hand_over(project: str, folder: str) -> None:
    """Started as root on another user's project, the run folder reprobuild wrote (and runs/)
    is given to that user, who could not otherwise remove it or start the next run."""
    if os.getuid() != 0:
        return
    status = os.stat(project)
    if status.st_uid == 0:
        return
    runs = os.path.dirname(folder)
    for path in (runs, folder):
        os.lchown(path, status.st_uid, status.st_gid)
    for root, names, files in os.walk(folder):
        for name in names + files:
            os.lchown(os.path.join(root, name), status.st_uid, status.st_gid)


def _give_back_path(
    path: str, uid: int, owner: tuple[int, int], existing: set[tuple[int, int]]
) -> None:
    try:
        status = os.lstat(path)
        if status.st_uid == uid and (status.st_dev, status.st_ino) not in existing:
            os.lchown(path, *owner)
    except OSError:  # removed meanwhile, or a file system without owners: nothing to give
        pass


def run_folder(project: str, started: str, image_id: str) -> str:
    """runs/20261122T101500123Z-0123456789ab: sorts by start time, names the image."""
    stamp = started.replace(":", "").replace("-", "").replace(".", "")
    name = f"{stamp}-{image_id.removeprefix('sha256:')[:12]}"
    runs = os.path.join(project, layout.RUNS_FOLDER)
    folder = os.path.join(runs, name)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.rmdir(runs)  # made just now, or empty before: either way nothing is lost
        named = folder if os.path.isdir(runs) else runs
        raise _refused(named, error, RUNS_REMEDY, verb="create") from None
    return folder


def _discard(folder: str, also: tuple[str, ...] = ()) -> None:
    """A run that failed leaves no record: its folder goes (and runs/, if that was its only
    run), as long as the command wrote nothing in it; run's own logs and report go first, and
    the files and folders named in `also` (what the record had begun to write)."""
    for name in ("stdout.log", "stderr.log", *also):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    report = os.path.join(folder, REPORT_FOLDER)
    with contextlib.suppress(OSError):
        for name in os.listdir(report):
            os.remove(os.path.join(report, name))
    for empty in (report, os.path.join(folder, "outputs"), folder, os.path.dirname(folder)):
        try:
            os.rmdir(empty)
        except FileNotFoundError:  # no outputs folder here: --outputs named another
            continue
        except OSError:  # not empty: the run wrote something, which stays
            return
