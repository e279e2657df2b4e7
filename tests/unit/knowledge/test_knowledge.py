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


def test_covers_torch_2_0_to_2_15_with_one_pypi_default_each() -> None:
    releases = KB.releases_of_torch()
    assert releases[0] == Version("2.0.0")
    assert Version("2.15.0") in releases
    defaults = Counter(build.torch for build in KB.builds if build.pypi_default)
    assert set(defaults) == set(releases)
    assert set(defaults.values()) == {1}


def test_build_labels_are_unique() -> None:
    labels = Counter(build.label for build in KB.builds)
    assert [label for label, count in labels.items() if count > 1] == []


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
            assert build.archs, f"{build.label} has no measured arch list"
        if build.archs:
            cubins = [arch.capability for arch in build.cubins]
            assert cubins == sorted(cubins), build.label


def test_measured_facts_from_research() -> None:
    # Values measured from the wheels (shared/research/cog.md section 4).
    rows = {build.label: build for build in KB.builds}
    assert rows["2.5.1+cu124"].cudnn == "9.1.0.70"
    assert rows["2.5.1+cu124"].nccl == "2.21.5"
    assert [str(a) for a in rows["2.8.0+cu128"].archs or ()] == (
        ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    )
    assert [str(a) for a in rows["2.11.0+cu130"].archs or ()] == (
        ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    )
    assert rows["2.0.1+cu117"].cuda_runtime == "11.7.99"


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
