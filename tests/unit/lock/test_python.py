"""The requirement lines handed to uv and the cross-check of the locked closure against the
companions paired with torch."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import knowledge
from builder.errors import LockError
from builder.lock.model import LockedPackage, PythonClosure
from builder.lock.python import cross_check, requirement_lines
from builder.resolve import resolve, target
from builder.spec.check import load_spec
from builder.spec.model import Spec

KB = knowledge.load()


def resolved(tmp_path: Path, torch: str, packages: str) -> tuple[resolve.Resolution, Spec]:
    (tmp_path / "reprobuild.toml").write_text(
        f'name = "lab/x"\npython = "3.11"\ntorch = "{torch}"\npackages = {packages}\n'
    )
    spec = load_spec(tmp_path, KB).spec
    return resolve.resolve(spec, target.from_spec(spec.target), KB), spec


def closure(*packages: tuple[str, str]) -> PythonClosure:
    return PythonClosure(
        "x86_64-manylinux_2_28",
        "3.11",
        ("https://pypi.org/simple",),
        (),
        (),
        tuple(
            LockedPackage(name, version, f"https://files.example/{name}.whl", "ab" * 32, 1)
            for name, version in packages
        ),
        "0.13.9",
    )


def test_pairs_are_pinned_right_after_torch(tmp_path: Path) -> None:
    resolution, spec = resolved(tmp_path, "2.5.1+cu121", '["numpy", "torchvision"]')
    assert requirement_lines(spec, resolution.build, resolution.companions) == [
        "torch==2.5.1+cu121",
        "torchvision==0.20.1+cu121",
        "triton==3.1.0",
        "numpy",
        "torchvision",
    ]


def test_a_closure_off_the_pair_is_refused(tmp_path: Path) -> None:
    resolution, _ = resolved(tmp_path, "2.5.1", '["torchvision"]')
    build = resolution.build
    runtime = ("nvidia-cuda-runtime-cu12", str(build.cuda_runtime))
    libraries = [runtime, ("nvidia-cudnn-cu12", str(build.cudnn)), ("nvidia-nccl-cu12", "2.21.5")]
    good = closure(*libraries, ("torch", "2.5.1"), ("torchvision", "0.20.1"), ("triton", "3.1.0"))
    cross_check(good, build, resolution.companions)
    wrong = closure(*libraries, ("torch", "2.5.1"), ("torchvision", "0.19.0"))
    with pytest.raises(LockError) as caught:
        cross_check(wrong, build, resolution.companions)
    assert str(caught.value) == (
        "the locked Python closure does not hold the companions paired with 2.5.1+cu124: "
        "torchvision 0.19.0 (torch 2.5.1 pairs with torchvision==0.20.1); triton missing (torch "
        "2.5.1 pairs with triton==3.1.0). Another requirement or index moved them off the pair; "
        "pin them as the resolution says (`reprobuild resolve --explain` shows each pair), or "
        "remove the requirement that overrides it."
    )


def test_a_companion_of_another_variant_is_refused(tmp_path: Path) -> None:
    resolution, _ = resolved(tmp_path, "2.5.1", '["torchvision"]')
    vision = resolution.companions[0]
    assert (vision.pin, vision.admits("0.20.1")) == ("torchvision==0.20.1", True)
    assert [vision.admits(v) for v in ("0.20.1+cu118", "0.20.1+cpu", "0.20.2")] == [False] * 3
    build = resolution.build
    libraries = [
        ("nvidia-cuda-runtime-cu12", str(build.cuda_runtime)),
        ("nvidia-cudnn-cu12", str(build.cudnn)),
        ("nvidia-nccl-cu12", "2.21.5"),
        ("torch", "2.5.1"),
        ("triton", "3.1.0"),
    ]
    with pytest.raises(LockError) as caught:
        cross_check(
            closure(*libraries, ("torchvision", "0.20.1+cpu")), build, resolution.companions
        )
    assert str(caught.value).startswith(
        "the locked Python closure does not hold the companions paired with 2.5.1+cu124: "
        "torchvision 0.20.1+cpu (torch 2.5.1 pairs with torchvision==0.20.1). "
    )


def test_a_variant_pair_needs_its_tag_and_a_range_pair_any_release_in_it(tmp_path: Path) -> None:
    variant, _ = resolved(tmp_path, "2.5.1+cu121", '["torchvision"]')
    vision = variant.companions[0]
    assert vision.pin == "torchvision==0.20.1+cu121"
    assert [vision.admits(v) for v in ("0.20.1+cu121", "0.20.1", "0.20.1+cu118")] == [
        True,
        False,
        False,
    ]
    ranged, _ = resolved(tmp_path, "2.14.0", "[]")
    triton = ranged.companions[0]
    assert triton.pin == "triton==3.8.*"
    assert [triton.admits(v) for v in ("3.8.0", "3.8.2", "3.9.0")] == [True, True, False]
