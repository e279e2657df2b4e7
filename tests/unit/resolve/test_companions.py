"""Companion packages (torchvision, torchaudio, triton) paired with the chosen torch build, against
the shipped knowledge base."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from builder import knowledge
from builder.errors import ResolutionError
from builder.lock import lockfile
from builder.resolve import resolve, target
from builder.spec.check import load_spec
from tests.locks import make_lock

KB = knowledge.load()
TORCHVISION_SOURCE = (
    "https://pypi.org/simple/torchvision/ (PEP 503); Requires-Dist of "
    "torchvision-0.20.1-cp311-cp311-manylinux1_x86_64.whl"
)


def resolve_text(tmp_path: Path, text: str) -> resolve.Resolution:
    (tmp_path / "reprobuild.toml").write_text('name = "lab/x"\n' + text)
    loaded = load_spec(tmp_path, KB).spec
    return resolve.resolve(loaded, target.from_spec(loaded.target), KB)


def pins(resolution: resolve.Resolution) -> list[tuple[str, str, str]]:
    return [(p.pin, p.index, p.reason) for p in resolution.companions]


def failure(tmp_path: Path, text: str) -> str:
    with pytest.raises(ResolutionError) as caught:
        resolve_text(tmp_path, text)
    return str(caught.value)


def test_pypi_build_pairs_a_named_torchvision_and_torchs_triton(tmp_path: Path) -> None:
    resolution = resolve_text(
        tmp_path, 'python = "3.11"\ntorch = "2.5.1"\npackages = ["TorchVision", "numpy"]\n'
    )
    assert pins(resolution) == [
        ("torchvision==0.20.1", "pypi", "named in the spec"),
        ("triton==3.1.0", "pypi", "torch's own pin"),
    ]
    assert resolution.record()["companions"][0] == {
        "package": "torchvision",
        "version": "0.20.1",
        "wheel_version": "0.20.1",
        "pin": "torchvision==0.20.1",
        "index": "pypi",
        "torch": "2.5.1",
        "source": TORCHVISION_SOURCE,
        "reason": "named in the spec",
    }


def test_variant_build_takes_the_variant_wheel_from_its_index(tmp_path: Path) -> None:
    resolution = resolve_text(
        tmp_path, 'python = "3.11"\ntorch = "2.5.1+cu121"\npackages = ["torchaudio>=2.5"]\n'
    )
    index = "https://download.pytorch.org/whl/cu121"
    assert pins(resolution) == [
        ("torchaudio==2.5.1+cu121", index, "named in the spec"),
        ("triton==3.1.0", index, "torch's own pin"),
    ]


def test_triton_only_for_cuda_builds_and_the_pythons_torch_pins_it_for(tmp_path: Path) -> None:
    cpu = resolve_text(tmp_path, 'python = "3.11"\ntorch = "2.5.1"\ncpu_only = true\n')
    assert cpu.build.is_cpu and pins(cpu) == []
    python_313 = resolve_text(tmp_path, 'python = "3.13"\ntorch = "2.5.1"\n')
    assert pins(python_313) == []  # torch 2.5.1 pins triton for Python < 3.13 only
    assert pins(resolve_text(tmp_path, 'python = "3.11"\ntorch = "2.0.0"\n')) == [
        ("triton==2.0.0", "pypi", "torch's own pin")
    ]


def test_a_pin_that_does_not_pair_names_the_one_that_does(tmp_path: Path) -> None:
    message = failure(
        tmp_path, 'python = "3.11"\ntorch = "2.5.1"\npackages = ["torchvision==0.19.0"]\n'
    )
    assert message == (
        "torchvision 0.19.0 is built for torch 2.4.0; torch 2.5.1 pairs with torchvision 0.20.1. "
        "Write torchvision==0.20.1 (or leave torchvision unpinned and reprobuild pins the pair), "
        'or pin torch = "2.4.0" for torchvision 0.19.0.'
    )


def test_a_range_that_excludes_the_pair_is_named(tmp_path: Path) -> None:
    message = failure(
        tmp_path, 'python = "3.11"\ntorch = "2.5.1"\npackages = ["torchvision<0.20"]\n'
    )
    assert message == (
        "'torchvision<0.20' excludes torchvision 0.20.1, and torch 2.5.1 pairs with torchvision "
        "0.20.1. Widen the range to admit 0.20.1 (or leave torchvision unpinned and reprobuild "
        'pins the pair), or pin torch = "2.4.1" for torchvision 0.19.1.'
    )


def test_a_triton_pin_names_every_torch_it_is_built_for(tmp_path: Path) -> None:
    message = failure(tmp_path, 'python = "3.11"\ntorch = "2.5.1"\npackages = ["triton==3.0.0"]\n')
    assert message.startswith(
        "triton 3.0.0 is built for torch 2.4.0 and 2.4.1; torch 2.5.1 pairs with triton 3.1.0. "
    )


def test_a_pairing_the_knowledge_base_lacks_names_refresh(tmp_path: Path) -> None:
    message = failure(tmp_path, 'python = "3.11"\ntorch = "2.15.0"\npackages = ["torchaudio"]\n')
    assert message == (
        f"the knowledge base (version {KB.version}) knows no torchaudio release built for torch "
        "2.15.0 (its newest pair is torchaudio 2.10.0 for torch 2.10.0). If one was released "
        'since, run `reprobuild knowledge refresh`; otherwise pin torch = "2.10.0" for '
        "torchaudio 2.10.0, or drop torchaudio."
    )


def test_companions_named_in_an_included_requirements_file(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("# vision\n\ntorchvision  # the pair\n")
    (tmp_path / "requirements.txt").write_text(
        "--index-url https://pypi.org/simple\n-r base.txt\nnumpy==2.1.3\n"
    )
    resolution = resolve_text(
        tmp_path, 'python = "3.11"\ntorch = "2.4.1"\nrequirements = "requirements.txt"\n'
    )
    assert pins(resolution) == [
        ("torchvision==0.19.1", "pypi", "named in the spec"),
        ("triton==3.0.0", "pypi", "torch's own pin"),
    ]


def test_a_lock_without_companions_still_loads() -> None:
    old = make_lock()  # a resolution record from before companions were paired
    assert "companions" not in old.resolution
    assert lockfile.loads(lockfile.dumps(old)).resolution.get("companions") is None


def test_a_lock_keeps_the_pairs(tmp_path: Path) -> None:
    resolution = resolve_text(tmp_path, 'python = "3.11"\ntorch = "2.5.1"\n')
    lock = replace(make_lock(), resolution=resolution.record())
    read_back = lockfile.loads(lockfile.dumps(lock)).resolution
    assert [c["pin"] for c in read_back["companions"]] == ["triton==3.1.0"]


def test_a_pin_of_another_variant_names_the_builds_pair(tmp_path: Path) -> None:
    message = failure(
        tmp_path,
        'python = "3.11"\ntorch = "2.5.1+cu121"\npackages = ["torchvision==0.20.1+cu118"]\n',
    )
    assert message == (
        "torchvision 0.20.1+cu118 is a +cu118 build, and torch 2.5.1+cu121 pairs with "
        "torchvision 0.20.1+cu121 from https://download.pytorch.org/whl/cu121. Write "
        "torchvision==0.20.1+cu121 (or leave torchvision unpinned and reprobuild pins the pair), "
        'or pin torch = "2.5.1+cu118" for torchvision 0.20.1+cu118.'
    )


def test_a_variant_pin_against_the_pypi_build_names_the_untagged_pair(tmp_path: Path) -> None:
    message = failure(
        tmp_path,
        'python = "3.11"\ntorch = "2.5.1+cu124"\npackages = ["torchvision==0.20.1+cpu"]\n',
    )
    assert message == (
        "torchvision 0.20.1+cpu is a +cpu build, and torch 2.5.1+cu124 pairs with torchvision "
        "0.20.1 from PyPI. Write torchvision==0.20.1 (or leave torchvision unpinned and "
        "reprobuild pins the pair)."
    )


def test_a_variant_pin_chooses_the_build_it_pairs_with(tmp_path: Path) -> None:
    resolution = resolve_text(
        tmp_path, 'python = "3.11"\ntorch = "2.5.1"\npackages = ["torchvision==0.20.1+cu118"]\n'
    )
    assert resolution.build.label == "2.5.1+cu118"
    assert pins(resolution)[0] == (
        "torchvision==0.20.1+cu118",
        "https://download.pytorch.org/whl/cu118",
        "named in the spec",
    )
    rejected = {v.build.label: v.rejections for v in resolution.verdicts if not v.eligible}
    assert rejected == {
        "2.5.1+cu124": ("'torchvision==0.20.1+cu118' excludes its pair, torchvision 0.20.1",),
        "2.5.1+cu121": ("'torchvision==0.20.1+cu118' excludes its pair, torchvision 0.20.1+cu121",),
    }


def test_a_hashed_requirement_line_still_names_its_companion(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "torchvision==0.19.0 \\\n    --hash=sha256:" + "ab" * 32 + "\n"
        "torchaudio==2.5.1 --config-settings=x=1\n"
    )
    message = failure(
        tmp_path, 'python = "3.11"\ntorch = "2.5.1"\nrequirements = "requirements.txt"\n'
    )
    assert message.startswith(
        "torchvision 0.19.0 is built for torch 2.4.0; torch 2.5.1 pairs with torchvision 0.20.1. "
    )
    (tmp_path / "requirements.txt").write_text("torchaudio==2.5.1 --hash=sha256:" + "ab" * 32)
    resolution = resolve_text(
        tmp_path, 'python = "3.11"\ntorch = "2.5.1"\nrequirements = "requirements.txt"\n'
    )
    assert pins(resolution)[0] == ("torchaudio==2.5.1", "pypi", "named in the spec")


def test_a_companion_whose_marker_excludes_the_image_is_not_paired(tmp_path: Path) -> None:
    packages = [
        'torchaudio==2.4.0; sys_platform == "darwin"',
        'torchvision; sys_platform == "darwin" or python_version < "3.11"',
    ]
    listed = ", ".join(f"'{line}'" for line in packages)
    spec = f'torch = "2.5.1"\npackages = [{listed}]\n'
    resolution = resolve_text(tmp_path, 'python = "3.11"\n' + spec)
    assert pins(resolution) == [("triton==3.1.0", "pypi", "torch's own pin")]
    python_310 = resolve_text(tmp_path, 'python = "3.10"\n' + spec)
    assert pins(python_310) == [
        ("torchvision==0.20.1", "pypi", "named in the spec"),
        ("triton==3.1.0", "pypi", "torch's own pin"),
    ]


def test_a_release_without_the_pair_gives_way_to_one_with_it(tmp_path: Path) -> None:
    resolution = resolve_text(
        tmp_path, 'python = "3.12"\ntorch = "2.14.*"\npackages = ["torchvision"]\n'
    )
    assert resolution.build.label == "2.14.0+cu130"
    assert pins(resolution) == [
        ("torchvision==0.29.0", "pypi", "named in the spec"),
        ("triton==3.8.*", "pypi", "torch's own pin"),
    ]
    rejected = {v.build.label: v.rejections for v in resolution.verdicts if not v.eligible}
    assert rejected == {
        "2.14.1+cu130": ("the knowledge base knows no torchvision release built for torch 2.14.1",)
    }


def test_a_pin_no_allowed_release_pairs_with_lists_each_candidate(tmp_path: Path) -> None:
    message = failure(
        tmp_path, 'python = "3.11"\ntorch = "2.5.*"\npackages = ["torchvision==0.19.0"]\n'
    )
    assert message == (
        "no torch build matching '2.5.*' fits Python 3.11 and the target (any driver; any GPU "
        "(from none)). Each candidate and what rejected it:\n"
        "  2.5.1+cu124  'torchvision==0.19.0' excludes its pair, torchvision 0.20.1\n"
        "  2.5.0+cu124  'torchvision==0.19.0' excludes its pair, torchvision 0.20.0\n"
        "  2.5.1+cu121  'torchvision==0.19.0' excludes its pair, torchvision 0.20.1+cu121\n"
        "  2.5.0+cu121  'torchvision==0.19.0' excludes its pair, torchvision 0.20.0+cu121\n"
        "  2.5.1+cu118  'torchvision==0.19.0' excludes its pair, torchvision 0.20.1+cu118\n"
        "  2.5.0+cu118  'torchvision==0.19.0' excludes its pair, torchvision 0.20.0+cu118\n"
        "What would work instead:\n"
        "  - torch==2.4.0 (2.4.0+cu121) satisfies everything but the torch/CUDA pin."
    )
