"""The doctor: real probes on this machine (no NVIDIA driver, no engine at a dead socket), and the
image verdict on host records of GPU machines (CI has no GPU; tests/gpu/ runs where one is)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from builder import knowledge
from builder.check import doctor
from builder.compat import ComputeCapability, CudaVersion, DriverVersion
from builder.engine import host
from builder.engine.host import EngineHost, HostGpu, NvidiaHost
from builder.resolve import resolve, target
from builder.spec.check import load_spec

KB = knowledge.load()
EXAMPLE = Path(__file__).parents[3] / "images" / "example"
CUDA_13 = CudaVersion(13, 0)
NO_ENGINE = EngineHost("unix:///x.sock", None, None, (), None, "no Docker engine answers ...")


def example_resolution() -> resolve.Resolution:
    loaded = load_spec(EXAMPLE, KB).spec
    return resolve.resolve(loaded, target.from_spec(loaded.target), KB)


def gpu_host(
    name: str,
    major: int,
    minor: int,
    driver: str = "580.159.04",
    cuda: CudaVersion | None = CUDA_13,
) -> NvidiaHost:
    gpu = HostGpu(0, name, ComputeCapability(major, minor), 85520809984, 132, "GPU-1")
    return NvidiaHost(DriverVersion.parse(driver), cuda, (gpu,))


RUNTIME = "the NVIDIA container runtime checks the image's NVIDIA_REQUIRE_CUDA="
REQUIRE = "cuda>=12.0,driver>=525.60.13"


@pytest.mark.skipif(host.probe_nvidia().problem is None, reason="this host has an NVIDIA driver")
def test_probe_without_driver_says_so() -> None:
    found = host.probe_nvidia()
    assert found.problem == (
        "no NVIDIA driver: the NVML library (libnvidia-ml.so.1) is not installed. Install the "
        "NVIDIA driver on a GPU machine; on a machine without a GPU this is expected."
    )
    assert found.gpus == () and found.driver is None


def test_probe_of_a_missing_engine_names_the_fix(tmp_path: Path) -> None:
    address = f"unix://{tmp_path}/docker.sock"
    found = host.probe_engine(address)
    assert found.version is None
    assert found.problem is not None
    assert found.problem.startswith(f"no Docker engine answers at {address} (")
    assert found.problem.endswith(
        "Start one: on Debian `apt-get install docker.io` then `dockerd &` (or `systemctl start "
        "docker`); or set DOCKER_HOST to a running engine."
    )


def test_h100_host_runs_the_example_image() -> None:
    report = doctor.examine(
        gpu_host("NVIDIA H100 80GB HBM3", 9, 0), NO_ENGINE, example_resolution(), KB
    )
    assert report.runs_here is True
    details = [(c.status, c.detail) for c in report.checks if c.topic == "image"]
    assert details == [
        ("ok", f"driver 580.159.04 (CUDA 13.0) runs CUDA 12.4: {RUNTIME}{REQUIRE} and starts it"),
        ("ok", "NVIDIA H100 80GB HBM3 (sm_90) runs the sm_90 kernels"),
    ]
    assert ("gpu 0", "info", "NVIDIA H100 80GB HBM3, sm_90, 80 GiB, 132 SMs") in [
        (c.topic, c.status, c.detail) for c in report.checks
    ]


def test_rtx_5090_host_cannot_run_it() -> None:
    report = doctor.examine(
        gpu_host("NVIDIA GeForce RTX 5090", 12, 0), NO_ENGINE, example_resolution(), KB
    )
    assert report.runs_here is False
    assert [c.detail for c in report.checks if c.status == "fail"] == [
        "no kernels for NVIDIA GeForce RTX 5090 (sm_120): built for sm_50 sm_60 sm_70 sm_75 sm_80 "
        "sm_86 sm_90"
    ]


def test_old_driver_host_cannot_run_it() -> None:
    old = gpu_host("NVIDIA A100", 8, 0, "470.82.01", CudaVersion(11, 4))
    report = doctor.examine(old, NO_ENGINE, example_resolution(), KB)
    assert [c.detail for c in report.checks if c.status == "fail"] == [
        f"driver 470.82.01 (CUDA 11.4) fails cuda>=12.0: {RUNTIME}{REQUIRE} and refuses to start "
        "it. CUDA 12.4 needs a driver >= 525.60.13: update the driver."
    ]


def test_the_example_runs_on_its_own_target_driver() -> None:
    """The R535 driver the example targets: the resolver admits it for CUDA 12.4 under
    minor-version compatibility, and so does the runtime's check of the value the plan writes.
    Without NVML's CUDA version, the knowledge base's driver table stands in."""
    r535 = gpu_host("NVIDIA H100 80GB HBM3", 9, 0, "535.104.05", None)
    report = doctor.examine(r535, NO_ENGINE, example_resolution(), KB)
    assert report.runs_here is True
    assert [(c.status, c.detail) for c in report.checks if c.topic == "image"] == [
        ("ok", f"driver 535.104.05 (CUDA 12.2) runs CUDA 12.4: {RUNTIME}{REQUIRE} and starts it"),
        ("ok", "NVIDIA H100 80GB HBM3 (sm_90) runs the sm_90 kernels"),
        (
            "info",
            "runs under CUDA minor-version compatibility: driver 535.104.05 is older than "
            "550.54.14 of the CUDA 12.4 toolkit, so JIT of newer PTX is unavailable",
        ),
    ]


@pytest.mark.parametrize(
    ("driver", "cuda", "runs"),
    [
        ("520.61.05", CudaVersion(11, 8), False),
        ("525.60.12", CudaVersion(12, 0), False),
        ("525.60.13", CudaVersion(12, 0), True),
        ("550.54.14", CudaVersion(12, 4), True),
    ],
)
def test_the_doctor_and_the_resolver_agree_at_the_floor(
    driver: str, cuda: CudaVersion, runs: bool
) -> None:
    report = doctor.examine(
        gpu_host("NVIDIA H100 80GB HBM3", 9, 0, driver, cuda), NO_ENGINE, example_resolution(), KB
    )
    on_host = target.Target(DriverVersion.parse(driver), (), "host")
    build = example_resolution().build
    assert resolve.judge(build, resolve.Request(None, None, None, on_host), KB).eligible is runs
    assert report.runs_here is runs
    assert len([c for c in report.checks if c.status == "fail"]) == (0 if runs else 1)


def test_a_failing_driver_and_missing_kernels_are_both_named() -> None:
    old = gpu_host("NVIDIA GeForce RTX 5090", 12, 0, "470.82.01", CudaVersion(11, 4))
    report = doctor.examine(old, NO_ENGINE, example_resolution(), KB)
    assert [c.detail[:38] for c in report.checks if c.status == "fail"] == [
        "driver 470.82.01 (CUDA 11.4) fails cud",
        "no kernels for NVIDIA GeForce RTX 5090",
    ]


def test_a_resolution_without_a_driver_floor_fails() -> None:
    floorless = replace(example_resolution(), min_driver=None)
    report = doctor.examine(gpu_host("NVIDIA A100", 8, 0), NO_ENGINE, floorless, KB)
    assert [c.detail for c in report.checks if c.status == "fail"] == [
        "the knowledge base has no driver floor for CUDA 12.4"
    ]


def test_no_driver_fails_a_cuda_image_but_not_the_host_report() -> None:
    bare = NvidiaHost(None, None, (), "no NVIDIA driver: ...")
    assert doctor.examine(bare, NO_ENGINE, None, KB).runs_here is None
    report = doctor.examine(bare, NO_ENGINE, example_resolution(), KB)
    assert report.runs_here is False
    assert [c.detail for c in report.checks if c.status == "fail"] == [
        "a CUDA 12.4 image needs an NVIDIA driver here"
    ]


def test_engine_without_nvidia_runtime_is_a_warning() -> None:
    engine = EngineHost(
        "unix:///var/run/docker.sock", "20.10.24", "1.41", ("io.containerd.runc.v2", "runc"), "runc"
    )
    checks = doctor.examine(NvidiaHost(None, None, (), "x"), engine, None, KB).checks
    assert [(c.topic, c.status) for c in checks] == [
        ("nvidia driver", "warn"),
        ("docker engine", "ok"),
        ("nvidia runtime", "warn"),
    ]
    assert checks[1].detail == "Docker Engine 20.10.24 (API 1.41)"


def test_driver_without_gpu_fails_a_cuda_image() -> None:
    no_gpu = NvidiaHost(DriverVersion.parse("580.159.04"), CudaVersion(13, 0), ())
    report = doctor.examine(no_gpu, NO_ENGINE, example_resolution(), KB)
    assert report.runs_here is False
    assert [c.detail for c in report.checks if c.status == "fail"] == [
        "the driver lists no GPU; a CUDA 12.4 image needs one"
    ]


def test_cuda_uuid_bytes_read_as_nvml_writes_them() -> None:
    raw = bytes.fromhex("343ead0d3f23e357f229606dfda9f570")
    assert host.nvml_uuid(raw) == "GPU-343ead0d-3f23-e357-f229-606dfda9f570"


def test_an_image_for_another_platform_does_not_run_here(tmp_path: Path) -> None:
    (tmp_path / "reprobuild.toml").write_text(
        'name = "lab/arm"\npython = "3.11"\ntorch = "2.10.*"\ncpu_only = true\n'
        'platforms = ["linux/arm64"]\n'
    )
    spec = load_spec(tmp_path, KB).spec
    arm = resolve.resolve(spec, target.from_spec(spec.target), KB, knowledge.ARM64)
    bare = NvidiaHost(None, None, (), "no NVIDIA driver")
    report = doctor.examine(bare, NO_ENGINE, arm, KB, machine="x86_64")
    assert report.image == "lab/arm (torch 2.10.0+cpu, Python 3.11, linux/arm64)"
    assert [c for c in report.checks if c.topic == "platform"] == [
        doctor.Check(
            "platform",
            doctor.FAIL,
            "the image is linux/arm64 and this machine's CPU (x86_64) runs linux/amd64 images: "
            'run it on a linux/arm64 machine, or add "linux/amd64" to the spec\'s platforms for '
            "an image this machine runs",
        )
    ]
    assert report.runs_here is False
    on_arm = doctor.examine(bare, NO_ENGINE, arm, KB, machine="aarch64")
    assert [c.status for c in on_arm.checks if c.topic == "platform"] == [doctor.OK]
    assert on_arm.runs_here is True
    amd = doctor.examine(bare, NO_ENGINE, example_resolution(), KB, machine="x86_64")
    assert amd.image == "reprobuild/example-train (torch 2.5.1+cu124, Python 3.11, linux/amd64)"
