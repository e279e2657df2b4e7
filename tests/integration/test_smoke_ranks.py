"""`reprobuild smoke --cpu --ranks 2` end to end: the torch 2.5.1 image's own payload runs two gloo
process groups of two ranks in a container with the network off (loopback only), through the
real engine. The GPU run (NCCL, one GPU per rank) needs a host with two GPUs."""

from __future__ import annotations

import json
from typing import Any

from tests.cli import reprobuild


def test_two_ranks_over_gloo_in_the_built_image(torch_image: Any) -> None:
    project = str(torch_image.project)
    result = reprobuild("-C", project, "smoke", "--cpu", "--ranks", "2", "--json", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(CPU mode, 2 ranks)" in result.stderr
    report = json.loads(result.stdout)
    assert report["image_id"] == torch_image.record.image_id
    assert report["verdict"] == "pass" and report["mode"] == "cpu" and report["errors"] == {}
    assert report["key"]["distributed"] == {
        "world_size": 2,
        "backend": "gloo",
        "backend_version": "2.5.1+cu124",
    }
    assert report["preconditions"] == [
        {"name": "cuda", "ok": True, "detail": "cuda 12.4"},
        {"name": "cudnn", "ok": True, "detail": "cudnn 9.1.0"},
        {"name": "torch", "ok": True, "detail": "torch 2.5.1"},
        {"name": "ranks", "ok": True, "detail": "2 ranks on the CPU over gloo"},
    ]
    assert len(report["kernels"]) == 16  # the CPU suite's 14 and the group's 2
    for name in ("distributed_all_reduce", "distributed_ddp_step"):
        runs = report["kernels"][name]["runs"]
        assert report["kernels"][name]["identical"] and runs[0] == runs[1] and len(runs[0]) == 64
    assert report["canary"] == {"witnesses": 9, "differed": 0, "names": []}
