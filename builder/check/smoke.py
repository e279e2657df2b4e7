"""`reprobuild smoke IMAGE`: run the image's own smoke payload through the Docker engine.

The payload (builder/smoke, installed in every image as `reprobuild-smoke`) does the proving; this
stage gives it the GPUs (the engine's device requests, i.e. the NVIDIA container runtime), runs
it by image ID with the network off as the image's own non-root user, and reads its JSON report.

With `--ranks N` the payload also runs process groups on the container's loopback interface
(which stays up with the network off), with a 1 GiB /dev/shm, where NCCL's ranks on one host
exchange buffers (the engine's default is 64 MB; gloo needs none).

An image of another platform than this machine's (linux/arm64 on x86_64) runs under qemu-user
through the kernel's binfmt_misc, in CPU mode only, with a Grace-like emulated CPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

from builder.engine import emulation
from builder.engine.emulation import refuse_without_emulation
from builder.errors import CommandNotFound, SmokeError, SmokeUsage, tail
from builder.knowledge import ARM64
from builder.shapes import typed
from builder.smoke import describe, group

if TYPE_CHECKING:
    from builder.build.recordfile import ImageToRun
    from builder.engine.sdk import Engine, RunResult

NOT_FOUND_EXIT = 127
TIMEOUT_S = 1200
# qemu-user reads QEMU_CPU from the container's environment. Its default CPU emulates SVE at a
# long vector length, and torch's BLAS then runs 20x slower than at 128-bit SVE, which is also
# what Grace's Neoverse V2 cores have (measured: 256x256 fp32 matmul 1,057 ms vs 64 ms).
EMULATION_ENVIRONMENT = {ARM64: {"QEMU_CPU": "max,sve-default-vector-length=16"}}
GPU_NODES = {ARM64: " (a GH200, GB200 or GB300 node)"}


NO_PAYLOAD = (
    "{image} has no reprobuild-smoke on its PATH: only images made by `reprobuild build` carry "
    "the smoke payload. Build the project's image, or name one that was."
)


Verdict = Literal["pass", "fail", "unproven", "precondition"]


class KernelResult(TypedDict):
    runs: list[str]  # the fingerprint (sha256 of the output tensor) in each deterministic process
    identical: bool


class SmokeReport(TypedDict):
    """The payload's JSON report (builder/smoke/runner.py, `Report.as_dict`), as published."""

    mode: str  # "gpu" or "cpu"
    verdict: Verdict
    key: dict[str, Any]  # the fingerprint key: hardware and stack that identical bits need
    # (with --ranks N, key["distributed"]: world_size, backend, backend_version, ...)
    preconditions: list[dict[str, Any]]  # name, ok, detail
    kernels: dict[str, KernelResult]
    errors: dict[str, str]
    skipped: dict[str, str]
    canary: dict[str, Any]  # witnesses, differed, ...
    seconds: dict[str, float]
    wall_s: float


class ImageSmokeReport(SmokeReport):
    """`reprobuild smoke --json`: the report, with the image it ran in."""

    image: str
    image_id: str
    gpus: str | None


@dataclass(frozen=True)
class SmokeRun:
    image: str
    image_id: str
    gpus: str | None  # None: the CPU mode
    exit_code: int  # the payload's: 0 pass, 1 fail, 3 unproven, 4 precondition
    report: SmokeReport

    def to_dict(self) -> ImageSmokeReport:
        return {"image": self.image, "image_id": self.image_id, "gpus": self.gpus, **self.report}


def report_text(report: SmokeReport) -> str:
    """The report for people, in the payload's own words (`reprobuild-smoke` in the image)."""
    return describe.text(cast("dict[str, Any]", report))  # the payload reads plain JSON


def differing_kernels(report: SmokeReport) -> list[str]:
    """The kernels whose fingerprints differed between the two deterministic processes."""
    return describe.differing_kernels(cast("dict[str, Any]", report))


def command(*, cpu: bool, canary: bool, ranks: int = 1) -> list[str]:
    # The in-image command checks the lock's versions (/opt/reprobuild/expect.json) by itself.
    argv = ["reprobuild-smoke", "--json"]
    argv += (["--cpu"] if cpu else []) + ([] if canary else ["--no-canary"])
    return argv + (["--ranks", str(ranks)] if ranks > 1 else [])


def check_ranks(ranks: int, gpus: str | None) -> None:
    """GPU mode runs one rank per GPU: `--gpus N` with fewer than `ranks` is refused here,
    before an image is pulled or a container started. With `--gpus all` the payload counts
    the GPUs it sees, a precondition."""
    if ranks < 1:
        raise SmokeUsage(f"--ranks {ranks}: give 1 (no process group), or 2 or more ranks.")
    if gpus is None or gpus == "all" or int(gpus) >= ranks:
        return
    raise SmokeUsage(
        f"--ranks {ranks} needs {ranks} GPUs, one per rank, but --gpus {gpus} gives the "
        f"container {gpus}: give --gpus {ranks} (or all), or use --ranks {gpus} or fewer; "
        "--cpu runs the ranks on the CPU, over gloo."
    )


def run_smoke(
    engine: Engine,
    image: ImageToRun,
    *,
    gpus: str | None,
    canary: bool = True,
    ranks: int = 1,
    timeout_s: int = TIMEOUT_S,
) -> SmokeRun:
    """Run the image's payload by ID (GPU mode when gpus is given) and read its report; with
    ranks >= 2, its process groups too. An image of another CPU than this machine's runs under
    qemu emulation, in CPU mode only."""
    check_ranks(ranks, gpus)
    native = engine.platform()  # read once: the refusals below name it too
    emulated = emulated_platform(engine, image.image_id, native)
    if emulated is not None and gpus is not None:
        raise SmokeUsage(
            f"{image.reference} is a {emulated} image, which this "
            f"{emulation.MACHINES.get(native, native)} "
            "machine runs under qemu emulation, and emulation reaches no GPU: run `reprobuild "
            f"smoke --cpu` here, or the GPU smoke test on a {emulated} machine"
            f"{GPU_NODES.get(emulated, '')}."
        )
    if emulated is not None:
        refuse_without_emulation(engine, emulated, f"the smoke test of {image.reference}")
    try:
        result = engine.run(
            image.image_id,
            command(cpu=gpus is None, canary=canary, ranks=ranks),
            gpus=gpus,
            network=False,
            timeout_s=timeout_s,
            shm_size=group.NCCL_SHM_BYTES if ranks > 1 else None,
            environment=EMULATION_ENVIRONMENT.get(emulated) if emulated else None,
        )
    except CommandNotFound:
        raise SmokeError(NO_PAYLOAD.format(image=image.reference)) from None
    report = _report(image.reference, result)
    return SmokeRun(image.reference, image.image_id, gpus, result.exit_code, report)


def emulated_platform(engine: Engine, image_id: str, native: str) -> str | None:
    """The image's platform when the engine, whose own is `native`, runs it under emulation
    (an arm64 image on an x86_64 machine); None when it runs natively."""
    found = engine.inspect_image(image_id)
    platform = f"{found.get('Os') or 'linux'}/{found.get('Architecture') or 'amd64'}"
    return None if platform == native else platform


def mode_text(gpus: str | None, ranks: int = 1) -> str:
    mode = "CPU mode" if gpus is None else f"--gpus {gpus}"
    return mode + (f", {ranks} ranks" if ranks > 1 else "")


def run_noted(
    engine: Engine,
    image: ImageToRun,
    *,
    gpus: str | None,
    note: Callable[[str], None],
    canary: bool = True,
    ranks: int = 1,
) -> SmokeRun:
    """`run_smoke`, after a note that says where and how."""
    check_ranks(ranks, gpus)  # before the note: a refused run says nothing ran
    note(f"running the smoke test in {image.reference} ({mode_text(gpus, ranks)})")
    return run_smoke(engine, image, gpus=gpus, canary=canary, ranks=ranks)


def _report(image: str, result: RunResult) -> SmokeReport:
    try:
        report = json.loads(result.stdout)
    except (ValueError, RecursionError):
        report = {}
    if isinstance(report, dict) and "verdict" in report:
        problem = _payload_problem(report)
        if problem is not None:
            raise SmokeError(
                f"the smoke payload in {image} wrote a report this reprobuild cannot read: it "
                f"{problem}. Rebuild the image with this reprobuild (`reprobuild build`); "
                "`docker run --rm IMAGE reprobuild-smoke --json` shows the report as written."
            )
        return cast(SmokeReport, report)  # its shape is checked above
    if result.exit_code == NOT_FOUND_EXIT:
        raise SmokeError(NO_PAYLOAD.format(image=image))
    last = tail(result.stderr or result.stdout) or "(no output)"
    raise SmokeError(
        f"the smoke payload in {image} exited {result.exit_code} without a report:\n{last}\n"
        "Run `docker run --rm IMAGE reprobuild-smoke` to see its whole output."
    )


def _payload_problem(report: dict[str, Any]) -> str | None:
    """What keeps the payload's report from being a `SmokeReport` that `report_text` reads (a
    clause: "lacks wall_s"), or None."""
    try:
        typed(report, SmokeReport)
    except ValueError as misfit:
        return str(misfit)
    checks = report["preconditions"]
    if not all(
        isinstance(check, dict) and {"name", "ok", "detail"} <= set(check) for check in checks
    ):
        return "has preconditions without a name, ok and detail"
    if not all(isinstance(check["name"], str) for check in checks):
        return "has a precondition whose name is not a string"
    if not all(kernel["runs"] for kernel in report["kernels"].values()):
        return "has a kernel without runs"
    if report["canary"] and not {"differed", "witnesses"} <= set(report["canary"]):
        return "has a canary without differed and witnesses"
    return None
