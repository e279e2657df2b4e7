"""The image's runtime hook, loaded the way the image loads it: a .pth file in a site directory
(the image links both files into its venv's site-packages), then a fresh interpreter that
imports the real torch of the test environment (on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.render import context, plan

STRICT_REFUSAL = "put_ does not have a deterministic implementation"
PROBE = """
import site, sys
site.addsitedir(sys.argv[1])
hooked = any(type(f).__name__ == "_Finder" for f in sys.meta_path)
import torch, json
import _reprobuild_determinism as hook
print(json.dumps({
    "hooked": hooked,
    "deterministic": torch.are_deterministic_algorithms_enabled(),
    "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
    "cudnn_deterministic": torch.backends.cudnn.deterministic,
    "cudnn_benchmark": torch.backends.cudnn.benchmark,
    "tf32": torch.backends.cuda.matmul.allow_tf32,
    "seed": torch.initial_seed(),
    "threads": [torch.get_num_threads(), torch.get_num_interop_threads()],
    "loader": type(torch.__loader__).__name__,
    "applied": hook.APPLIED,
}))
"""


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site-packages")
    (folder / plan.HOOK_MODULE).write_text(context.HOOK_SOURCE.read_text())
    (folder / plan.HOOK_PTH).write_text(plan.HOOK_PTH_TEXT)
    return folder


def probe(site_dir: Path, **env: str) -> dict[str, object]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("REPROBUILD_") and name != "CUBLAS_WORKSPACE_CONFIG"
    }
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", PROBE, str(site_dir)],
        capture_output=True,
        text=True,
        env={**environment, **env},
        timeout=120,
        check=True,
    )
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def test_default_makes_torch_deterministic_on_import(site_dir: Path) -> None:
    answer = probe(site_dir)
    threads = answer["threads"]
    assert isinstance(threads, list)
    assert answer == {
        "hooked": True,
        "deterministic": True,
        "warn_only": False,
        "cudnn_deterministic": True,
        "cudnn_benchmark": False,
        "tf32": False,
        "seed": 0,
        "threads": threads,
        "loader": "SourceFileLoader",  # torch keeps its own loader
        "applied": {
            "random_seed": 0,
            "deterministic_algorithms": True,
            "warn_only": False,
            "cudnn_deterministic": True,
            "cudnn_benchmark": False,
            "allow_tf32": False,
            "torch_seed": 0,
            "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
            "threads": threads[0],  # recorded, not set (REPROBUILD_THREADS is not)
            "interop_threads": threads[1],
        },
    }


def test_warn_mode_seed_and_tf32_follow_the_environment(site_dir: Path) -> None:
    answer = probe(
        site_dir,
        REPROBUILD_DETERMINISTIC="warn",
        REPROBUILD_SEED="1234",
        REPROBUILD_TF32="1",
        CUBLAS_WORKSPACE_CONFIG=":16:8",
    )
    assert (answer["deterministic"], answer["warn_only"]) == (True, True)
    assert (answer["seed"], answer["tf32"]) == (1234, True)
    assert answer["applied"]["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"  # type: ignore[index]


def test_opt_out_leaves_torch_untouched(site_dir: Path) -> None:
    answer = probe(site_dir, REPROBUILD_DETERMINISTIC="0")
    assert answer["hooked"] is False
    assert (answer["deterministic"], answer["cudnn_deterministic"]) == (False, False)
    assert answer["seed"] != 0 and answer["applied"] == {}


def test_an_unknown_mode_is_read_as_the_strict_one(site_dir: Path) -> None:
    answer = probe(site_dir, REPROBUILD_DETERMINISTIC="yes please")
    assert (answer["deterministic"], answer["warn_only"]) == (True, False)


PUT_WITHOUT_ACCUMULATE = """
import site, sys
site.addsitedir(sys.argv[1])
import torch
try:
    torch.zeros(3).put_(torch.tensor([0, 0]), torch.ones(2), accumulate=False)
    print("ran")
except RuntimeError as error:
    print(str(error).split(",")[0])
"""


@pytest.mark.parametrize(
    ("mode", "expected"), [("1", STRICT_REFUSAL), ("warn", "ran"), ("0", "ran")]
)
def test_an_operation_without_a_deterministic_kernel(
    site_dir: Path, mode: str, expected: str
) -> None:
    # put_ without accumulate has no deterministic kernel, on the CPU too: the strict mode stops
    # the program there and names the operation, instead of training on varying bits.
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", PUT_WITHOUT_ACCUMULATE, str(site_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "REPROBUILD_DETERMINISTIC": mode},
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == expected


def run_code(site_dir: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    prelude = "import site, sys; site.addsitedir(sys.argv[1])\n"
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-c", prelude + code, str(site_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=True,
    )


def test_a_lookup_before_the_import_does_not_switch_the_hook_off(site_dir: Path) -> None:
    # Libraries test for torch with find_spec before importing it (transformers does).
    code = (
        "import importlib.util; assert importlib.util.find_spec('torch') is not None\n"
        "import torch; print(torch.are_deterministic_algorithms_enabled(), torch.initial_seed())"
    )
    assert run_code(site_dir, code).stdout == "True 0\n"


def test_a_seed_the_program_sets_before_importing_torch_is_kept(site_dir: Path) -> None:
    code = (
        "import random; random.seed(1234)\n"
        "import torch; print(random.random() == random.Random(1234).random())"
    )
    assert run_code(site_dir, code).stdout == "True\n"


def test_a_seed_out_of_range_is_named_and_torch_still_imports(site_dir: Path) -> None:
    code = "import torch; print(torch.initial_seed(), torch.are_deterministic_algorithms_enabled())"
    result = run_code(site_dir, code, REPROBUILD_SEED=str(2**64))
    assert result.stdout == "0 True\n"
    assert (
        f"reprobuild determinism hook: REPROBUILD_SEED='{2**64}' is not a seed between 0 and "
        "2**32 - 1; using 0\n"
    ) in result.stderr


def test_switching_off_at_run_time_before_the_import_is_honoured(site_dir: Path) -> None:
    code = (
        "import os; os.environ['REPROBUILD_DETERMINISTIC'] = '0'\n"
        "import torch; print(torch.are_deterministic_algorithms_enabled())"
    )
    assert run_code(site_dir, code).stdout == "False\n"
