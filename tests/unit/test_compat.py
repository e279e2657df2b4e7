"""The CUDA binary/driver compatibility rules, on the cases the research measured."""

from __future__ import annotations

import pytest

from builder.compat import Arch, ComputeCapability, CudaVersion, DriverVersion, coverage

ARCHS_25 = tuple(
    Arch.parse(a) for a in ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
)
ARCHS_27_CU128 = tuple(
    Arch.parse(a) for a in ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8.6", (8, 6)),
        ("sm_86", (8, 6)),
        ("compute_90", (9, 0)),
        ("sm_120", (12, 0)),
        ("SM_103", (10, 3)),
        ("12.1", (12, 1)),
    ],
)
def test_compute_capability_parses_both_spellings(text: str, expected: tuple[int, int]) -> None:
    capability = ComputeCapability.parse(text)
    assert (capability.major, capability.minor) == expected


@pytest.mark.parametrize("text", ["", "8", "sm_9", "sm_90a", "A100", "8.10", "sm-80"])
def test_compute_capability_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a compute capability"):
        ComputeCapability.parse(text)


def test_same_major_lower_minor_cubin_runs() -> None:
    # RTX 4090 / L4 are sm_89: no sm_89 cubin in torch wheels, the sm_86 ones run.
    found = coverage(ARCHS_25, ComputeCapability(8, 9))
    assert str(found.via) == "sm_86"
    assert not found.needs_jit


def test_exact_cubin_is_preferred() -> None:
    assert str(coverage(ARCHS_25, ComputeCapability(9, 0)).via) == "sm_90"


def test_no_cross_major_cubin() -> None:
    # sm_120 (RTX 50xx) gets nothing from sm_90 cubins.
    assert coverage(ARCHS_25, ComputeCapability(12, 0)).via is None


def test_ptx_of_lower_version_jits() -> None:
    found = coverage(ARCHS_27_CU128, ComputeCapability(12, 1))
    assert str(found.via) == "sm_120"  # same-major cubin wins over PTX
    future = coverage(ARCHS_27_CU128, ComputeCapability(13, 0))
    assert str(future.via) == "compute_120"
    assert future.needs_jit


def test_arch_specific_cubin_runs_only_on_its_arch() -> None:
    archs = (Arch.parse("sm_90a"),)
    assert coverage(archs, ComputeCapability(9, 0)).covered
    assert not coverage((Arch.parse("sm_90a"),), ComputeCapability(9, 1)).covered


def test_driver_versions_compare_numerically() -> None:
    assert DriverVersion.parse("535.104.05") > DriverVersion.parse("535.54.03")
    assert DriverVersion.parse("570.26") < DriverVersion.parse("570.124.06")
    assert DriverVersion.parse("580.65.06") == DriverVersion.parse("580.65.06")
    with pytest.raises(ValueError, match="not a driver version"):
        DriverVersion.parse("latest")


def test_cuda_versions_decode_every_spelling() -> None:
    assert CudaVersion.from_variant("cu124") == CudaVersion(12, 4)
    assert CudaVersion.from_variant("cu130") == CudaVersion(13, 0)
    assert CudaVersion.from_driver_api(13000) == CudaVersion(13, 0)
    assert CudaVersion.from_driver_api(12040) == CudaVersion(12, 4)
    assert CudaVersion.parse("12.8").variant == "cu128"
