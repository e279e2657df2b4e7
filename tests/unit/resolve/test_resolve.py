"""The resolver against the shipped knowledge base, on cases whose answers the research fixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import knowledge
from builder.compat import ComputeCapability, CudaVersion, DriverVersion
from builder.engine.host import HostGpu, NvidiaHost
from builder.errors import HostError, ResolutionError
from builder.knowledge import AMD64
from builder.resolve import resolve, target
from builder.spec.check import load_spec

KB = knowledge.load()


def resolve_text(tmp_path: Path, text: str) -> resolve.Resolution:
    (tmp_path / "reprobuild.toml").write_text(text)
    loaded = load_spec(tmp_path, KB).spec
    return resolve.resolve(loaded, target.from_spec(loaded.target), KB)


def failure(tmp_path: Path, text: str) -> str:
    with pytest.raises(ResolutionError) as caught:
        resolve_text(tmp_path, text)
    return str(caught.value)


def spec_text(torch: str, python: str = "3.11", extra: str = "", target_: str = "") -> str:
    body = f'name = "lab/x"\npython = "{python}"\ntorch = "{torch}"\n{extra}'
    return body + (f"[target]\n{target_}" if target_ else "")


def test_bundled_example_resolves_to_the_pypi_default() -> None:
    loaded = load_spec(Path(__file__).parents[3] / "images" / "example", KB).spec
    resolution = resolve.resolve(loaded, target.from_spec(loaded.target), KB)
    assert resolution.build.label == "2.5.1+cu124"
    assert resolution.pin == "torch==2.5.1" and resolution.build.index == "pypi"
    assert (resolution.build.cudnn, resolution.build.nccl) == ("9.1.0.70", "2.21.5")
    assert str(resolution.min_driver) == "525.60.13"
    assert str(resolution.toolkit_driver) == "550.54.14"
    assert [str(c.via) for c in resolution.coverage] == ["sm_80", "sm_90"]
    assert resolution.notes == (
        "runs under CUDA minor-version compatibility: driver 535.104.05 is older than 550.54.14 "
        "of the CUDA 12.4 toolkit, so JIT of newer PTX is unavailable",
    )


def test_blackwell_consumer_gpu_needs_a_newer_torch(tmp_path: Path) -> None:
    message = failure(tmp_path, spec_text("2.5.*", target_='gpus = ["RTX 5090"]\n'))
    assert "no torch build matching '2.5.*' fits Python 3.11" in message
    assert (
        "  2.5.1+cu124  no kernels for RTX 5090 (sm_120): built for "
        "sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90" in message
    )
    assert (
        "  - torch >= 2.7.0 with CUDA 12.8 (2.7.0+cu128) has kernels for RTX 5090 (sm_120)."
        in message
    )


def test_cuda13_default_is_skipped_on_an_r535_driver(tmp_path: Path) -> None:
    resolution = resolve_text(
        tmp_path, spec_text("2.11.0", target_='driver = "535.104.05"\ngpus = ["H100"]\n')
    )
    # The PyPI default (cu130) needs >= 580; the newest qualifying CUDA wins next.
    assert resolution.build.label == "2.11.0+cu128"
    rejected = {v.build.label: v.rejections for v in resolution.verdicts}
    assert rejected["2.11.0+cu130"] == (
        "CUDA 13.0 needs driver >= 580.65.06; the target driver is 535.104.05",
    )
    assert rejected["2.11.0+cu126"] == ()


def test_pascal_gets_the_cu126_build_of_torch_2_8(tmp_path: Path) -> None:
    resolution = resolve_text(tmp_path, spec_text("2.8.0", target_='gpus = ["P100"]\n'))
    assert resolution.build.label == "2.8.0+cu126"


def test_old_driver_gets_the_cuda_11_8_build(tmp_path: Path) -> None:
    resolution = resolve_text(tmp_path, spec_text("2.5.1", target_='driver = "470.82.01"\n'))
    assert resolution.build.label == "2.5.1+cu118"
    assert resolution.build.index == "https://download.pytorch.org/whl/cu118"
    assert resolution.pin == "torch==2.5.1+cu118"


def test_too_old_driver_names_the_floor(tmp_path: Path) -> None:
    message = failure(tmp_path, spec_text("2.5.1", target_='driver = "418.87.01"\n'))
    assert "CUDA 11.8 needs driver >= 450.80.02; the target driver is 418.87.01" in message
    assert "  - a target driver >= 450.80.02 runs the CUDA builds of '2.5.1'." in message


def test_unsupported_python_lists_what_exists(tmp_path: Path) -> None:
    message = failure(tmp_path, spec_text("2.5.*", python="3.14"))
    assert "no wheel for Python 3.14 (wheels for 3.9, 3.10, 3.11, 3.12, 3.13)" in message
    assert message.splitlines()[-4:] == [
        "What would work instead:",
        "  - torch '2.5.*' has wheels for Python 3.9, 3.10, 3.11, 3.12, 3.13.",
        "  - torch >= 2.9.0 has wheels for Python 3.14.",
        "  - torch==2.15.0 (2.15.0+cu132) satisfies everything but the torch/CUDA pin.",
    ]


def test_a_gpu_the_release_covers_is_not_given_as_the_reason(tmp_path: Path) -> None:
    """torch 2.5 has kernels for an A100; only its Python wheels stop at 3.13."""
    message = failure(tmp_path, spec_text("2.5.*", python="3.14", target_='gpus = ["A100"]\n'))
    assert message.splitlines()[-4:] == [
        "What would work instead:",
        "  - torch '2.5.*' has wheels for Python 3.9, 3.10, 3.11, 3.12, 3.13.",
        "  - torch >= 2.9.0 has wheels for Python 3.14.",
        "  - torch==2.15.0 (2.15.0+cu132) satisfies everything but the torch/CUDA pin.",
    ]


def test_each_way_out_names_its_own_reason(tmp_path: Path) -> None:
    """An RTX 5090 needs torch >= 2.7 for its kernels and Python 3.14 needs torch >= 2.9 for
    its wheels: two lines, each with the release that meets its own constraint."""
    gpu = 'gpus = ["RTX 5090"]\n'
    message = failure(tmp_path, spec_text("2.5.*", python="3.14", target_=gpu))
    assert message.splitlines()[-5:] == [
        "What would work instead:",
        "  - torch >= 2.7.0 with CUDA 12.8 (2.7.0+cu128) has kernels for RTX 5090 (sm_120).",
        "  - torch '2.5.*' has wheels for Python 3.9, 3.10, 3.11, 3.12, 3.13.",
        "  - torch >= 2.9.0 has wheels for Python 3.14.",
        "  - torch==2.15.0 (2.15.0+cu132) satisfies everything but the torch/CUDA pin.",
    ]


def test_explicit_cuda_is_honoured(tmp_path: Path) -> None:
    resolution = resolve_text(tmp_path, spec_text("2.5.*", extra='cuda = "11.8"\n'))
    assert resolution.build.label == "2.5.1+cu118"


def test_explicit_cuda_without_a_build(tmp_path: Path) -> None:
    message = failure(tmp_path, spec_text("2.5.1", extra='cuda = "12.2"\n'))
    assert "2.5.1+cu124  CUDA 12.4 build; the spec asks for CUDA 12.2" in message
    assert (
        "  - torch==2.15.0 (2.15.0+cu132) satisfies everything but the torch/CUDA pin." in message
    )


def test_cpu_only_takes_the_cpu_index(tmp_path: Path) -> None:
    resolution = resolve_text(tmp_path, spec_text("2.5.1", extra="cpu_only = true\n"))
    assert resolution.build.label == "2.5.1+cpu"
    assert resolution.pin == "torch==2.5.1+cpu"
    assert resolution.build.index == "https://download.pytorch.org/whl/cpu"
    assert resolution.min_driver is None and resolution.coverage == ()


def test_newest_cuda_is_not_chosen_because_it_exists(tmp_path: Path) -> None:
    resolution = resolve_text(tmp_path, spec_text("2.7.1"))
    assert resolution.build.label == "2.7.1+cu126"  # not 2.7.1+cu128
    assert resolution.notes[-1].startswith(
        "no [target] in the spec: the image runs on drivers >= 525.60.13"
    )


def test_ada_runs_ampere_cubins_with_a_note(tmp_path: Path) -> None:
    resolution = resolve_text(tmp_path, spec_text("2.5.1", target_='gpus = ["L4"]\n'))
    assert "L4 (sm_89) runs the sm_86 cubins (same major, lower minor)" in resolution.notes


def test_a_release_newer_than_the_knowledge_points_to_refresh(tmp_path: Path) -> None:
    assert failure(tmp_path, spec_text("3.0")) == (
        "no CUDA build of a torch release matching '3.0' is in the knowledge base, which knows "
        f'torch 2.0.0 to 2.15.0 (version {KB.version}). "3.0" means ==3.0 exactly; did you '
        'mean "3.0.*"? If the release came out after 2.15.0, run `reprobuild knowledge refresh` '
        "to read the releases since."
    )
    assert failure(tmp_path, spec_text(">=2.99")).endswith(
        "If the release came out after 2.15.0, run `reprobuild knowledge refresh` to read the "
        "releases since."
    )


@pytest.mark.parametrize("torch", ["2.5.9", "==2.5.9", "2.5.9+cu121"])
def test_a_patch_release_that_does_not_exist_names_the_real_ones(
    tmp_path: Path, torch: str
) -> None:
    assert failure(tmp_path, spec_text(torch)) == (
        "torch 2.5.9 is not a release: the 2.5 releases are 2.5.0 and 2.5.1. Pin one of them, "
        'or write torch = "2.5.*" for the newest 2.5 build that fits.'
    )


def test_a_series_of_one_release_is_named_so(tmp_path: Path) -> None:
    assert failure(tmp_path, spec_text("2.6.3", extra="cpu_only = true\n")) == (
        "torch 2.6.3 is not a release: the only 2.6 release is 2.6.0. Pin it, or write "
        'torch = "2.6.*" for the newest 2.6 build that fits.'
    )


def test_a_release_older_than_the_knowledge_does_not_point_to_refresh(tmp_path: Path) -> None:
    assert failure(tmp_path, spec_text("1.13.1")) == (
        "no CUDA build of a torch release matching '1.13.1' is in the knowledge base, which "
        f"knows torch 2.0.0 to 2.15.0 (version {KB.version}). Choose a release in that range; "
        "`reprobuild knowledge show` lists them."
    )
    assert "refresh" not in failure(tmp_path, spec_text("<2.0"))


def test_a_variant_index_build_says_why_pypi_s_was_passed_over(tmp_path: Path) -> None:
    text = 'name = "lab/x"\npython = "3.11"\ntorch = "2.11.0"\n[target]\ngpus = ["H100"]\n'
    text += 'driver = "535.104.05"\n'
    (tmp_path / "reprobuild.toml").write_text(text)
    spec = load_spec(tmp_path, KB).spec
    chosen = resolve.resolve(spec, target.from_spec(spec.target), KB)
    assert chosen.build.label == "2.11.0+cu128"
    assert chosen.notes[0] == (
        "PyPI's 2.11.0+cu130 does not fit (CUDA 13.0 needs driver >= 580.65.06; the target "
        "driver is 535.104.05): 2.11.0+cu128 comes from https://download.pytorch.org/whl/cu128"
    )
    (tmp_path / "reprobuild.toml").write_text(text.replace('"2.11.0"', '"2.11.0+cu128"'))
    asked = load_spec(tmp_path, KB).spec
    again = resolve.resolve(asked, target.from_spec(asked.target), KB)
    assert again.build.label == "2.11.0+cu128"
    assert not any(note.startswith("PyPI's") for note in again.notes)  # the spec asked for it


def test_preference_is_default_then_cuda_then_torch() -> None:
    builds = {b.label: b for b in KB.builds_on(AMD64)}
    ordered = sorted(
        [builds[x] for x in ("2.10.0+cu130", "2.9.1+cu128", "2.10.0+cu128", "2.9.1+cu130")],
        key=resolve.preference,
        reverse=True,
    )
    assert [b.label for b in ordered] == [
        "2.10.0+cu128",
        "2.9.1+cu128",
        "2.10.0+cu130",
        "2.9.1+cu130",
    ]


def test_resolution_json_is_complete(tmp_path: Path) -> None:
    data = resolve_text(tmp_path, spec_text("2.5.1", target_='gpus = ["A100"]\n')).to_dict()
    assert data["torch"]["pin"] == "torch==2.5.1" and data["cuda"] == "12.4"
    assert data["target"]["gpus"] == [{"label": "A100", "capability": "8.0", "via": "sm_80"}]
    assert data["knowledge_version"] == KB.version
    assert sum(c["chosen"] for c in data["candidates"]) == 1


def host(*gpus: tuple[str, int, int], driver: str = "580.159.04") -> NvidiaHost:
    return NvidiaHost(
        DriverVersion.parse(driver),
        CudaVersion(13, 0),
        tuple(
            HostGpu(i, n, ComputeCapability(a, b), None, None, None)
            for i, (n, a, b) in enumerate(gpus)
        ),
    )


def test_host_target_reads_driver_and_distinct_gpus() -> None:
    found = target.from_host(host(("NVIDIA H100 80GB HBM3", 9, 0), ("NVIDIA H100 80GB HBM3", 9, 0)))
    assert found.origin == "host" and str(found.driver) == "580.159.04"
    assert [(g.label, str(g.capability)) for g in found.gpus] == [("NVIDIA H100 80GB HBM3", "9.0")]


def test_host_target_without_driver_is_a_clear_error() -> None:
    with pytest.raises(
        HostError, match=r"target.host = true, but this machine cannot be read: no NVIDIA"
    ):
        target.from_host(NvidiaHost(None, None, (), "no NVIDIA driver: ..."))
