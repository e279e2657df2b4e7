"""Image platforms: the spec's `platforms`, what a Grace GPU implies, and the resolver's answer
per platform, on the shipped knowledge base (its linux/arm64 rows read from PyPI's aarch64
wheels)."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from builder import knowledge
from builder.compat import ComputeCapability, DriverVersion
from builder.errors import PlatformNotLockable, ResolutionError, SpecError
from builder.knowledge import AMD64, ARM64
from builder.lock.stage import (
    refuse_foreign_host,
)
from builder.resolve import resolve, target
from builder.spec.check import load_spec
from builder.spec.model import GpuRequest, LoadedSpec

KB = knowledge.load()
GRACE_NOTE = "GH200 is a Grace Hopper superchip (Arm CPU): the image is built for linux/arm64"


def spec_text(torch: str, gpus: str = '"GH200"', driver: str = "580.65.06", extra: str = "") -> str:
    return (
        f'name = "lab/gh"\npython = "3.11"\ntorch = "{torch}"\n{extra}'
        f'[target]\ngpus = [{gpus}]\ndriver = "{driver}"\n'
    )


def loaded(tmp_path: Path, text: str) -> LoadedSpec:
    (tmp_path / "reprobuild.toml").write_text(text)
    return load_spec(tmp_path, KB)


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        loaded(tmp_path, text)
    return caught.value.problems


def resolved(tmp_path: Path, text: str) -> tuple[resolve.Resolution, ...]:
    return resolve.resolve_platforms(loaded(tmp_path, text).spec, KB)


def failure(tmp_path: Path, text: str) -> str:
    with pytest.raises(ResolutionError) as caught:
        resolved(tmp_path, text)
    return str(caught.value)


def test_the_default_platform_is_amd64_without_a_note(tmp_path: Path) -> None:
    spec = loaded(tmp_path, spec_text("2.5.1", gpus='"H100"'))
    assert spec.spec.platforms == (AMD64,) and spec.notes == ()


@pytest.mark.parametrize(
    ("gpus", "note"),
    [
        ('"GH200"', GRACE_NOTE),
        (
            '"GB200", "GB300"',
            "GB200 is a Grace Blackwell superchip and GB300 is a Grace Blackwell Ultra superchip "
            "(Arm CPU): the image is built for linux/arm64",
        ),
        (
            '"DGX Spark", "GB10"',
            "GB10 is a Grace Blackwell superchip (Arm CPU): the image is built for linux/arm64",
        ),
    ],
)
def test_grace_gpus_alone_imply_arm64_and_say_so(tmp_path: Path, gpus: str, note: str) -> None:
    spec = loaded(tmp_path, spec_text("2.11.*", gpus=gpus))
    assert spec.spec.platforms == (ARM64,)
    assert spec.notes == (note,)


def test_grace_beside_discrete_gpus_without_platforms_asks_for_them(tmp_path: Path) -> None:
    # An H100 may sit in an x86_64 server: arm64 alone would leave those nodes without an image.
    assert problems_of(tmp_path, spec_text("2.11.*", gpus='"H100", "GH200", "sm_80"')) == [
        "'target.gpus' names GH200, whose machine has an Arm CPU, beside H100 and sm_80, which "
        "x86_64 machines may hold: write 'platforms': [\"linux/arm64\"] if those GPUs sit in "
        'Arm servers too, or ["linux/amd64", "linux/arm64"] for an image per platform.'
    ]
    extra = 'platforms = ["linux/amd64", "linux/arm64"]\n'
    both = loaded(tmp_path, spec_text("2.11.*", gpus='"H100", "GH200"', extra=extra))
    assert both.spec.platforms == (AMD64, ARM64) and both.notes == ()


def test_platforms_as_written_in_their_order(tmp_path: Path) -> None:
    extra = 'platforms = ["linux/arm64", "linux/amd64"]\n'
    spec = loaded(tmp_path, spec_text("2.11.*", extra=extra))
    assert spec.spec.platforms == (ARM64, AMD64) and spec.notes == ()
    assert spec.table["platforms"] == ["linux/arm64", "linux/amd64"]  # hashed as written


def test_bad_platforms_are_each_named(tmp_path: Path) -> None:
    extra = 'platforms = ["linux/arm64", "linux/arm", "linux/arm64"]\n'
    assert problems_of(tmp_path, spec_text("2.11.*", gpus='"H100"', extra=extra)) == [
        "'platforms' entry 'linux/arm' is not one of: linux/amd64, linux/arm64.",
        "'platforms' lists 'linux/arm64' more than once; list each platform once.",
    ]
    assert problems_of(tmp_path, spec_text("2.11.*", gpus='"H100"', extra="platforms = []\n")) == [
        "'platforms' is empty; list one or more of: linux/amd64, linux/arm64."
    ]
    assert problems_of(
        tmp_path, spec_text("2.11.*", gpus='"H100"', extra='platforms = "linux/arm64"\n')
    ) == ["'platforms' must be a list; got string 'linux/arm64'."]


def test_a_grace_gpu_with_amd64_alone_is_refused(tmp_path: Path) -> None:
    extra = 'platforms = ["linux/amd64"]\n'
    assert problems_of(tmp_path, spec_text("2.11.*", gpus='"GH200", "GB10"', extra=extra)) == [
        "'target.gpus' names GH200 and GB10, whose machine has an Arm CPU, but 'platforms' "
        "leaves out \"linux/arm64\": add it to 'platforms', or remove 'platforms' to build for "
        "linux/arm64 alone."
    ]


@pytest.mark.parametrize("torch", ["2.11.*", "2.11.0"])
@pytest.mark.parametrize("driver", ["580.65.06", "580.95.05"])
def test_gh200_with_a_580_driver_gets_torch_2_11_with_cuda_13_on_arm64(
    tmp_path: Path, torch: str, driver: str
) -> None:
    (only,) = resolved(tmp_path, spec_text(torch, driver=driver))
    assert only.platform == ARM64
    assert (only.build.label, only.build.platform, str(only.build.cuda)) == (
        "2.11.0+cu130",
        ARM64,
        "13.0",
    )
    assert only.pin == "torch==2.11.0" and only.build.index == "pypi"
    assert (only.build.cuda_runtime, only.build.cudnn, only.build.nccl) == (
        "13.0.2",
        "9.19.0.56",
        "2.28.9",
    )
    assert [(c.gpu.label, str(c.via)) for c in only.coverage] == [("GH200", "sm_90")]
    assert str(only.min_driver) == "580.65.06"
    assert [pairing.pin for pairing in only.companions] == ["triton==3.6.0"]


def test_gh200_with_a_570_driver_gets_the_cu128_index_and_the_cuda_13_floor_named(
    tmp_path: Path,
) -> None:
    (only,) = resolved(tmp_path, spec_text("2.11.*", driver="570.133.20"))
    assert (only.platform, only.build.label, only.pin) == (
        ARM64,
        "2.11.0+cu128",
        "torch==2.11.0+cu128",
    )
    assert only.build.index == "https://download.pytorch.org/whl/cu128"
    assert [str(a) for a in only.build.archs or ()] == ["sm_80", "sm_90", "sm_100", "sm_120"]
    assert only.build.source.startswith("RELEASE.md 'For Release 2.11' (pytorch/pytorch#175253)")
    assert only.notes == (
        "PyPI's 2.11.0+cu130 does not fit (CUDA 13.0 needs driver >= 580.65.06; the target "
        "driver is 570.133.20): 2.11.0+cu128 comes from https://download.pytorch.org/whl/cu128",
    )
    assert [pairing.pin for pairing in only.companions] == ["triton==3.6.0"]


def test_gh200_with_a_570_driver_and_pypi_s_build_asked_is_refused_naming_the_floor(
    tmp_path: Path,
) -> None:
    assert failure(tmp_path, spec_text("2.11.0+cu130", driver="570.133.20")) == (
        "no torch build for linux/arm64 matching '2.11.0+cu130' fits Python 3.11 and the target "
        "(driver >= 570.133.20; GH200 (sm_90) (from spec)). Each candidate and what rejected it:\n"
        "  2.11.0+cu130  CUDA 13.0 needs driver >= 580.65.06; the target driver is 570.133.20\n"
        "  2.11.0+cu128  +cu128 build; the spec asks for +cu130\n"
        "  2.11.0+cu126  +cu126 build; the spec asks for +cu130\n"
        "What would work instead:\n"
        "  - torch==2.11.0 (2.11.0+cu128) satisfies everything but the torch/CUDA pin."
    )


def test_a_release_without_a_pypi_arm64_cuda_build_comes_from_a_variant_index(
    tmp_path: Path,
) -> None:
    (only,) = resolved(tmp_path, spec_text("2.10.*"))
    assert (only.build.label, only.build.index) == (
        "2.10.0+cu130",
        "https://download.pytorch.org/whl/cu130",
    )
    assert only.notes == (
        "torch 2.10.0 has no CUDA build for linux/arm64 on PyPI (torch >= 2.11 with CUDA 13.0 "
        "has one): 2.10.0+cu130 comes from https://download.pytorch.org/whl/cu130",
    )
    assert only.companions == ()  # torch <= 2.10 pins triton on x86_64 only


def test_an_arm64_companion_from_a_variant_index_is_pinned_untagged(tmp_path: Path) -> None:
    # The cu130 index lists torchvision-0.24.1-cp312-cp312-manylinux_2_28_aarch64.whl with no
    # local tag (pytorch/vision#9330); amd64 keeps the tagged pin.
    extra = 'packages = ["torchvision"]\nplatforms = ["linux/amd64", "linux/arm64"]\n'
    amd64, arm64 = resolved(tmp_path, spec_text("2.9.1+cu130", gpus='"H100"', extra=extra))
    assert [p.pin for p in amd64.companions] == ["torchvision==0.24.1+cu130", "triton==3.5.1"]
    assert [p.pin for p in arm64.companions] == ["torchvision==0.24.1"]
    assert arm64.build.label == "2.9.1+cu130" and arm64.build.platform == ARM64


def test_a_cpu_image_on_arm64_takes_the_newest_release_of_any_index(tmp_path: Path) -> None:
    text = 'name = "lab/c"\npython = "3.11"\ntorch = ">=2.9"\ncpu_only = true\n'
    text += 'platforms = ["linux/arm64"]\n'
    (only,) = resolved(tmp_path, text)
    assert (only.build.label, only.build.index) == (
        "2.15.0+cpu",
        "https://download.pytorch.org/whl/cpu",
    )
    assert only.notes == ()


def test_a_release_without_an_arm64_cuda_build_names_the_first_with_one(
    tmp_path: Path,
) -> None:
    assert failure(tmp_path, spec_text("2.3.*")) == (
        "torch 2.3 has no CUDA build for linux/arm64 in the knowledge base; torch >= 2.4 with "
        "CUDA 12.4 has one."
    )


def test_an_arm64_build_whose_archs_are_unread_is_not_promised_to_a_gpu(tmp_path: Path) -> None:
    assert failure(tmp_path, spec_text("2.8.0")) == (
        "no torch build for linux/arm64 matching '2.8.0' fits Python 3.11 and the target "
        "(driver >= 580.65.06; GH200 (sm_90) (from spec)). Each candidate and what rejected it:\n"
        "  2.8.0+cu129  its compiled GPU architectures are not measured yet, so it cannot be "
        "promised to run on GH200 (sm_90)\n"
        "What would work instead:\n"
        "  - torch >= 2.7.0 with CUDA 12.8 (2.7.0+cu128) has kernels for GH200 (sm_90).\n"
        "  - torch==2.15.0 (2.15.0+cu132) satisfies everything but the torch/CUDA pin."
    )


def test_a_cpu_image_on_arm64_after_2_10_comes_from_the_cpu_index(tmp_path: Path) -> None:
    text = 'name = "lab/c"\npython = "3.11"\ntorch = "2.12.*"\ncpu_only = true\n'
    text += 'platforms = ["linux/arm64"]\n'
    (only,) = resolved(tmp_path, text)
    assert (only.platform, only.build.label, only.pin, only.build.index) == (
        ARM64,
        "2.12.1+cpu",
        "torch==2.12.1+cpu",
        "https://download.pytorch.org/whl/cpu",
    )
    text = text.replace('"2.12.*"', '"2.10.*"')
    (only,) = resolved(tmp_path, text)
    assert (only.platform, only.build.label, only.pin) == (ARM64, "2.10.0+cpu", "torch==2.10.0")


def test_each_platform_is_resolved_on_its_own_rows(tmp_path: Path) -> None:
    extra = 'platforms = ["linux/amd64", "linux/arm64"]\n'
    amd64, arm64 = resolved(tmp_path, spec_text("2.11.*", gpus='"GH200", "H100"', extra=extra))
    assert (amd64.platform, amd64.build.platform, amd64.build.index) == (AMD64, AMD64, "pypi")
    assert (arm64.platform, arm64.build.platform, arm64.build.index) == (ARM64, ARM64, "pypi")
    assert [str(a) for a in amd64.build.archs or ()] == [
        "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"
    ]  # fmt: skip
    assert [str(a) for a in arm64.build.archs or ()] == [
        "sm_80", "sm_90", "sm_100", "sm_110", "sm_120"
    ]  # fmt: skip
    assert [c.gpu.label for c in amd64.coverage] == ["H100"]
    assert amd64.notes == (
        "GH200 (sm_90) runs linux/arm64 images only: left out of the linux/amd64 target",
    )
    assert [c.gpu.label for c in arm64.coverage] == ["GH200", "H100"]
    assert all(verdict.build.platform == ARM64 for verdict in arm64.verdicts)


def test_the_record_names_a_platform_other_than_amd64_only(tmp_path: Path) -> None:
    extra = 'platforms = ["linux/amd64", "linux/arm64"]\n'
    amd64, arm64 = resolved(tmp_path, spec_text("2.11.*", gpus='"H100"', extra=extra))
    assert "platform" not in amd64.record()  # so amd64 lock files read as before
    assert arm64.record()["platform"] == ARM64
    assert [list(r.to_dict())[:3] for r in (amd64, arm64)] == [["name", "python", "platform"]] * 2
    assert [r.to_dict()["platform"] for r in (amd64, arm64)] == [AMD64, ARM64]


def test_amd64_candidates_hold_no_arm64_row(tmp_path: Path) -> None:
    spec = loaded(tmp_path, spec_text("2.11.*", gpus='"H100"')).spec
    assert [b.key for b in resolve.candidates(spec, KB)] == [
        "2.11.0+cu130",
        "2.11.0+cu129",
        "2.11.0+cu128",
        "2.11.0+cu126",
    ]
    assert [b.key for b in resolve.candidates(spec, KB, ARM64)] == [
        "2.11.0+cu130 linux/arm64",
        "2.11.0+cu128 linux/arm64",
        "2.11.0+cu126 linux/arm64",
    ]
    single = resolve.resolve(spec, target.from_spec(spec.target), KB)
    assert single.platform == AMD64 and single.build.platform == AMD64


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the expected answers are x86_64's")
def test_doctor_judges_the_platform_of_this_machine(tmp_path: Path) -> None:
    # On x86_64: the spec's linux/amd64 image where it has one, else its first.
    extra = 'platforms = ["linux/arm64", "linux/amd64"]\n'
    both = loaded(tmp_path, spec_text("2.11.*", gpus='"H100"', extra=extra)).spec
    assert resolve.resolve_here(both, KB).platform == AMD64
    arm_only = loaded(tmp_path, spec_text("2.11.*")).spec
    assert resolve.resolve_here(arm_only, KB).platform == ARM64


SM90 = ComputeCapability(9, 0)
# No GPU here: the host's target is built as target.from_host builds it from NVML's answer.
GH200_HOST = target.Target(
    DriverVersion.parse("580.65.06"), (GpuRequest("NVIDIA GH200 480GB", SM90),), "host"
)
H100_HOST = target.Target(
    DriverVersion.parse("580.65.06"), (GpuRequest("NVIDIA H100 80GB HBM3", SM90),), "host"
)


def test_a_gpu_named_as_nvml_reports_it_is_mapped_to_its_model() -> None:
    grace = KB.gpu_reported("NVIDIA GH200 480GB", SM90)
    assert grace is not None and (grace.name, grace.platform) == ("GH200", ARM64)
    assert KB.gpu_named("NVIDIA GH200 480GB") is None  # the written name alone does not match
    assert KB.gpu_reported("NVIDIA GH200 480GB", ComputeCapability(8, 0)) is None


def test_locking_for_this_host_refuses_a_spec_without_its_platform(tmp_path: Path) -> None:
    host_spec = 'name = "lab/gh"\npython = "3.11"\ntorch = "2.11.*"\n[target]\nhost = true\n'
    spec = loaded(tmp_path, host_spec)
    assert spec.spec.platforms == (AMD64,)  # the table names no GPU: nothing is implied
    with pytest.raises(PlatformNotLockable) as caught:
        refuse_foreign_host(spec, GH200_HOST, KB, "x86_64")
    assert str(caught.value) == (
        "reprobuild.toml sets target.host = true and this machine runs linux/arm64 images "
        "(NVIDIA GH200 480GB is a Grace Hopper superchip), but the spec builds for linux/amd64 "
        'only: an image locked here would not run on it. Add "linux/arm64" to platforms '
        '(platforms = ["linux/amd64", "linux/arm64"]), or replace target.host with '
        "target.driver and target.gpus of the machines that will run the image."
    )
    assert caught.value.exit_code == 2
    with pytest.raises(PlatformNotLockable, match=r"images \(its CPU is aarch64\), but the spec"):
        refuse_foreign_host(spec, H100_HOST, KB, "aarch64")
    refuse_foreign_host(spec, H100_HOST, KB, "x86_64")
    written = target.Target(None, (GpuRequest("H100", SM90),), "spec")
    refuse_foreign_host(spec, written, KB, "arm64")  # a written target is the spec's to judge
    arm = loaded(tmp_path, host_spec.replace("[target]", 'platforms = ["linux/arm64"]\n[target]'))
    refuse_foreign_host(arm, GH200_HOST, KB, "aarch64")  # the spec builds this host's platform
    refuse_foreign_host(arm, H100_HOST, KB, "riscv64")  # no image platform: nothing to judge


def test_a_grace_host_gpu_is_left_out_of_the_amd64_target(tmp_path: Path) -> None:
    spec = loaded(tmp_path, spec_text("2.11.*", gpus='"H100"')).spec
    chosen = resolve.resolve(spec, GH200_HOST, KB, AMD64)
    assert chosen.target.gpus == ()
    assert chosen.notes[0] == (
        "NVIDIA GH200 480GB (sm_90) runs linux/arm64 images only: left out of the linux/amd64 "
        "target"
    )


def test_errors_name_the_platform_unless_the_image_is_amd64_alone(tmp_path: Path) -> None:
    assert failure(tmp_path, spec_text("2.99.*")) == (
        "no CUDA build of a torch release matching '2.99.*' is in the knowledge base, which "
        f"knows CUDA builds for linux/arm64 of torch 2.4.0 to 2.15.0 (version {KB.version}). "
        "If the release came out after 2.15.0, run `reprobuild knowledge refresh` to read the "
        "releases since."
    )
    assert failure(tmp_path, spec_text("2.99.*", gpus='"H100"')) == (
        "no CUDA build of a torch release matching '2.99.*' is in the knowledge base, which "
        f"knows torch 2.0.0 to 2.15.0 (version {KB.version}). If the release came out after "
        "2.15.0, run `reprobuild knowledge refresh` to read the releases since."
    )
    both = 'platforms = ["linux/amd64", "linux/arm64"]\n'
    old_driver = spec_text("2.11.*", gpus='"H100"', driver="470.57.02", extra=both)
    assert failure(tmp_path, old_driver).startswith(
        "no torch build for linux/amd64 matching '2.11.*' fits Python 3.11 and the target "
        "(driver >= 470.57.02; H100 (sm_90) (from spec)). Each candidate and what rejected it:\n"
    )
    alone = spec_text("2.11.*", gpus='"H100"', driver="470.57.02")
    assert failure(tmp_path, alone).startswith("no torch build matching '2.11.*' fits Python")
