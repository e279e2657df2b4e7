"""The hook's part in `reprobuild run`: threads, the process report with its fingerprint key, and
the optimizer step trace. Loaded as the image loads it (a .pth file in a site directory, then a
fresh interpreter importing the real torch, on the CPU), except the hash definitions, which are
checked here in-process against independently built bytes."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from builder.render import context, plan
from builder.smoke import hook

torch = pytest.importorskip("torch")

REPORT_KEYS = {
    "argv",
    "pid",
    "rank",
    "started",
    "mode",
    "seed",
    "tf32",
    "threads",
    "interop_threads",
    "cublas_workspace_config",
    "applied",
    "error",
    "key",
    "ended",
}
PRELUDE = "import site, sys; site.addsitedir(sys.argv[1])\n"
SHOW = """
import json, os, torch
import _reprobuild_determinism as hook
print(json.dumps({"pid": os.getpid(), "applied": hook.APPLIED, "threads": torch.get_num_threads(),
                  "deterministic": torch.are_deterministic_algorithms_enabled()}))
"""
TRAIN = """
import json, os, torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
inputs, targets = torch.randn(16, 6), torch.randn(16, 2)
perturb = int(os.environ.get("PERTURB_AT", "0"))
for step in range(1, 11):
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(model(inputs), targets).backward()
    optimizer.step()
    if step == perturb:
        with torch.no_grad():
            model[0].weight[0, 0] += 1e-3
print(json.dumps([parameter.tolist() for parameter in model.parameters()]))
"""


CPU_MODEL = next(
    line.split(":", 1)[1].strip()
    for line in Path("/proc/cpuinfo").read_text().splitlines()
    if line.startswith("model name")
)


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site-packages")
    (folder / plan.HOOK_MODULE).write_text(context.HOOK_SOURCE.read_text())
    (folder / plan.HOOK_PTH).write_text(plan.HOOK_PTH_TEXT)
    return folder


def run(
    site_dir: Path,
    code: str,
    report: Path | None,
    *,
    cwd: Path | None = None,
    returncode: int = 0,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter with the hook; the hook's and torch's variables cleared,
    then `env` and REPROBUILD_REPORT=`report` set."""
    cleared = ("CUBLAS_WORKSPACE_CONFIG", "RANK", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("REPROBUILD_") and name not in cleared
    }
    if report is not None:
        environment["REPROBUILD_REPORT"] = str(report)
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", PRELUDE + code, str(site_dir)],
        capture_output=True,
        text=True,
        env={**environment, **env},
        cwd=cwd,
        timeout=120,
        check=False,
    )
    assert result.returncode == returncode, result.stderr
    return result


def reports(folder: Path) -> dict[int, dict[str, Any]]:
    found = {}
    for path in folder.glob("process-*.json"):
        report: dict[str, Any] = json.loads(path.read_text())
        assert path.name == f"process-{report['pid']}.json"
        found[report["pid"]] = report
    return found


def only_report(folder: Path) -> dict[str, Any]:
    found = reports(folder)
    assert len(found) == 1, sorted(found)
    return next(iter(found.values()))


def trace(folder: Path, pid: int | None = None) -> list[dict[str, Any]]:
    paths = list(folder.glob("trace-*.jsonl"))
    assert len(paths) == 1, paths
    if pid is not None:
        assert paths[0].name == f"trace-{pid}.jsonl"
    return [json.loads(line) for line in paths[0].read_text().splitlines()]


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("reprobuild")]


# --- threads


def test_threads_are_set_and_recorded(site_dir: Path, tmp_path: Path) -> None:
    result = run(site_dir, SHOW, tmp_path, REPROBUILD_THREADS="1")
    shown = json.loads(result.stdout)
    report = only_report(tmp_path)
    assert shown["threads"] == 1 and report["threads"] == 1
    assert shown["applied"]["threads"] == 1
    assert shown["applied"]["interop_threads"] == report["interop_threads"] >= 1
    assert stderr_lines(result) == []


def test_threads_the_environment_chose_are_recorded(site_dir: Path) -> None:
    shown = json.loads(run(site_dir, SHOW, None, OMP_NUM_THREADS="1").stdout)
    assert shown["threads"] == shown["applied"]["threads"] == 1


def test_an_invalid_thread_count_is_named_once_and_ignored(site_dir: Path, tmp_path: Path) -> None:
    result = run(site_dir, SHOW, tmp_path, REPROBUILD_THREADS="two")
    shown = json.loads(result.stdout)
    assert shown["applied"]["threads"] == shown["threads"] == only_report(tmp_path)["threads"]
    assert stderr_lines(result) == [
        "reprobuild determinism hook: REPROBUILD_THREADS='two' is not a positive number of "
        "threads; ignored"
    ]


# --- the report


def test_the_report_at_import_and_at_exit(site_dir: Path, tmp_path: Path) -> None:
    result = run(site_dir, SHOW, tmp_path, RANK="3", REPROBUILD_SEED="7")
    shown = json.loads(result.stdout)
    report = only_report(tmp_path)
    assert set(report) == REPORT_KEYS
    assert report["pid"] == shown["pid"]
    assert report["argv"] == ["-c", str(site_dir)]
    assert (report["rank"], report["mode"], report["seed"], report["tf32"]) == ("3", "1", 7, False)
    assert report["threads"] == shown["threads"]
    assert report["cublas_workspace_config"] == ":4096:8"
    assert report["applied"] == shown["applied"]
    assert report["error"] is None
    assert isinstance(report["started"], float) and report["started"] <= report["ended"]
    assert report["key"] == {
        "device": "cpu",
        "gpus": [],
        "driver": None,  # this machine: no NVIDIA driver, a CPU build of torch, no cuBLAS wheel
        "cuda_driver": None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": None,
        "cublas": None,
        "cpu": CPU_MODEL,
        "cores": len(os.sched_getaffinity(0)),
        "machine": platform.machine(),
    }
    assert not list(tmp_path.glob("*.tmp"))


def test_the_report_in_warn_mode_and_with_the_hook_off(site_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "warn").mkdir()
    run(site_dir, SHOW, tmp_path / "warn", REPROBUILD_DETERMINISTIC="warn")
    assert only_report(tmp_path / "warn")["mode"] == "warn"
    # Mode 0 touches nothing (no seed, no threads set) and still reports what torch has.
    (tmp_path / "off").mkdir()
    result = run(
        site_dir, SHOW, tmp_path / "off", REPROBUILD_DETERMINISTIC="0", REPROBUILD_THREADS="1"
    )
    shown = json.loads(result.stdout)
    report = only_report(tmp_path / "off")
    assert shown["deterministic"] is False
    assert (report["mode"], report["seed"], report["cublas_workspace_config"]) == ("0", None, None)
    recorded = {"threads": shown["threads"], "interop_threads": report["interop_threads"]}
    assert report["applied"] == shown["applied"] == recorded
    if len(os.sched_getaffinity(0)) > 1:
        assert report["threads"] > 1  # REPROBUILD_THREADS was not applied
    assert report["key"]["device"] == "cpu"


def test_no_report_and_no_trace_without_the_report_folder(site_dir: Path, tmp_path: Path) -> None:
    result = run(site_dir, TRAIN + SHOW, None, cwd=tmp_path, REPROBUILD_TRACE="3")
    assert list(tmp_path.iterdir()) == []
    assert "trace_interval" not in json.loads(result.stdout.splitlines()[-1])["applied"]
    assert stderr_lines(result) == [
        "reprobuild determinism hook: REPROBUILD_TRACE needs REPROBUILD_REPORT, the trace's "
        "folder; no trace"
    ]


def test_a_process_that_ends_with_os_exit_keeps_its_import_time_report(
    site_dir: Path, tmp_path: Path
) -> None:
    run(site_dir, "import os, torch\nos._exit(3)", tmp_path, returncode=3)
    report = only_report(tmp_path)
    assert set(report) == REPORT_KEYS
    assert (report["key"], report["ended"]) == (None, None)


def test_a_relative_report_folder_is_where_the_program_started(
    site_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run(site_dir, f"import os, torch\nos.chdir({str(elsewhere)!r})", Path("out"), cwd=tmp_path)
    assert only_report(tmp_path / "out")["key"] is not None  # written at exit, after the chdir
    assert list(elsewhere.iterdir()) == []


def test_forked_dataloader_workers_leave_no_report(site_dir: Path, tmp_path: Path) -> None:
    code = (
        "import os, torch\n"
        "from torch.utils.data import DataLoader, TensorDataset\n"
        "data = TensorDataset(torch.arange(8.0))\n"
        "loader = DataLoader(data, batch_size=2, num_workers=2, multiprocessing_context='fork')\n"
        "weight = torch.nn.Parameter(torch.zeros(1))\n"
        "optimizer = torch.optim.SGD([weight], lr=0.1)\n"
        "for (batch,) in loader:\n"
        "    optimizer.zero_grad(); (weight * batch).sum().backward(); optimizer.step()\n"
        "print(os.getpid())\n"
    )
    result = run(site_dir, code, tmp_path, REPROBUILD_TRACE="1")
    pid = int(result.stdout)
    assert list(reports(tmp_path)) == [pid]
    assert [entry["step"] for entry in trace(tmp_path, pid)] == [1, 2, 3, 4]


def test_a_report_that_cannot_be_written_is_named_once(site_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = run(site_dir, TRAIN, missing, REPROBUILD_TRACE="3")
    assert json.loads(result.stdout)  # the program ran to its end
    assert not missing.exists()
    lines = stderr_lines(result)
    assert len(lines) == 2, lines  # the report (at import and again at exit) and the trace
    assert lines[0].startswith(
        f"reprobuild determinism hook: could not write the run report to {missing} "
        "(FileNotFoundError"
    )
    assert lines[1].startswith("reprobuild determinism hook: the step trace stopped")


# --- the trace


def traced_training(
    site_dir: Path, folder: Path, perturb_at: int = 0
) -> tuple[str, list[dict[str, Any]]]:
    folder.mkdir()
    result = run(site_dir, TRAIN, folder, REPROBUILD_TRACE="3", PERTURB_AT=str(perturb_at))
    assert stderr_lines(result) == []
    report = only_report(folder)
    assert report["applied"]["trace_interval"] == 3 and report["error"] is None
    return result.stdout, trace(folder, report["pid"])


def test_the_trace_is_chained_and_reproducible(site_dir: Path, tmp_path: Path) -> None:
    final, entries = traced_training(site_dir, tmp_path / "first")
    again, _ = traced_training(site_dir, tmp_path / "second")
    assert [(entry["step"], entry["optimizer"]) for entry in entries] == [(3, 0), (6, 0), (9, 0)]
    previous = None
    for entry in entries:
        assert set(entry) == {"step", "optimizer", "params", "state", "previous", "hash"}
        assert entry["previous"] == previous
        body = {name: value for name, value in entry.items() if name != "hash"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        assert entry["hash"] == hashlib.sha256(canonical).hexdigest()
        previous = entry["hash"]
    assert len({entry["params"] for entry in entries}) == 3
    first = next((tmp_path / "first").glob("trace-*.jsonl")).read_text()
    assert next((tmp_path / "second").glob("trace-*.jsonl")).read_text() == first
    assert again == final
    # Tracing reads the parameters and changes nothing: the same result without it.
    assert run(site_dir, TRAIN, None).stdout == final


def test_a_perturbed_parameter_shows_at_the_next_traced_step(
    site_dir: Path, tmp_path: Path
) -> None:
    _, entries = traced_training(site_dir, tmp_path / "plain")
    _, perturbed = traced_training(site_dir, tmp_path / "perturbed", perturb_at=5)
    assert perturbed[0] == entries[0]
    assert perturbed[1]["params"] != entries[1]["params"]
    assert perturbed[1]["state"] != entries[1]["state"]
    assert all(a["hash"] != b["hash"] for a, b in zip(perturbed[1:], entries[1:], strict=True))


def test_optimizers_are_numbered_in_the_order_they_first_step(
    site_dir: Path, tmp_path: Path
) -> None:
    code = (
        "import torch\n"
        "a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))\n"
        "first, second = torch.optim.SGD([a], lr=0.1), torch.optim.Adam([b], lr=0.1)\n"
        "for _ in range(4):\n"
        "    for optimizer, parameter in ((second, b), (first, a)):\n"
        "        optimizer.zero_grad(); parameter.square().sum().backward(); optimizer.step()\n"
    )
    run(site_dir, code, tmp_path, REPROBUILD_TRACE="2")
    entries = trace(tmp_path)
    assert [(entry["step"], entry["optimizer"]) for entry in entries] == [
        (2, 0),
        (2, 1),
        (4, 0),
        (4, 1),
    ]
    assert [entry["previous"] for entry in entries[1:]] == [entry["hash"] for entry in entries[:-1]]


def test_a_trace_that_fails_stops_once_and_the_program_goes_on(
    site_dir: Path, tmp_path: Path
) -> None:
    code = (
        "import torch\n"
        "class Unprintable:\n"
        "    def __repr__(self): raise ValueError('no repr')\n"
        "weight = torch.nn.Parameter(torch.ones(2))\n"
        "optimizer = torch.optim.SGD([weight], lr=0.1)\n"
        "for step in range(1, 10):\n"
        "    optimizer.zero_grad(); weight.sum().backward(); optimizer.step()\n"
        "    optimizer.state[weight]['odd'] = Unprintable() if step >= 4 else 1\n"
        "print('done')\n"
    )
    result = run(site_dir, code, tmp_path, REPROBUILD_TRACE="3")
    assert result.stdout == "done\n"
    assert stderr_lines(result) == [
        "reprobuild determinism hook: the step trace stopped (ValueError: no repr)"
    ]
    assert [entry["step"] for entry in trace(tmp_path)] == [3]
    assert only_report(tmp_path)["error"] == "the step trace stopped (ValueError: no repr)"


# --- the hook's cost at start


def test_the_hook_adds_no_import_at_start(site_dir: Path, tmp_path: Path) -> None:
    show = "print(*sorted(sys.modules))"
    with_hook = run(
        site_dir,
        show,
        tmp_path,
        REPROBUILD_TRACE="3",
        REPROBUILD_THREADS="1",
        REPROBUILD_DETERMINISTIC="warn",
    )
    empty = tmp_path / "empty-site"
    empty.mkdir()
    without = subprocess.run(
        # What the hook always imported: random for its seeding, and __future__ (its
        # `from __future__ import annotations`, a small stdlib module).
        [sys.executable, "-c", f"{PRELUDE}import __future__, random\n{show}", str(empty)],
        capture_output=True,
        text=True,
        check=True,
    )
    added = set(with_hook.stdout.split()) - set(without.stdout.split())
    assert added == {plan.HOOK_MODULE.removesuffix(".py")}
    assert list(tmp_path.glob("process-*")) == []  # no torch, no report


# --- the hash definitions, in-process


class Recorder:
    """Stands for a hashlib digest: keeps what it is fed."""

    def __init__(self) -> None:
        self.data = b""

    def update(self, data: Any) -> None:
        self.data += bytes(data)


def fed(tensor: Any) -> bytes:
    recorder = Recorder()
    hook.hash_tensor(recorder, tensor)
    return recorder.data


def test_a_tensor_is_its_header_and_its_elements_in_row_major_order() -> None:
    assert fed(torch.tensor([1.0, 2.0])) == b"float32 2\n" + struct.pack("=2f", 1.0, 2.0)
    grid = torch.arange(12.0).reshape(3, 4)
    transposed = grid.t()  # not contiguous
    assert not transposed.is_contiguous()
    assert fed(transposed) == b"float32 4,3\n" + struct.pack(
        "=12f", *[float(4 * row + column) for column in range(4) for row in range(3)]
    )
    line = torch.arange(10, dtype=torch.float64)
    assert fed(line[3:7]) == b"float64 4\n" + struct.pack("=4d", 3, 4, 5, 6)  # an offset view
    assert fed(line[1::3]) == b"float64 3\n" + struct.pack("=3d", 1, 4, 7)
    assert fed(torch.tensor([True, False, True])) == b"bool 3\n\x01\x00\x01"
    assert fed(torch.tensor(5)) == b"int64 \n" + struct.pack("=q", 5)
    assert fed(torch.zeros(0, 3)) == b"float32 0,3\n"
    # bfloat16 is the upper half of the float32 (exact for these values).
    halves = b"".join(
        struct.pack("<f", value)[2:] if sys.byteorder == "little" else struct.pack(">f", value)[:2]
        for value in (1.0, -2.5)
    )
    assert fed(torch.tensor([1.0, -2.5], dtype=torch.bfloat16)) == b"bfloat16 2\n" + halves
    assert fed(torch.arange(6.0)) != fed(torch.arange(6.0).reshape(2, 3))
    complex_values = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64)
    assert fed(complex_values.conj()) == fed(complex_values.conj().resolve_conj())
    assert fed(torch.nn.Parameter(torch.ones(2))) == fed(torch.ones(2))


def test_the_params_and_state_hashes_are_defined_over_those_records() -> None:
    first, second, third = (torch.nn.Parameter(torch.full((2,), float(i))) for i in range(3))
    optimizer = SimpleNamespace(
        param_groups=[{"params": [first, second]}, {"params": [third]}],
        state={
            third: {"step": torch.tensor(4.0), "buffers": [torch.ones(1), 0.5]},
            first: {"lr": 0.1, "extra": {"b": None, "a": True}},
        },
    )
    expected = fed(first) + fed(second) + fed(third)
    assert hook.params_hash(optimizer) == hashlib.sha256(expected).hexdigest()
    state = (
        b"param 0\n"
        b"extra\ndict 2\n'a'\nvalue True\n'b'\nvalue None\n"
        b"lr\nvalue 0.1\n"
        b"param 2\n"
        b"buffers\nlist 2\ntensor " + fed(torch.ones(1)) + b"value 0.5\n"
        b"step\ntensor " + fed(torch.tensor(4.0))
    )
    assert hook.state_hash(optimizer, torch) == hashlib.sha256(state).hexdigest()


def test_the_state_hash_reads_the_state_as_state_dict_keys_it() -> None:
    weight, bias = torch.nn.Parameter(torch.ones(3, 2)), torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam([{"params": [weight]}, {"params": [bias], "lr": 0.01}])
    for _ in range(2):
        optimizer.zero_grad()
        (weight.sum() + bias.square().sum()).backward()
        optimizer.step()
    packed = SimpleNamespace(
        param_groups=optimizer.param_groups, state=optimizer.state_dict()["state"]
    )
    assert hook.state_hash(optimizer, torch) == hook.state_hash(packed, torch)


def test_the_entry_hash_is_over_the_canonical_json_without_it() -> None:
    entry = {"step": 3, "optimizer": 0, "params": "a", "state": "b", "previous": None}
    canonical = b'{"optimizer":0,"params":"a","previous":null,"state":"b","step":3}'
    assert hook.entry_hash({**entry, "hash": "x"}) == hashlib.sha256(canonical).hexdigest()


def fake_torch(initialised: bool) -> Any:
    """A torch that has two H100s, and fails the test if CUDA is described uninitialised."""

    def properties(index: int) -> SimpleNamespace:
        assert initialised, "CUDA described without the program initialising it"
        return SimpleNamespace(
            name=f"NVIDIA H100 #{index}", major=9, minor=0, multi_processor_count=132
        )

    def count() -> int:
        assert initialised, "CUDA counted without the program initialising it"
        return 2

    return SimpleNamespace(
        __version__="2.5.1+cu124",
        version=SimpleNamespace(cuda="12.4"),
        cuda=SimpleNamespace(
            is_initialized=lambda: initialised,
            device_count=count,
            get_device_properties=properties,
        ),
        backends=SimpleNamespace(
            cudnn=SimpleNamespace(is_available=lambda: True, version=lambda: 90100)
        ),
    )


def test_the_key_describes_gpus_only_where_cuda_was_initialised() -> None:
    described = hook.fingerprint(fake_torch(initialised=True))
    assert described["device"] == "cuda"
    assert described["gpus"] == [
        {"name": f"NVIDIA H100 #{index}", "capability": "9.0", "sms": 132} for index in (0, 1)
    ]
    assert (described["torch"], described["cuda"], described["cudnn"]) == (
        "2.5.1+cu124",
        "12.4",
        "9.1.0",
    )
    idle = hook.fingerprint(fake_torch(initialised=False))
    assert (idle["device"], idle["gpus"], idle["cuda_driver"]) == ("cpu", [], None)
