"""The process groups of `--ranks N`, from the runner's side: N fresh processes on this machine
that form one torch.distributed group, watched until every rank has answered, one has failed, or
the time is up. Standard library only, like the runner.

Rank 0 hosts the group's TCPStore on the loopback address, on a port the runner found free by
binding to port 0. A rank that fails says why in its last line and leaves at once; its peers
would otherwise wait for it up to the collectives' timeout, so the runner stops them as soon as
it sees one rank fail and reports that rank's message.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Any

LOOPBACK = "127.0.0.1"
# The store's and every collective's timeout in the ranks: a rank that hangs becomes an error.
COLLECTIVE_TIMEOUT_S = 120
POLL_S = 0.05
# Below this, /dev/shm is likely what an NCCL failure in a container is about (the engine's
# default is 64 MB; NCCL's shared-memory transport and proxy need more).
NCCL_SHM_BYTES = 1 << 30


class GroupFailed(Exception):
    """A rank failed, or the group did not answer in time: the group's error in the report."""


def free_port() -> int:
    """A loopback port no one listens on now (bound to 0, read, closed): rank 0's store takes
    it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class _Rank:
    rank: int
    process: subprocess.Popen[bytes]
    # Files, not pipes: the runner waits on every rank at once, and a rank whose pipe filled up
    # while nobody read it would block its peers.
    stdout: IO[bytes]
    stderr: IO[bytes]
    ended_at: float | None = None  # time.time() when the runner first saw it exit

    def finished(self) -> bool:
        if self.ended_at is None and self.process.poll() is not None:
            self.ended_at = time.time()
        return self.ended_at is not None

    def failed(self) -> bool:
        return self.finished() and self.process.returncode != 0

    def answer(self) -> dict[str, Any] | None:
        """Its last JSON line on stdout: the fingerprints, or the error it failed with."""
        self.stdout.seek(0)
        text = self.stdout.read().decode("utf-8", errors="replace")
        lines = [line for line in text.splitlines() if line.startswith("{")]
        if not lines:
            return None
        answer: dict[str, Any] = json.loads(lines[-1])
        return answer

    def failure(self, world_size: int) -> tuple[float, str]:
        """When it failed (its own clock where it said so) and its message."""
        who = f"rank {self.rank} of {world_size}"
        answer = self.answer()
        if answer is not None and "error" in answer:
            return float(answer["at"]), f"{who} failed: {answer['error']}"
        self.stderr.seek(0)
        lines = self.stderr.read().decode("utf-8", errors="replace").strip().splitlines()
        last = lines[-1] if lines else "(no output)"
        ended = self.ended_at or time.time()
        return ended, f"{who} exited {self.process.returncode}: {last}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.stdout.close()
        self.stderr.close()


@dataclass
class Group:
    role: str
    gpu: bool  # NCCL on GPUs, gloo on the CPU
    ranks: list[_Rank]

    def answers(self, deadline: float, limit_s: int) -> list[dict[str, Any]]:
        """Every rank's answer, in rank order; GroupFailed names the first rank that failed."""
        while not self._ended():
            if any(rank.failed() for rank in self.ranks):
                raise GroupFailed(self._first_failure())
            if time.perf_counter() > deadline:
                waiting = [str(rank.rank) for rank in self.ranks if not rank.finished()]
                raise GroupFailed(
                    f"rank {', '.join(waiting)} of {len(self.ranks)} did not answer within "
                    f"{limit_s} s"
                )
            time.sleep(POLL_S)
        if any(rank.failed() for rank in self.ranks):
            raise GroupFailed(self._first_failure())
        answers = []
        for rank in self.ranks:
            answer = rank.answer()
            if answer is None:
                raise GroupFailed(
                    f"rank {rank.rank} of {len(self.ranks)} exited 0 without an answer"
                )
            answers.append(answer)
        return answers

    def _ended(self) -> bool:
        """Whether every rank has exited; each one is looked at, so that each exit is timed."""
        ended = [rank.finished() for rank in self.ranks]
        return all(ended)

    def _first_failure(self) -> str:
        # Once one rank fails, its peers fail too (a closed connection, a store gone): the
        # earliest failure is the cause.
        failures = sorted(rank.failure(len(self.ranks)) for rank in self.ranks if rank.failed())
        message = failures[0][1]
        return message + shm_note(message, _shm_bytes()) if self.gpu else message

    def stop(self) -> None:
        for rank in self.ranks:
            rank.stop()


def shm_note(message: str, shm_bytes: int | None) -> str:
    """A clause for an NCCL failure where /dev/shm is small, as a container's is by default."""
    if "nccl" not in message.lower() or shm_bytes is None or shm_bytes >= NCCL_SHM_BYTES:
        return ""
    return (
        f" (/dev/shm here is {shm_bytes >> 20} MiB, and NCCL needs more: run the container with "
        "--shm-size 1g or more, or --ipc host)"
    )


def _shm_bytes() -> int | None:
    try:
        found = os.statvfs("/dev/shm")
    except OSError:
        return None
    return found.f_frsize * found.f_blocks


def start(
    package: str,
    role: str,
    mode: str,
    world_size: int,
    *,
    cpu: bool,
    self_test: bool,
    env: dict[str, str],
) -> Group:
    """world_size fresh processes (`python -m <package> --child MODE --rank R ...`) that form one
    group; mode is `deterministic` or `canary`, as for the suite's processes."""
    port = free_port()
    ranks: list[_Rank] = []
    try:
        for rank in range(world_size):
            argv = [sys.executable, "-m", package, "--child", mode, "--ranks", str(world_size)]
            argv += ["--rank", str(rank), "--port", str(port)]
            argv += ["--cpu"] if cpu else []
            argv += ["--self-test"] if self_test else []
            ranks.append(_launch(rank, argv, _environment(env, cpu)))
    except BaseException:
        for started in ranks:
            started.stop()
        raise
    return Group(role, not cpu, ranks)


def _launch(rank: int, argv: list[str], env: dict[str, str]) -> _Rank:
    # Closed by _Rank.stop, which the runner calls in its `finally`.
    stdout, stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115
    try:
        process = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env)
    except BaseException:
        stdout.close()
        stderr.close()
        raise
    return _Rank(rank, process, stdout, stderr)


def _environment(env: dict[str, str], cpu: bool) -> dict[str, str]:
    """The suite's environment, with gloo on the loopback interface: the container may have no
    other, and a hostname that resolves to nothing."""
    if not cpu:
        return env
    return {**env, "GLOO_SOCKET_IFNAME": env.get("GLOO_SOCKET_IFNAME") or "lo"}


def problems(role: str, answers: list[dict[str, Any]], key: dict[str, Any]) -> dict[str, str]:
    """What is wrong in a deterministic group that answered, by the report's error names: a
    rank whose bits differ from rank 0's (every rank holds the all_reduce's sum, and DDP keeps
    its replicas equal), or one that ran with other settings or saw another key than the
    suite's processes, whose key is `key`."""
    found: dict[str, str] = {}
    world_size = len(answers)
    for answer in answers[1:]:
        for name in _disagreeing(answers[0]["fingerprints"], answer["fingerprints"]):
            found[name] = (
                f"rank {answer['rank']} of {world_size} ended with other bits than rank 0 in "
                f"the {role} group"
            )
    for answer in answers:
        unlike = _unlike(key, answer)
        if unlike:
            found[f"distributed {role}"] = f"rank {answer['rank']} of {world_size} {unlike}"
    return found


def _disagreeing(first: dict[str, str], other: dict[str, str]) -> list[str]:
    return sorted(name for name in set(first) | set(other) if first.get(name) != other.get(name))


def _unlike(key: dict[str, Any], answer: dict[str, Any]) -> str | None:
    """How a rank's settings and group key differ from the suite processes' (a clause)."""
    rank, suite = answer["settings"], key.get("settings", {})
    changed = sorted(name for name in set(rank) | set(suite) if rank.get(name) != suite.get(name))
    if changed:
        return f"ran with other settings than the suite's processes: {', '.join(changed)}"
    if answer["distributed"] != key.get("distributed"):
        return "saw another group key than the suite's processes"
    return None
