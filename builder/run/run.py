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
import threading

from builder import layout, snapshots
from builder.build import recordfile
from builder.engine.wire import Container, Mounts, Wire, container_spec

TYPE_CHECKING = False  # typing's own flag, without importing typing on `run`'s way to the start
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

    from builder.build.recordfile import Folder
    from builder.run.runrecord import HostFacts

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class RunPlan:
    """What to run: the project, the image (None: the project's last build), the command, the
    outputs folder (None: runs/<run>/outputs) and the GPUs to give it (None: none). Folders
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
    ) -> None:
        self.project = os.path.realpath(project)
        self.image = image
        self.command = command
        self.outputs = None if outputs is None else os.path.realpath(outputs)
        self.gpus = gpus


class Outcome:
    """What a run left: the command's exit code, the record's path, and notes for the user."""

    def __init__(self, code: int, record: str, notes: list[str]) -> None:
        self.code = code
        self.record = record
        self.notes = notes


def execute(wire: Wire, run_plan: RunPlan, output: Callable[[bytes, bool], None]) -> Outcome:
    """Run the command (its stdout and stderr passed to `output`, second argument True for
    stderr) and write its record, runs/<start>-<image>/run.json. A run that fails before its
    command ends leaves no record."""
    image = chosen_image(wire, run_plan)
    started = snapshots.utc_now()
    folder = run_folder(run_plan.project, started, image.image_id)
    outputs = run_plan.outputs or os.path.join(folder, "outputs")
    user = container_user()
    try:
        prepare_outputs(outputs, user)
        spec = container_spec(
            image.image_id, run_plan.command, mounts(run_plan.project, outputs, user), run_plan.gpus
        )
        code, ended, facts = _run(wire, image.reference, spec, run_plan, output)
    except BaseException:
        _discard(folder)
        raise
    from builder.run import runrecord

    record = runrecord.RunRecord(
        image=image.reference,
        image_id=image.image_id,
        pushed=image.pushed,
        command=run_plan.command,
        git_commit=facts.git_commit,
        git_dirty=facts.git_dirty,
        driver=facts.driver,
        gpus=facts.gpus,
        gpus_requested=run_plan.gpus,
        user=user,
        outputs=outputs,
        started=started,
        ended=ended,
        exit_code=code,
    )
    return Outcome(code, runrecord.write(folder, record), facts.problems)


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
            facts = Gathering(run_plan.project, run_plan.outputs)
            with ForwardedSignals(container) as signals:
                container.start(run_plan.command, run_plan.gpus)
                signals.started()
                wire.relay_frames(stream, output)
                code = wire.exit_code(removal)
        except BaseException:
            opened.close()  # our streams first: an unread attach stream can stall the removal
            container.remove()
            raise
    return code, snapshots.utc_now(), facts.result()


def chosen_image(wire: Wire, run_plan: RunPlan) -> recordfile.ImageToRun:
    """The named image (pulled if the engine lacks it), or the project's last build."""
    if run_plan.image is not None:
        image_id = wire.ensure_image(run_plan.image)
        return recordfile.ImageToRun(run_plan.image, image_id, None)
    return recordfile.recorded_image(
        run_plan.project,
        recordfile.load(run_plan.project),
        wire.image_id,
        wire.ensure_image,
    )


class Gathering:
    """The host's facts for the record, read on a thread: the record's modules are imported,
    and git and NVML asked, while the engine starts the container. Facts that cannot be read
    leave the record's fields empty and a note; they never cost a run its record."""

    def __init__(self, project: str, outputs: str | None) -> None:
        self._where = (project, outputs)
        self._result: HostFacts | Exception | None = None
        self._thread = threading.Thread(target=self._gather, name="run-facts", daemon=True)
        self._thread.start()

    def _gather(self) -> None:
        from builder.run import runrecord

        try:
            self._result = runrecord.gather(*self._where)
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


def mounts(project: str, outputs: str, user: str) -> Mounts:
    return Mounts(
        binds={project: (layout.CODE, "ro"), outputs: (layout.OUTPUTS, "rw")},
        environment={"HOME": "/tmp", "REPROBUILD_OUTPUTS": layout.OUTPUTS},
        user=user,
        working_dir=layout.CODE,
    )


def container_user() -> str:
    """The host user's uid:gid; root on the host runs as the image's own non-root user."""
    uid, gid = os.getuid(), os.getgid()
    return f"{layout.UID}:{layout.UID}" if uid == 0 else f"{uid}:{gid}"


def prepare_outputs(outputs: str, user: str) -> None:
    os.makedirs(outputs, exist_ok=True)
    if os.getuid() == 0:
        uid, gid = (int(part) for part in user.split(":"))
        os.chown(outputs, uid, gid)


def run_folder(project: str, started: str, image_id: str) -> str:
    """runs/20261122T101500123Z-0123456789ab: sorts by start time, names the image."""
    stamp = started.replace(":", "").replace("-", "").replace(".", "")
    name = f"{stamp}-{image_id.removeprefix('sha256:')[:12]}"
    folder = os.path.join(project, layout.RUNS_FOLDER, name)
    os.makedirs(folder, exist_ok=True)
    return folder


def _discard(folder: str) -> None:
    """A run that failed leaves no record: its folder goes (and runs/, if that was its only
    run), as long as nothing was written in it."""
    for empty in (os.path.join(folder, "outputs"), folder, os.path.dirname(folder)):
        try:
            os.rmdir(empty)
        except FileNotFoundError:  # no outputs folder here: --outputs named another
            continue
        except OSError:  # not empty: the run wrote something, which stays
            return
