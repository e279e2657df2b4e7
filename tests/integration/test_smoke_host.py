"""`reprobuild smoke IMAGE` against the real engine, for what needs no torch in the image: the
errors for an engine without the NVIDIA runtime and for an image without the payload. The run of
the payload itself is in test_torch_image.py (CPU mode: CI has no GPU)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.cli import reprobuild
from tests.infra import ENGINE


def smoke(*args: str) -> subprocess.CompletedProcess[str]:
    return reprobuild("smoke", *args, timeout=300)


def test_gpu_mode_on_an_engine_without_the_nvidia_runtime(
    engine_client: Any, test_base: str
) -> None:
    if "nvidia" in engine_client.client.info().get("Runtimes", {}):
        pytest.skip("this engine has the NVIDIA runtime")
    result = smoke(test_base, "--gpus", "1")
    assert result.returncode == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: the Docker engine at {ENGINE} cannot give a container a GPU "
        '(could not select device driver "" with capabilities: [[gpu]]): it has no NVIDIA '
        "container runtime. Install the NVIDIA Container Toolkit (`nvidia-container-toolkit`), "
        "run `nvidia-ctk runtime configure --runtime=docker` and restart dockerd; or use --cpu "
        "for the CPU mode."
    )


def test_an_image_without_the_payload(engine_client: Any, test_base: str) -> None:
    result = smoke(test_base, "--cpu")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: {test_base} has no reprobuild-smoke on its PATH: only images made by "
        "`reprobuild build` carry the smoke payload. Build the project's image, or name one "
        "that was."
    )
    leftovers = engine_client.client.containers.list(all=True, filters={"ancestor": test_base})
    assert leftovers == []


def test_a_malformed_reference(engine_client: Any) -> None:
    result = smoke("lab/train@sha256:", "--cpu")
    assert result.returncode == 1
    assert "'lab/train@sha256:' is not an image the engine can look up" in result.stderr
    assert result.stderr.rstrip().endswith(
        "give name:tag, name@sha256:<64 hex digits> or an image ID."
    )
