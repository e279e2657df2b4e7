"""`reprobuild smoke --ranks N` on the host: the payload's command line, the refusal of more ranks
than GPUs before any container starts, and the report with its group read back. The engine is
answered from memory here; tests/integration/test_smoke_ranks.py runs the real one."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from builder.build.recordfile import ImageToRun
from builder.check.smoke import check_ranks, command, mode_text, run_noted, run_smoke
from builder.engine import emulation
from builder.engine.sdk import RunResult
from builder.errors import USAGE, EmulationMissing, SmokeUsage
from builder.smoke.runner import PASS, Report
from tests.cli import reprobuild

if TYPE_CHECKING:
    from builder.engine.sdk import Engine

IMAGE = ImageToRun("lab/train:v1", "sha256:" + "ab" * 32, None)
REFUSED = (
    "--ranks 3 needs 3 GPUs, one per rank, but --gpus 2 gives the container 2: give --gpus 3 "
    "(or all), or use --ranks 2 or fewer; --cpu runs the ranks on the CPU, over gloo."
)


@dataclass
class _Engine:
    """What the stage asks of the engine, recorded; the payload's report as its answer."""

    stdout: str = ""
    calls: list[tuple[str, list[str], dict[str, Any]]] = field(default_factory=list)
    architecture: str = "amd64"  # the image's; the engine runs linux/amd64 natively
    target: str = "unix:///var/run/docker.sock"  # a local engine: its kernel's binfmt_misc is read

    def run(self, image: str, command: list[str], **options: Any) -> RunResult:
        self.calls.append((image, command, options))
        return RunResult(PASS, self.stdout, "")

    def inspect_image(self, _image: str) -> dict[str, Any]:
        return {"Os": "linux", "Architecture": self.architecture}

    @staticmethod
    def platform() -> str:
        return "linux/amd64"


def payload_report() -> str:
    """A report as the payload writes it (its own record type) for a group of 2 over gloo."""
    runs = {name: ["ab" * 32, "ab" * 32] for name in ("index_add_", "distributed_ddp_step")}
    group = {"world_size": 2, "backend": "gloo", "backend_version": "2.5.1+cu124"}
    report = Report(mode="cpu", key={"device": "cpu", "distributed": group}, kernels=runs)
    report.canary = {"witnesses": 9, "differed": 0, "names": []}
    return json.dumps(report.as_dict())


def test_the_payloads_command_line() -> None:
    assert command(cpu=True, canary=True) == ["reprobuild-smoke", "--json", "--cpu"]
    assert command(cpu=False, canary=False, ranks=1) == [
        "reprobuild-smoke",
        "--json",
        "--no-canary",
    ]
    assert command(cpu=False, canary=True, ranks=4) == [
        "reprobuild-smoke",
        "--json",
        "--ranks",
        "4",
    ]
    assert command(cpu=True, canary=False, ranks=2) == [
        "reprobuild-smoke",
        "--json",
        "--cpu",
        "--no-canary",
        "--ranks",
        "2",
    ]
    assert mode_text(None, 2) == "CPU mode, 2 ranks" and mode_text("all") == "--gpus all"


def test_more_ranks_than_the_gpus_given_is_refused() -> None:
    with pytest.raises(SmokeUsage) as refused:
        check_ranks(3, "2")
    assert str(refused.value) == REFUSED and refused.value.exit_code == USAGE
    with pytest.raises(SmokeUsage, match=r"^--ranks 0: give 1 \(no process group\), or 2 or more"):
        check_ranks(0, None)
    for ranks, gpus in ((3, "3"), (8, "all"), (8, None), (1, "1")):
        check_ranks(ranks, gpus)  # the payload counts what `all` gives; the CPU has no limit


def test_the_refusal_comes_before_the_container() -> None:
    engine = _Engine(payload_report())
    notes: list[str] = []
    with pytest.raises(SmokeUsage, match=r"^--ranks 3 needs 3 GPUs"):
        run_noted(cast("Engine", engine), IMAGE, gpus="2", note=notes.append, ranks=3)
    assert engine.calls == [] and notes == []


def test_the_group_reaches_the_payload_and_its_key_comes_back() -> None:
    engine = _Engine(payload_report())
    notes: list[str] = []
    ran = run_noted(cast("Engine", engine), IMAGE, gpus=None, note=notes.append, ranks=2)
    assert notes == ["running the smoke test in lab/train:v1 (CPU mode, 2 ranks)"]
    assert engine.calls == [
        (
            IMAGE.image_id,
            ["reprobuild-smoke", "--json", "--cpu", "--ranks", "2"],
            {
                "gpus": None,
                "network": False,
                "timeout_s": 1200,
                "shm_size": 2**30,
                "environment": None,
            },
        )
    ]
    assert ran.exit_code == PASS and ran.report["verdict"] == "pass"
    assert ran.report["key"]["distributed"] == {
        "world_size": 2,
        "backend": "gloo",
        "backend_version": "2.5.1+cu124",
    }
    one = _Engine(payload_report())
    run_smoke(cast("Engine", one), IMAGE, gpus="all")
    assert one.calls[0][1] == ["reprobuild-smoke", "--json"]  # no --ranks: as before


REGISTERED = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n"


@pytest.fixture
def binfmt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The kernel's binfmt_misc as a folder: this test reads, never changes, the real one."""
    monkeypatch.setattr(emulation, "BINFMT", tmp_path)
    (tmp_path / "status").write_text("enabled\n")
    return tmp_path


def test_an_arm64_image_runs_emulated_in_cpu_mode_only(binfmt: Path) -> None:
    # No emulation is started here: the engine is answered from memory, with an arm64 image.
    (binfmt / "qemu-aarch64").write_text(REGISTERED)
    engine = _Engine(payload_report(), architecture="arm64")
    run_smoke(cast("Engine", engine), IMAGE, gpus=None)
    (_, _, options), *_ = engine.calls
    assert options["environment"] == {"QEMU_CPU": "max,sve-default-vector-length=16"}
    refused = _Engine(payload_report(), architecture="arm64")
    with pytest.raises(SmokeUsage) as caught:
        run_smoke(cast("Engine", refused), IMAGE, gpus="all")
    assert str(caught.value) == (
        "lab/train:v1 is a linux/arm64 image, which this x86_64 machine runs under qemu "
        "emulation, and emulation reaches no GPU: run `reprobuild smoke --cpu` here, or the GPU "
        "smoke test on a linux/arm64 machine (a GH200, GB200 or GB300 node)."
    )
    assert refused.calls == [] and caught.value.exit_code == USAGE


def test_without_qemu_an_arm64_image_is_refused_before_it_runs(binfmt: Path) -> None:
    engine = _Engine(payload_report(), architecture="arm64")
    with pytest.raises(EmulationMissing) as caught:
        run_smoke(cast("Engine", engine), IMAGE, gpus=None)
    assert str(caught.value) == (
        "the smoke test of lab/train:v1 runs linux/arm64 programs, which this x86_64 machine "
        f"runs only under qemu emulation, and no qemu-aarch64 is registered in {binfmt}. Install "
        "Debian's qemu-user-static and binfmt-support (`apt-get install qemu-user-static "
        "binfmt-support`), mount binfmt_misc where it is not (`mount -t binfmt_misc binfmt_misc "
        f"{binfmt}`) and register qemu (`update-binfmts --enable qemu-aarch64`); or run this on "
        "an aarch64 machine."
    )
    assert engine.calls == [] and caught.value.exit_code == 4


def cli(*args: str) -> tuple[int, str]:
    """`reprobuild smoke` with no engine: a refusal shows before any attempt to reach one."""
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    result = reprobuild("smoke", "lab/train:v1", *args, env=env)
    assert result.stdout == ""
    return result.returncode, result.stderr


def test_the_command_refuses_more_ranks_than_gpus_before_the_engine() -> None:
    code, stderr = cli("--gpus", "2", "--ranks", "3")
    assert code == USAGE and stderr == f"error: {REFUSED}\n"
    code, stderr = cli("--ranks", "0")
    assert code == USAGE
    assert (
        stderr.splitlines()[-1] == "Error: Invalid value for '--ranks': 0 is not in the range x>=1."
    )
    code, stderr = cli("--cpu", "--ranks", "4")  # accepted: it goes on to the (missing) engine
    assert code == 1 and stderr.startswith("error: no Docker engine answers at unix:///nonexistent")
