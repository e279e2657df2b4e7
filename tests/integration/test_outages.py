"""A registry and an engine that stop in the middle of the work: `reprobuild build --push` while
the registry is killed, `reprobuild build` while the engine is killed and started again.

The registry and the engine here are the tests' own throw-away ones, started for each test and
stopped after it (the shared test engine and registry are never stopped): a `docker-registry`
on a free port of 127.0.0.1 with its own storage, a `dockerd` with its own socket, data root and
exec root, no bridge and no firewall rules (the small spec's build needs no network in its RUN
steps; the engine pulls the base from the shared registry itself). Each time: exit 1, one
paragraph that names the registry or the engine and the fix, no traceback, nothing half-written;
and once the registry or the engine is back, the same command completes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import requests

from builder import layout
from builder.build import buildrecord
from builder.engine.sdk import Engine
from tests.integration.test_full_disk import NAME, TITLE, project_with_wheels, temporary_files

WAIT_S = 300  # for a line or an exit; builds take seconds, this machine may be busy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class StandInRegistry:
    """A docker-registry of its own on 127.0.0.1, its storage kept across restarts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.storage = root / "storage"
        self.storage.mkdir(parents=True)
        self.address = f"127.0.0.1:{free_port()}"
        self.config = root / "registry.yml"
        self.config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            f"http:\n  addr: {self.address}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.root / "registry.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(self.config)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://{self.address}/v2/", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"the registry did not start; see {self.root / 'registry.log'}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=60)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
            self.process = None

    def uploading(self) -> bool:
        """Whether a blob upload has begun (the registry keeps each under _uploads/)."""
        return any(self.storage.glob("docker/registry/v2/repositories/**/_uploads/*"))

    def holds(self, repository: str, tag: str) -> str:
        """The manifest digest of repository:tag, each blob it names checked to be there."""
        base = f"http://{self.address}/v2/{repository}"
        accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
        answer = requests.get(f"{base}/manifests/{tag}", headers=accept, timeout=10)
        assert answer.status_code == 200, answer.text
        manifest = answer.json()
        for blob in [manifest["config"], *manifest["layers"]]:
            head = requests.head(f"{base}/blobs/{blob['digest']}", timeout=10)
            assert head.status_code == 200, blob
        return str(answer.headers["Docker-Content-Digest"])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[StandInRegistry]:
    started = StandInRegistry(tmp_path / "registry")
    started.start()
    yield started
    started.stop()


class StandInEngine:
    """A dockerd of its own: socket, data root and exec root under a short folder of /tmp
    (a unix socket's path has a length limit), no bridge, no firewall rules."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rb-engine-", dir="/tmp"))
        self.address = f"unix://{self.root}/engine.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._await_containerd_gone()
        command = [
            "dockerd",
            f"--host={self.address}",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'engine.pid'}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
        ]
        with (self.root / "engine.log").open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self._answers():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(f"the engine did not start; see {self.root / 'engine.log'}")

    def _answers(self) -> bool:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(2)
            try:
                probe.connect(self.address.removeprefix("unix://"))
                probe.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return b" 200 " in probe.recv(1024)
            except OSError:
                return False

    def _containerd(self) -> int | None:
        """The containerd this engine started, until it is gone (a zombie not yet reaped still
        counts: the engine's next start takes its pid file for a live containerd)."""
        pid_file = self.root / "exec" / "containerd" / "containerd.pid"
        try:
            pid = int(pid_file.read_text())
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        return pid if state == "Z" or self.root.as_posix() in _command_line(pid) else None

    def _await_containerd_gone(self) -> None:
        """A killed engine's containerd stops on its own; a new engine starts its own only once
        the old one is gone (and reaped)."""
        deadline = time.monotonic() + 60
        while (pid := self._containerd()) is not None:
            assert time.monotonic() < deadline, f"containerd {pid} of {self.root} stays"
            if self.root.as_posix() in _command_line(pid):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL, as a crash or an out-of-memory kill ends it."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=60)
        self.process = None

    def remove(self) -> None:
        """Kill it (its data goes too), end what it started (containerd, container shims:
        processes that name its folder), unmount what it mounted, and delete its folder."""
        if self.process is not None:
            self.kill()
        for pid in _pids_naming(self.root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for mount in sorted(_mounts_under(self.root), key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _pids_naming(folder: Path) -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and int(entry.name) != os.getpid()
        and folder.as_posix() in _command_line(int(entry.name))
    ]


def _mounts_under(folder: Path) -> list[str]:
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    points = [line.split()[1] for line in mounts]
    return [point for point in points if point.startswith(f"{folder}/")]


@pytest.fixture
def engine() -> Iterator[StandInEngine]:
    started = StandInEngine()
    try:
        started.start()
        yield started
    finally:
        started.remove()


class Build:
    """`reprobuild build --plain` in a subprocess, its progress read as it comes."""

    def __init__(self, project: Path, env: dict[str, str], *args: str) -> None:
        argv = [sys.executable, "-m", "builder", "-C", str(project), "build", "--plain", *args]
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.seen = threading.Condition()
        assert self.process.stderr is not None and self.process.stdout is not None
        self.stdout: IO[str] = self.process.stdout
        self.reader = threading.Thread(target=self._read, args=(self.process.stderr,))
        self.reader.start()

    def _read(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                with self.seen:
                    self.lines.append(line)
                    self.seen.notify_all()
        with self.seen:
            self.lines.append("")  # the end
            self.seen.notify_all()

    def wait_for(self, text: str) -> None:
        """Until a progress line holds `text`; fails if the build ends first."""
        deadline = time.monotonic() + WAIT_S
        with self.seen:
            while not any(text in line for line in self.lines):
                assert "" not in self.lines, f"the build ended before {text!r}:\n{self.output}"
                assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output}"
                self.seen.wait(1)

    def finish(self) -> int:
        code = self.process.wait(timeout=WAIT_S)
        self.reader.join()
        self.stdout.read()
        self.stdout.close()
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def error(self) -> str:
        """The error paragraph: one line, the last of stderr."""
        lines = self.output.splitlines()
        assert lines and lines[-1].startswith("error: "), self.output
        assert "Traceback" not in self.output, self.output
        return lines[-1]


@pytest.fixture
def our_images(engine_client: Any) -> Iterator[None]:
    yield
    for image_id in engine_client.client.api.images(all=True, quiet=True, filters={"label": TITLE}):
        engine_client.remove_image(image_id)


@pytest.mark.usefixtures("test_base", "our_images")
def test_a_registry_killed_mid_push_is_named_and_a_later_push_gives_the_same_digest(
    tmp_path: Path, registry: StandInRegistry, local_index: Any, engine_client: Any
) -> None:
    project = project_with_wheels(tmp_path / "project", local_index, torch_size=1 << 20)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    target = f"{registry.address}/test/outage:v1"
    build = Build(project, env, "--push", target)
    build.wait_for(f"pushing {target}")
    deadline = time.monotonic() + WAIT_S
    while not registry.uploading():
        assert build.process.poll() is None, build.output
        assert time.monotonic() < deadline
        time.sleep(0.01)
    registry.kill()
    assert build.finish() == 1
    message = build.error()
    assert message.startswith(
        f"error: the registry {registry.address} did not answer while the engine pushed {target} ("
    )
    assert message.endswith(
        "). Check that it runs and that this host reaches it, then push again (`reprobuild build "
        f"--push {target}`): the image is built, and the layers the registry already holds are "
        "not sent again."
    )
    assert not (project / layout.RECORD_FILE).exists()  # no record claims a push
    assert temporary_files(project) == []
    # Back (its storage as it was), the same command pushes, and the push is the push of an
    # image pushed whole to a registry that never saw it.
    registry.start()
    again = Build(project, env, "--push", target)
    assert again.finish() == 0, again.output
    record = buildrecord.read(project)
    assert record.manifest_digest == registry.holds("test/outage", "v1")
    assert record.pushed == f"{registry.address}/test/outage@{record.manifest_digest}"
    fresh = StandInRegistry(tmp_path / "fresh")
    fresh.start()
    try:
        reference = f"{fresh.address}/test/outage:v1"
        engine_client.tag(record.image_id, reference)
        assert engine_client.push(reference) == record.manifest_digest
    finally:
        fresh.stop()


@pytest.mark.usefixtures("test_base", "our_images")
def test_a_registry_back_within_the_engines_retries_takes_the_push(
    tmp_path: Path, registry: StandInRegistry, local_index: Any
) -> None:
    project = project_with_wheels(tmp_path / "project", local_index, torch_size=1 << 20)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    target = f"{registry.address}/test/outage:v1"
    build = Build(project, env, "--push", target)
    build.wait_for(f"pushing {target}")
    while not registry.uploading():
        assert build.process.poll() is None, build.output
        time.sleep(0.01)
    registry.kill()
    time.sleep(1)
    registry.start()  # the engine tries a layer five times, the first again after 5 s
    assert build.finish() == 0, build.output
    record = buildrecord.read(project)
    assert record.manifest_digest == registry.holds("test/outage", "v1")


@pytest.mark.parametrize(
    "moment",
    [
        "[4/5] RUN",  # a step's container runs
        "normalising: reading the built image",  # the engine exports the built image
        "dependencies: installing torch",  # the dependencies image is being sent to the engine
    ],
)
def test_an_engine_killed_mid_build_is_named_and_the_next_build_succeeds(
    tmp_path: Path, engine: StandInEngine, local_index: Any, test_base: str, moment: str
) -> None:
    project = project_with_wheels(tmp_path / "project", local_index, torch_size=30 << 20)
    cache = tmp_path / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "DOCKER_HOST": engine.address}
    build = Build(project, env)
    build.wait_for(moment)
    engine.kill()
    assert build.finish() == 1
    message = build.error()
    assert message.startswith(f"error: the Docker engine at {engine.address} stopped answering ")
    assert message.endswith(
        "): it stopped or restarted. Check that it runs (`docker info`; its log: `journalctl -u "
        "docker`, or the output of dockerd), then run the command again."
    )
    assert not (project / layout.RECORD_FILE).exists()
    assert temporary_files(project) == [] and temporary_files(cache) == []
    engine.start()
    again = Build(project, env)
    assert again.finish() == 0, again.output
    record = buildrecord.read(project)
    assert record.image.startswith(f"{NAME}:")
    with Engine.connect(engine.address) as client:
        assert client.image_id(record.image) == record.image_id


def test_a_body_that_cannot_be_made_is_raised_as_itself_not_as_a_lost_engine(
    engine_client: Any,
) -> None:
    def archive() -> Iterator[bytes]:
        yield bytes(1024)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as raised:
        engine_client.load_stream(archive())
    # Not the HTTP client's ConnectionError (an OSError too) that wraps it.
    assert type(raised.value) is OSError and raised.value.errno == errno.ENOSPC
