"""The real thing, end to end: the PyPI CUDA build of torch 2.5.1 locked, built, normalised and
run on this machine's CPU (CI has no GPU; the GPU run of the same payload is in tests/gpu/).

About 3 GB of wheels are downloaded once into the wheel cache; the build takes minutes.
"""

from __future__ import annotations

import json
from typing import Any

from builder.engine.sdk import Engine
from tests.cli import reprobuild


def _run(engine: Engine, image: str, argv: list[str]) -> tuple[int, str]:
    container = engine.client.containers.create(image, argv)
    try:
        container.start()
        code = int(container.wait(timeout=300)["StatusCode"])
        return code, container.logs(stderr=False).decode()
    finally:
        container.remove(force=True)


def test_torch_image_runs_the_locked_cuda_build_on_the_cpu(
    torch_image: Any, engine_client: Any
) -> None:
    script = (
        "python -c 'import torch, numpy; print(torch.__version__, torch.version.cuda, "
        "torch.backends.cudnn.version(), numpy.__version__)' && id -u && python train.py"
        " && find /opt /workspace -name '*.pyc' | wc -l && ls /opt/venv/bin | grep -c pip || true"
    )
    code, output = _run(engine_client, torch_image.record.image, ["sh", "-c", script])
    assert code == 0, output
    assert output.split("\n")[:5] == ["2.5.1+cu124 12.4 90100 2.1.3", "1000", "2.0", "0", "0"]


def test_reprobuild_smoke_runs_the_payload_in_the_built_image(torch_image: Any) -> None:
    # CPU mode: CI has no GPU; tests/gpu runs the payload on one.
    project = str(torch_image.project)
    result = reprobuild("-C", project, "smoke", "--cpu", "--json", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    record = torch_image.record
    assert (report["image"], report["image_id"]) == (record.image, record.image_id)
    assert report["verdict"] == "pass" and report["mode"] == "cpu" and report["gpus"] is None
    assert report["preconditions"] == [
        {"name": "cuda", "ok": True, "detail": "cuda 12.4"},
        {"name": "cudnn", "ok": True, "detail": "cudnn 9.1.0"},
        {"name": "torch", "ok": True, "detail": "torch 2.5.1"},
    ]
    assert report["key"]["torch"] == "2.5.1+cu124" and report["key"]["cudnn"] == "9.1.0"
    assert len(report["kernels"]) == 14
    assert all(kernel["identical"] for kernel in report["kernels"].values())
    assert report["canary"] == {"witnesses": 8, "differed": 0, "names": []}


def test_the_in_image_command_checks_the_lock_by_default(
    torch_image: Any, engine_client: Any
) -> None:
    argv = ["reprobuild-smoke", "--cpu", "--no-canary", "--json"]
    code, output = _run(engine_client, torch_image.record.image, argv)
    report = json.loads(output)
    assert code == 0 and report["verdict"] == "pass", output
    assert [check["name"] for check in report["preconditions"]] == ["cuda", "cudnn", "torch"]


def test_torch_image_record_and_size(torch_image: Any) -> None:
    assert torch_image.record.normalisation["rewritten"] == []
    assert torch_image.record.base_layers == 1
    sizes = [layer.size for layer in torch_image.record.layers]
    # base, venv, the CUDA libraries, torch and triton, the rest, user and hook, payload, code
    assert len(sizes) == 8
    assert sizes[2] > 2_000_000_000 and sizes[3] > 1_000_000_000  # CUDA, then torch, apart


def test_torch_is_deterministic_on_import_unless_opted_out(
    torch_image: Any, engine_client: Any
) -> None:
    probe = (
        "import torch, numpy, _reprobuild_determinism as hook; "
        "print(torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic, "
        "torch.initial_seed(), numpy.random.get_state()[1][0], hook.APPLIED['numpy_seed'])"
    )
    opted_out = "import torch; print(torch.are_deterministic_algorithms_enabled())"
    script = f'python -c "{probe}" && REPROBUILD_DETERMINISTIC=0 python -c "{opted_out}"'
    code, output = _run(engine_client, torch_image.record.image, ["sh", "-c", script])
    assert code == 0, output
    assert output.splitlines() == ["True True 0 0 0", "False"]
