"""The real thing, end to end: the PyPI CUDA build of torch 2.5.1 locked, built, normalised and
run on this machine's CPU (CI has no GPU; the GPU run of the same payload is in tests/gpu/).

About 3 GB of wheels are downloaded once into the wheel cache; the build takes minutes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from builder import buildrecord, engine
from builder.cli import cli
from tests.infra import BASE, DEBIAN_MIRROR

EXPECT = "/opt/reprobuild/expect.json"

SPEC = f"""name = "lab/torch-e2e"
python = "3.11"
torch = "2.5.1"
cuda = "auto"
base = "{BASE}"
packages = ["numpy==2.1.3"]

[target]
driver = "535.104.05"
gpus = ["A100", "H100"]
"""


@pytest.fixture(scope="module")
def torch_image(tmp_path_factory: pytest.TempPathFactory, engine_client: Any) -> Any:
    project = tmp_path_factory.mktemp("torch-e2e")
    (project / "reprobuild.toml").write_text(SPEC)
    (project / "train.py").write_text("import torch\nprint(torch.ones(2).sum().item())\n")
    result = CliRunner().invoke(
        cli, ["-C", str(project), "build", "--plain", "--debian-mirror", DEBIAN_MIRROR]
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception}"
    record = buildrecord.read(project)
    yield record
    engine.remove_image(engine_client, record.image)


def _run(client: Any, image: str, argv: list[str]) -> tuple[int, str]:
    container = client.containers.create(image, argv)
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
    code, output = _run(engine_client, torch_image.image, ["sh", "-c", script])
    assert code == 0, output
    assert output.split("\n")[:5] == ["2.5.1+cu124 12.4 90100 2.1.3", "1000", "2.0", "0", "0"]


def test_smoke_payload_passes_in_the_image_in_cpu_mode(
    torch_image: Any, engine_client: Any
) -> None:
    argv = ["reprobuild-smoke", "--cpu", "--json", "--no-canary"]
    code, output = _run(engine_client, torch_image.image, [*argv, "--expect", EXPECT])
    report = json.loads(output)
    assert code == 0 and report["verdict"] == "pass", output
    assert report["key"]["torch"] == "2.5.1+cu124"


def test_torch_image_record_and_size(torch_image: Any) -> None:
    assert torch_image.normalisation["rewritten"] == []
    assert torch_image.base_layers == 1
    sizes = [layer.size for layer in torch_image.layers]
    assert sizes[2] > 4_000_000_000  # the torch and CUDA stack, in its own layer
    assert len(sizes) == 7
