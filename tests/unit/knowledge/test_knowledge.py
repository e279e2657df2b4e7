"""Self-consistency of the shipped knowledge base: every fact sourced, dated and coherent."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from packaging.version import Version

from builder import knowledge
from builder.compat import CudaVersion
from builder.errors import KnowledgeError
from builder.knowledge import AMD64, ARM64, PLATFORMS

KB = knowledge.load()
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def test_every_row_names_its_source_and_read_date() -> None:
    for build in KB.builds:
        assert build.source.strip() and build.archs_source.strip(), build.label
        assert DATE.match(build.read), build.label
    for family in KB.families:
        assert family.source.strip()
    for release in KB.releases:
        assert release.source.strip()
    for model in KB.gpus:
        assert model.source.strip()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_covers_torch_2_0_to_2_15_with_one_pypi_default_each(platform: str) -> None:
    releases = KB.releases_of_torch(platform)
    assert releases[0] == Version("2.0.0")
    assert Version("2.15.0") in releases
    defaults = Counter(b.torch for b in KB.builds_on(platform) if b.pypi_default)
    assert set(defaults) == set(releases)
    assert set(defaults.values()) == {1}


def test_build_keys_are_unique_and_labels_unique_per_platform() -> None:
    keys = Counter(build.key for build in KB.builds)
    assert [key for key, count in keys.items() if count > 1] == []
    for platform in PLATFORMS:
        labels = Counter(build.label for build in KB.builds_on(platform))
        assert [label for label, count in labels.items() if count > 1] == []
    assert {platform: len(KB.builds_on(platform)) for platform in PLATFORMS} == {
        AMD64: 96,
        ARM64: 64,
    }


def test_variant_tag_agrees_with_cuda_and_runtime() -> None:
    for build in KB.builds:
        if build.is_cpu:
            assert build.variant == "cpu" and build.archs == ()
            continue
        assert build.cuda == CudaVersion.from_variant(build.variant), build.label
        if build.cuda_runtime:
            assert build.cuda_runtime.startswith(f"{build.cuda}."), build.label


def test_wheel_version_and_index_agree() -> None:
    for build in KB.builds:
        if build.pypi_default:
            assert build.index == "pypi" and build.wheel_version == str(build.torch)
        else:
            assert build.index.endswith(f"/{build.variant}"), build.label
            if (build.platform, build.variant) == (ARM64, "cu124"):
                # cu124/torch-2.4.0-cp311-cp311-linux_aarch64.whl (pytorch/pytorch#134117)
                assert build.wheel_version == str(build.torch)
            else:
                assert build.wheel_version == f"{build.torch}+{build.variant}"


def test_every_cuda_in_use_has_driver_facts() -> None:
    for build in KB.builds:
        if build.cuda is None:
            continue
        family = KB.family(build.cuda)
        assert family is not None, build.label
        toolkit = KB.toolkit_driver(build.cuda)
        assert toolkit is not None, build.label
        assert toolkit >= family.min_driver, build.label


def test_cuda_13_needs_the_r580_driver() -> None:
    family = KB.family(CudaVersion(13, 0))
    assert family is not None and str(family.min_driver) == "580.65.06"
    family = KB.family(CudaVersion(12, 4))
    assert family is not None and str(family.min_driver) == "525.60.13"


def test_archs_sorted_and_measured_for_every_pypi_default() -> None:
    for build in KB.builds:
        if build.pypi_default:
            assert build.archs is not None, f"{build.key} has no measured arch list"
            assert bool(build.archs) != build.is_cpu, build.key
        if build.archs:
            cubins = [arch.capability for arch in build.cubins]
            assert cubins == sorted(cubins), build.label


def test_measured_facts_from_research() -> None:
    # Values measured from the wheels (shared/research/cog.md section 4).
    rows = {build.label: build for build in KB.builds_on(AMD64)}
    assert rows["2.5.1+cu124"].cudnn == "9.1.0.70"
    assert rows["2.5.1+cu124"].nccl == "2.21.5"
    assert [str(a) for a in rows["2.8.0+cu128"].archs or ()] == (
        ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    )
    assert [str(a) for a in rows["2.11.0+cu130"].archs or ()] == (
        ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    )
    assert rows["2.0.1+cu117"].cuda_runtime == "11.7.99"


def test_arm64_rows_read_from_pypi_aarch64_wheels() -> None:
    # shared/research/arm64-feasibility.md section 3: CPU-only up to 2.10.0, CUDA 13 from 2.11.0.
    every = {build.label: build for build in KB.builds_on(ARM64)}
    rows = {label: build for label, build in every.items() if build.index == "pypi"}
    assert [label for label in rows if not rows[label].is_cpu] == [
        "2.11.0+cu130",
        "2.12.0+cu130",
        "2.12.1+cu130",
        "2.13.0+cu130",
        "2.14.0+cu130",
        "2.14.1+cu130",
        "2.15.0+cu132",
    ]
    cpu = rows["2.10.0+cpu"]
    assert (cpu.index, cpu.pypi_default, cpu.wheel_version, cpu.cuda) == (
        "pypi",
        True,
        "2.10.0",
        None,
    )
    assert cpu.source.endswith("torch-2.10.0-cp310-cp310-manylinux_2_28_aarch64.whl")
    assert "manylinux2014_aarch64" in rows["2.5.1+cpu"].source
    cuda = rows["2.11.0+cu130"]
    assert (cuda.cuda_runtime, cuda.cudnn, cuda.nccl) == ("13.0.2", "9.19.0.56", "2.28.9")
    assert [str(arch) for arch in cuda.archs or ()] == [
        "sm_80",
        "sm_90",
        "sm_100",
        "sm_110",
        "sm_120",
    ]
    assert "manylinux_2_28_aarch64.whl" in cuda.archs_source
    assert rows["2.15.0+cu132"].cuda_runtime == "13.2.2"
    assert all(build.pypi_default for build in rows.values())


def test_arm64_variant_index_rows_are_sourced() -> None:
    # download.pytorch.org cannot be read from here: these rows come from the sources each
    # names, and `knowledge refresh` replaces them with what the index's metadata says.
    rows = {b.label: b for b in KB.builds_on(ARM64) if b.index != "pypi" and not b.is_cpu}
    assert list(rows) == [
        "2.4.0+cu124", "2.4.1+cu124", "2.5.0+cu124", "2.5.1+cu124", "2.6.0+cu126",
        "2.7.0+cu128", "2.7.1+cu128", "2.8.0+cu129",
        "2.9.0+cu126", "2.9.0+cu128", "2.9.0+cu130", "2.9.1+cu126", "2.9.1+cu128", "2.9.1+cu130",
        "2.10.0+cu126", "2.10.0+cu128", "2.10.0+cu130", "2.11.0+cu126", "2.11.0+cu128",
        "2.12.0+cu126", "2.12.0+cu132", "2.12.1+cu126", "2.12.1+cu132",
        "2.13.0+cu126", "2.13.0+cu132", "2.14.0+cu126", "2.14.0+cu132",
        "2.14.1+cu126", "2.14.1+cu132",
    ]  # fmt: skip
    for build in rows.values():
        # an issue (owner/repo#N) or a file at a commit (owner/repo ... (1a2b3c4d))
        assert re.search(r"[\w-]+/[\w.-]+(#\d+| .*\([0-9a-f]{8}\))", build.source), build.label
    archs = {
        label: None if b.archs is None else [str(a) for a in b.archs] for label, b in rows.items()
    }
    assert archs["2.4.0+cu124"] is None and archs["2.8.0+cu129"] is None
    assert archs["2.7.1+cu128"] == ["sm_90", "sm_100", "sm_120"]
    assert archs["2.10.0+cu126"] == ["sm_80", "sm_90"]
    assert archs["2.11.0+cu128"] == ["sm_80", "sm_90", "sm_100", "sm_120"]
    assert archs["2.14.1+cu132"] == ["sm_80", "sm_90", "sm_100", "sm_110", "sm_120"]
    cpu = [b.label for b in KB.builds_on(ARM64) if b.index != "pypi" and b.is_cpu]
    assert cpu == [
        "2.11.0+cpu", "2.12.0+cpu", "2.12.1+cpu", "2.13.0+cpu", "2.14.0+cpu", "2.14.1+cpu",
        "2.15.0+cpu",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "capability", "superchip"),
    [
        ("GH200", "9.0", "Grace Hopper"),
        ("GB200", "10.0", "Grace Blackwell"),
        ("GB300", "10.3", "Grace Blackwell Ultra"),
        ("GB10", "12.1", "Grace Blackwell"),
        ("DGX Spark", "12.1", "Grace Blackwell"),
    ],
)
def test_grace_superchips_run_arm64(name: str, capability: str, superchip: str) -> None:
    model = KB.gpu_named(name)
    assert model is not None
    assert (str(model.capability), model.cpu, model.platform) == (capability, "arm64", ARM64)
    assert model.superchip == superchip and model.cpu_source


@pytest.mark.parametrize("name", ["H100", "B300", "A100", "RTX PRO 6000"])
def test_discrete_gpus_run_either_platform(name: str) -> None:
    model = KB.gpu_named(name)
    assert model is not None and (model.cpu, model.platform) == (None, None)


def test_pythons_are_sorted_versions() -> None:
    for build in KB.builds:
        keys = [tuple(int(part) for part in python.split(".")) for python in build.pythons]
        assert keys == sorted(keys) and keys, build.label


@pytest.mark.parametrize(
    ("name", "capability"),
    [
        ("A100", "8.0"),
        ("H100", "9.0"),
        ("RTX 4090", "8.9"),
        ("L4", "8.9"),
        ("NVIDIA GeForce RTX 4090", "8.9"),
        ("rtx-5090", "12.0"),
        ("Tesla T4", "7.5"),
    ],
)
def test_gpu_names_map_to_capabilities(name: str, capability: str) -> None:
    model = KB.gpu_named(name)
    assert model is not None and str(model.capability) == capability


def test_gpu_names_are_unique_after_normalising() -> None:
    names = Counter(knowledge.normalise_gpu_name(n) for n in KB.gpu_names())
    assert [name for name, count in names.items() if count > 1] == []


def test_version_is_content_derived(tmp_path: Path) -> None:
    for name in knowledge.DATA_FILES:
        (tmp_path / name).write_bytes((knowledge.PACKAGED_DATA / name).read_bytes())
    assert knowledge.load(tmp_path).version == KB.version
    cuda = json.loads((tmp_path / "cuda.json").read_text())
    cuda["families"][0]["source"] += " (re-read)"
    (tmp_path / "cuda.json").write_text(json.dumps(cuda))
    changed = knowledge.load(tmp_path).version
    assert changed != KB.version and changed.split("+")[0] == KB.version.split("+")[0]


def test_malformed_data_is_a_clear_error(tmp_path: Path) -> None:
    for name in knowledge.DATA_FILES:
        (tmp_path / name).write_bytes((knowledge.PACKAGED_DATA / name).read_bytes())
    (tmp_path / "gpus.json").write_text('{"gpus": [{"name": "X"}], "schema": 1}')
    with pytest.raises(KnowledgeError, match=r"malformed \(KeyError: 'aliases'\)"):
        knowledge.load(tmp_path)
    (tmp_path / "gpus.json").write_text("{not json")
    with pytest.raises(KnowledgeError, match="is not valid JSON"):
        knowledge.load(tmp_path)
    (tmp_path / "gpus.json").unlink()
    with pytest.raises(KnowledgeError, match="cannot read the knowledge file"):
        knowledge.load(tmp_path)


def copy_data(folder: Path) -> None:
    for name in knowledge.DATA_FILES:
        (folder / name).write_bytes((knowledge.PACKAGED_DATA / name).read_bytes())


def test_rows_without_a_platform_are_amd64_rows(tmp_path: Path) -> None:
    copy_data(tmp_path)
    torch = json.loads((tmp_path / "torch.json").read_text())
    for row in torch["builds"]:
        row.pop("platform")
    torch["builds"] = [row for row in torch["builds"] if row["variant"] != "cpu"][:3]
    (tmp_path / "torch.json").write_text(json.dumps(torch))
    loaded = knowledge.load(tmp_path)
    assert [(b.key, b.platform) for b in loaded.builds] == [
        ("2.0.0+cu117", AMD64),
        ("2.0.0+cu118", AMD64),
        ("2.0.1+cu117", AMD64),
    ]


def test_an_unknown_platform_or_cpu_is_a_clear_error(tmp_path: Path) -> None:
    copy_data(tmp_path)
    torch = json.loads((tmp_path / "torch.json").read_text())
    torch["builds"][0]["platform"] = "linux/s390x"
    (tmp_path / "torch.json").write_text(json.dumps(torch))
    with pytest.raises(
        KnowledgeError,
        match=r"malformed \(ValueError: platform 'linux/s390x' is not one of linux/amd64, "
        r"linux/arm64\)",
    ):
        knowledge.load(tmp_path)
    copy_data(tmp_path)
    gpus = json.loads((tmp_path / "gpus.json").read_text())
    gpus["gpus"][0]["cpu"] = "arm64"
    (tmp_path / "gpus.json").write_text(json.dumps(gpus))
    with pytest.raises(
        KnowledgeError, match=r"GPU K80 names its cpu without its cpu_source and superchip"
    ):
        knowledge.load(tmp_path)


def test_base_rows_are_sourced_digests() -> None:
    assert KB.bases, "bases.json is empty"
    for base in KB.bases:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", base.digest), base.reference
        assert base.kind in ("linux/amd64 manifest", "index"), base.reference
        assert base.source.strip() and base.suite in ("bookworm", "jammy", "noble")
        if base.reference.startswith("python:"):
            assert base.python is not None
            assert base.python.startswith(base.reference.split(":")[1].split("-")[0] + ".")
    for python in ("3.10", "3.11", "3.12", "3.13"):
        known = KB.base_named(f"python:{python}-slim-bookworm")
        assert known is not None and known.kind == "linux/amd64 manifest"
