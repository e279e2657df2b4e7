"""Throw-away stand-ins the fault tests start and stop themselves (the shared test engine and
registry are never stopped): a `docker-registry` on a free port of 127.0.0.1 with its own
storage, a `dockerd` with its own socket, data root and exec root, no bridge and no firewall
rules; and `reprobuild build` as a subprocess whose progress is read as it comes."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPROBUILD = Path(sys.executable).parent / "reprobuild"
WAIT_S = 300  # for a line or an exit; builds take seconds, this machine may be busy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Started:
    process: subprocess.Popen[bytes] | None

    def kill(self) -> None:
        """SIGKILL, as a crash or an out-of-memory kill ends it."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=60)
        self.process = None


class StandInRegistry(_Started):
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


class StandInEngine(_Started):
    """A dockerd of its own: socket, data root and exec root under a short folder of /tmp
    (a unix socket's path has a length limit), no bridge, no firewall rules."""

    def __init__(self, root: Path | None = None, address: str | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="rb-engine-", dir="/tmp"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.address = address or f"unix://{self.root}/engine.sock"
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
        # A socket it made outside its folder (the default socket, standing in for the user's
        # engine) would be left behind, answering nothing.
        Path(self.address.removeprefix("unix://")).unlink(missing_ok=True)


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


# A build as a subprocess, read line by line.


class BuildRun:
    """`reprobuild -C project build --plain ARGS`, in its own session (a Ctrl-C goes to its
    whole process group, as a terminal sends it), stdout and stderr read as one stream."""

    def __init__(self, project: Path, env: dict[str, str], *args: str) -> None:
        self.env = env
        argv = [str(REPROBUILD), "-C", str(project), "build", "--plain", *args]
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            start_new_session=True,
        )
        self.started = time.time()
        self.lines: list[tuple[float, str]] = []
        self._arrived: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))
            self._arrived.put(line)
        self._arrived.put(None)

    def wait_for(self, text: str, also: threading.Event | None = None) -> float:
        """Until a line holding `text` has come (and `also` is set); when it came."""
        deadline = time.monotonic() + WAIT_S
        seen = 0
        while True:
            found = [at for at, line in self.lines[seen:] if text in line]
            if found and (also is None or also.wait(max(0.0, deadline - time.monotonic()))):
                return found[0]
            seen = len(self.lines)
            remaining = deadline - time.monotonic()
            try:
                if self._arrived.get(timeout=max(0.01, remaining)) is None and not found:
                    raise AssertionError(f"the build ended before {text!r}:\n{self.output}")
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {WAIT_S} s:\n{self.output}") from None

    def interrupt(self, how: signal.Signals) -> None:
        if how == signal.SIGINT:
            os.killpg(self.process.pid, signal.SIGINT)
        else:
            os.kill(self.process.pid, how)

    def finish(self) -> int:
        code = self.process.wait(WAIT_S)
        deadline = time.monotonic() + 10
        while self._arrived.get(timeout=max(0.01, deadline - time.monotonic())) is not None:
            pass
        self._reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code

    def __enter__(self) -> BuildRun:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        """What the run left running (a child the SIGKILL did not reach) goes."""
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def error(self) -> str:
        """The error paragraph: one line, the last of the output."""
        lines = self.output.splitlines()
        assert lines and lines[-1].startswith("error: "), self.output
        assert "Traceback" not in self.output, self.output
        return lines[-1]

    def after(self, text: str) -> list[str]:
        """The lines after the first that holds `text`."""
        lines = [line for _, line in self.lines]
        first = next(index for index, line in enumerate(lines) if text in line)
        return lines[first + 1 :]
