"""Knowledge refresh over real HTTP: a local PEP 503 index, and (marked network) PyPI itself."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from builder import knowledge
from builder.engine.http import Getter
from builder.errors import IndexUnavailable
from builder.knowledge import AMD64, ARM64, refresh
from tests.conftest import LocalIndex

CU124 = [
    "nvidia-cuda-runtime-cu12==12.4.127; platform_system == 'Linux'",
    "nvidia-cudnn-cu12==9.1.0.70; platform_system == 'Linux' and platform_machine == 'x86_64'",
    "nvidia-nccl-cu12==2.21.5; platform_system == 'Linux' and platform_machine == 'x86_64'",
    "sympy",
]
ARCHS = "sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90"
# torch 2.10.0's pins: the CUDA wheels are for x86_64 only, so its aarch64 wheel is CPU-only.
X86_ONLY = [
    "nvidia-cuda-runtime-cu12==12.8.90; platform_system == 'Linux' and platform_machine == "
    "'x86_64'",
    "nvidia-cudnn-cu12==9.10.2.21; platform_system == 'Linux' and platform_machine == 'x86_64'",
    "nvidia-nccl-cu12==2.27.5; platform_system == 'Linux' and platform_machine == 'x86_64'",
]
# torch 2.11.0's pins: cuda-toolkit with no machine marker, so they hold on aarch64 too.
CU130 = [
    "cuda-toolkit[cublas,cudart]==13.0.2; platform_system == 'Linux'",
    "nvidia-cudnn-cu13==9.19.0.56; platform_system == 'Linux'",
    "nvidia-nccl-cu13==2.28.9; platform_system == 'Linux'",
]
ARM_ARCHS = "sm_80 sm_90 sm_100 sm_110 sm_120"


@pytest.fixture(autouse=True)
def _close_getters(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every Getter a test made, so unclosed sockets do not leak into later tests."""
    made: list[Getter] = []
    original = Getter.__init__

    def tracking(self: Getter, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Getter, "__init__", tracking)
    yield
    for instance in made:
        instance.close()


def getter() -> Getter:
    return Getter(attempts=1)


def fill(index: LocalIndex, metadata_file: bool = True) -> None:
    for python in ("310", "311", "312"):
        index.add_wheel(
            "pypi",
            f"torch-2.5.1-cp{python}-cp{python}-manylinux1_x86_64.whl",
            CU124,
            ARCHS,
            metadata_file,
        )
    index.add_wheel("pypi", "torch-2.5.1-cp313-cp313t-manylinux1_x86_64.whl", CU124, ARCHS)
    index.add_wheel("pypi", "torch-2.5.1-cp311-none-macosx_11_0_arm64.whl", [], None)
    index.add_wheel("pypi", "torch-1.13.1-cp311-cp311-manylinux1_x86_64.whl", [], None)


def test_rows_from_a_simple_index(local_index: LocalIndex) -> None:
    fill(local_index)
    rows = refresh.fetch_rows(getter(), f"{local_index.url}/pypi", None, "2026-11-22", set())
    assert rows == [
        {
            "torch": "2.5.1",
            "variant": "cu124",
            "platform": AMD64,
            "wheel_version": "2.5.1",
            "index": "pypi",
            "pypi_default": True,
            "cuda": "12.4",
            "cuda_runtime": "12.4.127",
            "cudnn": "9.1.0.70",
            "nccl": "2.21.5",
            "archs": ARCHS.split(),
            "pythons": ["3.10", "3.11", "3.12"],
            "source": f"{local_index.url}/pypi/torch/ (PEP 503); Requires-Dist of "
            "torch-2.5.1-cp310-cp310-manylinux1_x86_64.whl",
            "archs_source": "CUDA arch flags string in torch/lib/libtorch_python.so of "
            "torch-2.5.1-cp310-cp310-manylinux1_x86_64.whl, equal to "
            "torch._C._cuda_getArchFlags()",
            "read": "2026-11-22",
        }
    ]


def test_metadata_is_read_from_the_wheel_when_no_pep658_file(local_index: LocalIndex) -> None:
    fill(local_index, metadata_file=False)
    rows = refresh.fetch_rows(getter(), f"{local_index.url}/pypi", None, "2026-11-22", set())
    assert rows[0]["cudnn"] == "9.1.0.70" and rows[0]["cuda_runtime"] == "12.4.127"


def test_known_archs_are_not_measured_again(local_index: LocalIndex) -> None:
    fill(local_index)
    rows = refresh.fetch_rows(getter(), f"{local_index.url}/pypi", None, "x", {"2.5.1+cu124"})
    assert rows[0]["archs"] is None and rows[0]["archs_source"] == refresh.NOT_MEASURED


def test_wheel_platform_tags() -> None:
    assert [
        refresh.platform_of(tag)
        for tag in (
            "manylinux1_x86_64",
            "linux_x86_64",
            "manylinux2014_aarch64",
            "manylinux_2_28_aarch64",
            "manylinux_2_17_aarch64.manylinux2014_aarch64",
            "macosx_11_0_arm64",
            "win_amd64",
        )
    ] == [AMD64, AMD64, ARM64, ARM64, ARM64, None, None]


def test_pins_are_read_for_the_platform_machine() -> None:
    assert refresh.linux_pins(X86_ONLY, AMD64) == {
        "cuda_runtime": "12.8.90",
        "cudnn": "9.10.2.21",
        "nccl": "2.27.5",
    }
    assert refresh.linux_pins(X86_ONLY, ARM64) == {}
    assert refresh.linux_pins(CU130, ARM64) == {
        "cuda_runtime": "13.0.2",
        "cudnn": "9.19.0.56",
        "nccl": "2.28.9",
    }


def fill_aarch64(index: LocalIndex) -> None:
    for python in ("310", "311"):
        index.add_wheel(
            "pypi", f"torch-2.10.0-cp{python}-cp{python}-manylinux1_x86_64.whl", X86_ONLY, ARCHS
        )
        index.add_wheel(
            "pypi", f"torch-2.10.0-cp{python}-cp{python}-manylinux_2_28_aarch64.whl", X86_ONLY, None
        )
        index.add_wheel(
            "pypi",
            f"torch-2.11.0-cp{python}-cp{python}-manylinux_2_28_aarch64.whl",
            CU130,
            ARM_ARCHS,
            metadata_file=False,  # as PyPI serves torch: no PEP 658 file, METADATA by ranges
        )


def test_aarch64_wheels_give_linux_arm64_rows(local_index: LocalIndex) -> None:
    fill_aarch64(local_index)
    rows = refresh.fetch_rows(getter(), f"{local_index.url}/pypi", None, "2026-12-06", set())
    assert [(r["torch"], r["variant"], r["platform"], r["cuda"]) for r in rows] == [
        ("2.10.0", "cu128", AMD64, "12.8"),
        ("2.10.0", "cpu", ARM64, None),
        ("2.11.0", "cu130", ARM64, "13.0"),
    ]
    cpu, cuda = rows[1], rows[2]
    assert {key: cpu[key] for key in ("wheel_version", "index", "pypi_default", "archs")} == {
        "wheel_version": "2.10.0",
        "index": "pypi",
        "pypi_default": True,
        "archs": [],
    }
    assert cpu["archs_source"] == (
        "CPU-only build: no CUDA kernels (torch-2.10.0-cp310-cp310-manylinux_2_28_aarch64.whl "
        "pins no CUDA runtime on aarch64 and holds no torch/lib/libtorch_cuda.so)"
    )
    assert (cuda["cuda_runtime"], cuda["cudnn"], cuda["nccl"]) == ("13.0.2", "9.19.0.56", "2.28.9")
    assert cuda["archs"] == ARM_ARCHS.split() and cuda["pythons"] == ["3.10", "3.11"]
    assert cuda["archs_source"].startswith(
        "CUDA arch flags string in torch/lib/libtorch_python.so of "
        "torch-2.11.0-cp310-cp310-manylinux_2_28_aarch64.whl"
    )


def test_known_archs_are_not_measured_again_per_platform(local_index: LocalIndex) -> None:
    fill_aarch64(local_index)
    url = f"{local_index.url}/pypi"
    rows = refresh.fetch_rows(getter(), url, None, "d", {"2.11.0+cu130"})
    assert rows[2]["archs"] == ARM_ARCHS.split()  # the amd64 row's label is another build
    rows = refresh.fetch_rows(getter(), url, None, "d", {"2.11.0+cu130 linux/arm64"})
    assert rows[2]["archs"] is None


def test_a_wheel_without_runtime_pins_but_with_cuda_kernels_is_an_error(
    local_index: LocalIndex,
) -> None:
    name = "torch-2.10.0-cp311-cp311-manylinux_2_28_aarch64.whl"
    local_index.add_wheel("pypi", name, X86_ONLY, None)
    with zipfile.ZipFile(local_index.root / "pypi" / "torch" / name, "a") as archive:
        archive.writestr("torch/lib/libtorch_cuda.so", b"\x00")
    with pytest.raises(
        IndexUnavailable,
        match=r"^torch 2\.10\.0: torch-2\.10\.0-cp311-cp311-manylinux_2_28_aarch64\.whl pins no "
        r"CUDA runtime in its metadata but holds torch/lib/libtorch_cuda\.so, so its CUDA "
        r"version cannot be read; report this with the wheel name\.$",
    ):
        refresh.fetch_rows(getter(), f"{local_index.url}/pypi", None, "d", set())


def test_variant_index_rows(local_index: LocalIndex) -> None:
    local_index.add_wheel("cu118", "torch-2.5.1+cu118-cp311-cp311-linux_x86_64.whl", [], ARCHS)
    local_index.add_wheel("cu118", "torch-2.5.1+cu121-cp311-cp311-linux_x86_64.whl", [], ARCHS)
    rows = refresh.fetch_rows(getter(), f"{local_index.url}/cu118", "cu118", "d", set())
    assert [
        (r["torch"], r["variant"], r["wheel_version"], r["index"], r["cuda"]) for r in rows
    ] == [("2.5.1", "cu118", "2.5.1+cu118", f"{local_index.url}/cu118", "11.8")]


def test_variant_index_aarch64_wheels_give_linux_arm64_rows(local_index: LocalIndex) -> None:
    # The variant indexes' CUDA builds for aarch64 (before PyPI had any, torch < 2.11) are read
    # as they are for x86_64: the index is not reachable from every machine, a refresh is.
    wheel = "torch-2.6.0+cu126-cp311-cp311-manylinux_2_28_aarch64.whl"
    local_index.add_wheel("cu126", wheel, [], ARCHS)
    local_index.add_wheel("cu126", "torch-2.6.0+cu126-cp311-cp311-linux_x86_64.whl", [], ARCHS)
    rows = refresh.fetch_rows(getter(), f"{local_index.url}/cu126", "cu126", "d", set())
    assert [(r["platform"], r["wheel_version"], r["cuda"], r["pythons"]) for r in rows] == [
        (AMD64, "2.6.0+cu126", "12.6", ["3.11"]),
        (ARM64, "2.6.0+cu126", "12.6", ["3.11"]),
    ]


def test_the_untagged_aarch64_wheels_of_a_cuda_index_are_its_builds(
    local_index: LocalIndex,
) -> None:
    # cu124/torch-2.4.0-cp311-cp311-linux_aarch64.whl (pytorch/pytorch#134117): no local tag,
    # the CUDA libraries inside. A tagged wheel of the release wins; x86_64 needs its tag.
    local_index.add_wheel("cu124", "torch-2.4.0-cp311-cp311-linux_aarch64.whl", [], ARCHS)
    local_index.add_wheel("cu124", "torch-2.5.1-cp311-cp311-linux_aarch64.whl", [], ARCHS)
    local_index.add_wheel("cu124", "torch-2.5.1+cu124-cp311-cp311-linux_aarch64.whl", [], ARCHS)
    local_index.add_wheel("cu124", "torch-2.4.0-cp311-cp311-linux_x86_64.whl", [], ARCHS)
    rows = refresh.fetch_rows(getter(), f"{local_index.url}/cu124", "cu124", "d", set())
    assert [(r["platform"], r["wheel_version"], r["variant"], r["cuda"]) for r in rows] == [
        (ARM64, "2.4.0", "cu124", "12.4"),
        (ARM64, "2.5.1+cu124", "cu124", "12.4"),
    ]


def row(label: str, index: str = "pypi", **values: Any) -> dict[str, Any]:
    torch, variant = label.split("+")
    base = {
        "torch": torch,
        "variant": variant,
        "platform": AMD64,
        "wheel_version": torch,
        "index": index,
        "pypi_default": index == "pypi",
        "cuda": "12.4",
        "cuda_runtime": "12.4.127",
        "cudnn": "9.1.0.70",
        "nccl": "2.21.5",
        "archs": None,
        "pythons": ["3.11"],
        "source": "s",
        "archs_source": refresh.NOT_MEASURED,
        "read": "2026-01-01",
    }
    return {**base, **values}


def test_merge_keeps_archs_dates_and_other_indexes() -> None:
    existing = [
        row("2.5.1+cu124", archs=["sm_90"], archs_source="measured"),
        row("2.5.1+cu118", index="https://x/cu118"),
        row("2.4.0+cu121"),  # gone from the index
    ]
    fetched = [
        row("2.5.1+cu124", read="2026-11-22"),
        row("2.6.0+cu124", read="2026-11-22"),
        row("2.6.0+cu126", index="https://x/cu126", read="2026-11-22"),
    ]
    merged, report = refresh.merge(existing, fetched, {"pypi"})
    by_label = {f"{r['torch']}+{r['variant']}": r for r in merged}
    assert list(by_label) == ["2.5.1+cu118", "2.5.1+cu124", "2.6.0+cu124", "2.6.0+cu126"]
    assert by_label["2.5.1+cu124"]["archs"] == ["sm_90"]
    assert by_label["2.5.1+cu124"]["read"] == "2026-01-01"  # unchanged values keep their date
    assert (report.added, report.unchanged, report.kept) == (
        ["2.6.0+cu124", "2.6.0+cu126"],
        ["2.5.1+cu124"],
        ["2.5.1+cu118"],
    )
    assert report.unmeasured == ["2.6.0+cu124", "2.6.0+cu126"]


def test_merge_prefers_the_pypi_row_for_a_label() -> None:
    merged, _ = refresh.merge(
        [],
        [row("2.5.1+cu124", index="https://x/cu124"), row("2.5.1+cu124")],
        {"pypi", "https://x/cu124"},
    )
    assert [r["index"] for r in merged] == ["pypi"]


def test_merge_keeps_one_row_per_platform() -> None:
    existing = [row("2.11.0+cu130", archs=["sm_90"], archs_source="measured")]
    fetched = [
        row("2.11.0+cu130", read="new"),
        row("2.11.0+cu130", platform=ARM64, read="new"),
        row("2.10.0+cpu", platform=ARM64, cuda=None, archs=[], read="new"),
    ]
    merged, report = refresh.merge(existing, fetched, {"pypi"})
    assert [(r["torch"], r["platform"], r["archs"]) for r in merged] == [
        ("2.11.0", AMD64, ["sm_90"]),
        ("2.10.0", ARM64, []),
        ("2.11.0", ARM64, None),
    ]
    assert report.added == ["2.11.0+cu130 linux/arm64", "2.10.0+cpu linux/arm64"]
    assert report.unchanged == ["2.11.0+cu130"]
    assert report.unmeasured == ["2.11.0+cu130 linux/arm64"]


def test_a_changed_value_is_reported_with_the_new_date() -> None:
    merged, report = refresh.merge(
        [row("2.5.1+cu124")], [row("2.5.1+cu124", nccl="2.21.6", read="new")], {"pypi"}
    )
    assert report.changed == ["2.5.1+cu124"] and merged[0]["read"] == "new"


def test_unreachable_indexes_keep_their_rows(local_index: LocalIndex) -> None:
    fill(local_index)
    existing = [row("2.5.1+cu118", index="http://127.0.0.1:9/cu118")]
    indexes = [
        refresh.IndexSource(f"{local_index.url}/pypi", None),
        refresh.IndexSource("http://127.0.0.1:9/cu118", "cu118"),
        refresh.IndexSource("http://127.0.0.1:9/cu121", "cu121"),
    ]
    refreshed = refresh.refresh(getter(), existing, indexes, "2026-11-22")
    merged, report = refreshed.builds, refreshed.report
    assert [f"{r['torch']}+{r['variant']}" for r in merged] == ["2.5.1+cu118", "2.5.1+cu124"]
    assert report.kept == ["2.5.1+cu118"]
    assert report.unreachable[0].startswith("http://127.0.0.1:9/cu118: 127.0.0.1:9 did not answer")
    assert report.unreachable[1] == "http://127.0.0.1:9/cu121: skipped, 127.0.0.1:9 did not answer"


def test_nothing_answering_is_an_error_naming_the_hosts() -> None:
    with pytest.raises(
        IndexUnavailable, match=r"(?s)no package index answered.*127\.0\.0\.1:9 did not answer"
    ):
        refresh.refresh(getter(), [], [refresh.IndexSource("http://127.0.0.1:9/simple", None)], "d")


def test_dump_is_stable() -> None:
    rows = [row("2.10.0+cu128"), row("2.9.1+cu128"), row("2.9.1+cu126")]
    text = refresh.dump(rows)
    assert text == refresh.dump(list(reversed(rows)))
    assert [r["torch"] + r["variant"] for r in json.loads(text)["builds"]] == [
        "2.9.1cu126",
        "2.9.1cu128",
        "2.10.0cu128",
    ]


@pytest.mark.network
def test_refresh_from_pypi_reproduces_the_shipped_rows() -> None:
    shipped = (knowledge.PACKAGED_DATA / "torch.json").read_text()
    existing = json.loads(shipped)["builds"]
    indexes = refresh.sources(refresh.PYPI_SIMPLE, "http://127.0.0.1:9/whl", [])
    refreshed = refresh.refresh(Getter(), existing, indexes, "2099-01-01")
    rows, report = refreshed.builds, refreshed.report
    assert report.added == [] and report.changed == []
    assert refresh.dump(rows) == shipped


@pytest.mark.network
def test_refresh_measures_a_new_release_from_pypi() -> None:
    shipped = json.loads((knowledge.PACKAGED_DATA / "torch.json").read_text())["builds"]
    existing = [r for r in shipped if r["torch"] != "2.15.0"]
    indexes = refresh.sources(refresh.PYPI_SIMPLE, "http://127.0.0.1:9/whl", [])
    refreshed = refresh.refresh(Getter(), existing, indexes, "2099-01-01")
    rows, report = refreshed.builds, refreshed.report
    assert report.added == ["2.15.0+cu132", "2.15.0+cu132 linux/arm64"]
    new = [r for r in rows if r["torch"] == "2.15.0"]
    assert [r["platform"] for r in new] == [AMD64, ARM64]
    assert new[0]["archs"] == ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    assert new[1]["archs"] == ["sm_80", "sm_90", "sm_100", "sm_110", "sm_120"]
    for one in new:
        assert (one["cuda_runtime"], one["cudnn"], one["nccl"]) == ("13.2.2", "9.26.0.51", "2.30.7")
