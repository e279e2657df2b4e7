"""The image's runtime hook: torch becomes deterministic as it is imported, with no code change.

Part of the smoke payload (whose deterministic processes apply the same `deterministic_torch`),
and installed in every image's venv as `_reprobuild_determinism.py`, loaded at interpreter start by
`reprobuild-determinism.pth` (so not under `python -S`). At start it seeds Python's `random` and
puts one finder on sys.meta_path. When the program imports torch, the finder lets torch's own
import finish and then, before anything can touch a GPU, applies the deterministic settings;
when it imports NumPy, NumPy's global generator is seeded the same way. Each module is seeded
right after its own import, so a seed the program sets later wins. Standard library only.

REPROBUILD_DETERMINISTIC selects the mode: `1` (the image's default) raises on an operation that
has no deterministic implementation, `warn` only warns about it, `0` leaves everything untouched
(read at start and again at each import). REPROBUILD_SEED (0 to 2**32 - 1) is the seed;
REPROBUILD_TF32=1 allows TF32 matmuls and convolutions. What was applied is kept in `APPLIED`.

For `reprobuild run`, after torch's import: REPROBUILD_THREADS=n sets torch's intra-op threads
(not in mode `0`), and the thread counts torch has are recorded. With REPROBUILD_REPORT naming a
folder, the process writes `process-<pid>.json` there (rewritten at exit with the fingerprint
key), also in mode `0`, which then loads the hook only for this; with REPROBUILD_TRACE=N too,
every Nth step of each optimizer appends a hash of its parameters and state to
`trace-<pid>.jsonl`. None of this is imported or run unless its variable is set.
"""

from __future__ import annotations

import os
import random
import sys
import time  # loaded by the interpreter before site, as os and sys are

# Every Python process in the image imports this module at start, so it imports nothing beyond
# what the interpreter has already loaded; the names below are for annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

MODE_VARIABLE = "REPROBUILD_DETERMINISTIC"
SEED_VARIABLE = "REPROBUILD_SEED"
TF32_VARIABLE = "REPROBUILD_TF32"
CUBLAS_VARIABLE = "CUBLAS_WORKSPACE_CONFIG"
DEFAULT_CUBLAS = ":4096:8"
MODES = ("1", "warn", "0")
SEED_LIMIT = 2**32  # what numpy.random.seed accepts; torch takes the same range
THREADS_VARIABLE = "REPROBUILD_THREADS"
REPORT_VARIABLE = "REPROBUILD_REPORT"
TRACE_VARIABLE = "REPROBUILD_TRACE"
# The trace interval `reprobuild run` asks for unless told otherwise (benchmarks/trace_cost.py).
DEFAULT_TRACE_INTERVAL = 100
CUBLAS_WHEELS = ("nvidia-cublas-cu12", "nvidia-cublas-cu11", "nvidia-cublas", "nvidia-cublas-cu13")
APPLIED: dict[str, Any] = {}
ERRORS: list[str] = []  # what went wrong in this process, for the report's "error"
STARTED: dict[str, float] = {}  # "time": time.time() when install() ran
_warned: set[str] = set()


def mode() -> str:
    """The chosen mode; an unknown value means the strict one (the safe reading of a typo)."""
    value = os.environ.get(MODE_VARIABLE, "1").strip().lower()
    return value if value in MODES else "1"


def seed() -> int:
    """REPROBUILD_SEED; a value outside 0..2**32-1 is named on stderr and 0 is used."""
    text = os.environ.get(SEED_VARIABLE, "0")
    try:
        value = int(text)
    except ValueError:
        value = -1
    if 0 <= value < SEED_LIMIT:
        return value
    _warn(f"{SEED_VARIABLE}={text!r} is not a seed between 0 and 2**32 - 1; using 0")
    return 0


def _warn(text: str, *, once: str | None = None) -> None:
    """Once per text (the seed is read at start and at each import it serves), or once per
    `once` where the text varies (a failure's message)."""
    key = text if once is None else once
    if key not in _warned:
        _warned.add(key)
        print(f"reprobuild determinism hook: {text}", file=sys.stderr)


def _failed(what: str, error: BaseException) -> str:
    """Name a failure on stderr (once per `what`) and keep it for the report."""
    text = f"{what} ({type(error).__name__}: {error})"
    ERRORS.append(text)
    _warn(text, once=what)
    return text


def apply_torch(torch: ModuleType) -> dict[str, Any]:
    """Make the imported torch deterministic as the environment says; return what was set."""
    tf32 = os.environ.get(TF32_VARIABLE) == "1"
    return deterministic_torch(torch, seed=seed(), tf32=tf32, warn_only=mode() == "warn")


def deterministic_torch(
    torch: ModuleType, *, seed: int, tf32: bool, warn_only: bool
) -> dict[str, Any]:
    """The deterministic settings, which the smoke test applies too: it proves these."""
    # cuBLAS reads this when its first handle is made, which is after torch's import.
    os.environ.setdefault(CUBLAS_VARIABLE, DEFAULT_CUBLAS)
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(seed)
    return {
        "deterministic_algorithms": True,
        "warn_only": warn_only,
        "cudnn_deterministic": True,
        "cudnn_benchmark": False,
        "allow_tf32": tf32,
        "torch_seed": seed,
        CUBLAS_VARIABLE: os.environ[CUBLAS_VARIABLE],
    }


def apply_numpy(numpy: ModuleType) -> dict[str, Any]:
    chosen_seed = seed()
    numpy.random.seed(chosen_seed)
    return {"numpy_seed": chosen_seed}


SETTINGS: dict[str, Callable[[ModuleType], dict[str, Any]]] = {
    "torch": apply_torch,
    "numpy": apply_numpy,
}


class _ApplyAfterImport:
    """The module's own loader, then its settings on the finished module. (Import hooks need
    only these methods; the importlib.abc bases would cost every start their imports.)"""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self.loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        module.__loader__ = self.loader  # the module is left as if imported without the hook
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        chosen_mode = mode()
        if chosen_mode != "0":
            try:
                APPLIED.update(SETTINGS[module.__name__](module))
            except Exception as error:  # the program must still get its module, and be told
                APPLIED["error"] = f"{type(error).__name__}: {error}"
                text = f"could not make {module.__name__} deterministic ({APPLIED['error']})"
                ERRORS.append(text)
                _warn(text)
        if module.__name__ == "torch":
            try:
                _after_torch(module, chosen_mode)
            except Exception as error:  # a safety net: the hook never breaks the program
                _failed("the run report failed", error)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class _Finder:
    """Wraps the loader of `torch` and `numpy` (top level only) until each is imported. It never
    leaves sys.meta_path, so a mere lookup (`importlib.util.find_spec("torch")`, which libraries
    do to test for torch) cannot switch it off, and no other thread's lookup sees the list
    change."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if path is not None or fullname not in SETTINGS or fullname in sys.modules:
            return None
        spec = _spec_from_the_others(self, fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _ApplyAfterImport(spec.loader)  # type: ignore[assignment]
        return spec


def _spec_from_the_others(hook: _Finder, fullname: str) -> ModuleSpec | None:
    for finder in list(sys.meta_path):
        find = getattr(finder, "find_spec", None)
        if finder is hook or find is None:
            continue
        spec: ModuleSpec | None = find(fullname, None)
        if spec is not None:
            return spec
    return None


def install() -> None:
    """Called at interpreter start by the .pth file. In mode 0 the hook loads only to report."""
    if any(isinstance(finder, _Finder) for finder in sys.meta_path):
        return
    if mode() == "0" and not os.environ.get(REPORT_VARIABLE):
        return
    STARTED["time"] = time.time()
    if mode() != "0":
        chosen_seed = seed()
        random.seed(chosen_seed)
        APPLIED["random_seed"] = chosen_seed
    sys.meta_path.insert(0, _Finder())


# --- After torch's import: threads, the run report, the fingerprint key and the step trace.
# Everything below imports what it needs when it runs (torch has loaded all of it by then).


def threads_wanted() -> int | None:
    """REPROBUILD_THREADS as a positive integer; another value is named on stderr and ignored."""
    return _positive(THREADS_VARIABLE, "is not a positive number of threads; ignored")


def trace_interval() -> int | None:
    """REPROBUILD_TRACE as a positive integer; another value is named on stderr and ignored."""
    return _positive(TRACE_VARIABLE, "is not a positive step interval; no trace")


def _positive(variable: str, refusal: str) -> int | None:
    text = os.environ.get(variable, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value > 0:
        return value
    _warn(f"{variable}={text!r} {refusal}")
    return None


def _after_torch(torch: ModuleType, chosen_mode: str) -> None:
    if chosen_mode != "0":
        wanted = threads_wanted()
        if wanted is not None:
            try:
                torch.set_num_threads(wanted)
            except Exception as error:
                _failed(f"could not set {THREADS_VARIABLE}={wanted}", error)
    # Read in every mode (reading sets nothing): a run with OMP_NUM_THREADS=1 shows as 1.
    APPLIED["threads"] = torch.get_num_threads()
    APPLIED["interop_threads"] = torch.get_num_interop_threads()
    folder = os.environ.get(REPORT_VARIABLE)
    if not folder:
        if os.environ.get(TRACE_VARIABLE, "").strip():
            _warn(f"{TRACE_VARIABLE} needs {REPORT_VARIABLE}, the trace's folder; no trace")
        return
    from pathlib import Path

    directory = str(Path(folder).absolute())  # the program may change its directory
    interval = trace_interval()
    if interval is not None:
        try:
            _Trace(torch, directory, interval)
            APPLIED["trace_interval"] = interval
        except Exception as error:
            _failed("could not start the step trace", error)
    report: dict[str, Any] = {
        "argv": list(getattr(sys, "argv", [])),
        "pid": os.getpid(),
        "rank": os.environ.get("RANK"),
        "started": STARTED.get("time"),
        "mode": chosen_mode,
        "seed": APPLIED.get("torch_seed") if chosen_mode != "0" else None,
        "tf32": bool(
            _quietly(lambda: torch.backends.cuda.matmul.allow_tf32) or APPLIED.get("allow_tf32")
        ),
        "threads": APPLIED["threads"],
        "interop_threads": APPLIED["interop_threads"],
        "cublas_workspace_config": os.environ.get(CUBLAS_VARIABLE),
        "applied": dict(APPLIED),
        "error": "; ".join(ERRORS) or None,
        "key": None,
        "ended": None,
    }
    write_report(directory, report)
    import atexit

    atexit.register(_report_at_exit, torch, directory, report)


def _quietly(read: Callable[[], Any]) -> Any:
    """One reading that may fail (a broken CUDA context at exit, an odd platform): None then."""
    try:
        return read()
    except Exception:
        return None


def write_report(directory: str, report: dict[str, Any]) -> None:
    """Whole or not at all (a temporary file renamed over it); a failure is named once."""
    import json
    from pathlib import Path

    path = Path(directory, f"process-{report['pid']}.json")
    try:
        temporary = path.with_name(f"{path.name}.tmp")
        temporary.write_text(json.dumps(report, default=str), encoding="utf-8")
        temporary.replace(path)
    except Exception as error:
        _failed(f"could not write the run report to {directory}", error)


def _report_at_exit(torch: ModuleType, directory: str, report: dict[str, Any]) -> None:
    # A process forked after torch's import (a DataLoader worker) did not import it: it leaves
    # no report, whichever way it exits (multiprocessing's own end with os._exit skips this).
    if os.getpid() != report["pid"]:
        return
    try:
        key = fingerprint(torch)
    except Exception as error:
        key = None
        _failed("could not read the fingerprint key", error)
    report.update(
        applied=dict(APPLIED), error="; ".join(ERRORS) or None, key=key, ended=time.time()
    )
    write_report(directory, report)


def fingerprint(torch: ModuleType) -> dict[str, Any]:
    """What the bits depend on, as builder/smoke/key.py reads it, from torch and the standard
    library only. CUDA is described only where the program initialised it: initialising it here
    would cost seconds and device memory at every exit."""
    import platform

    cuda = bool(_quietly(torch.cuda.is_initialized))
    return {
        "device": "cuda" if cuda else "cpu",
        "gpus": _quietly(lambda: gpus(torch)) if cuda else [],
        "driver": _quietly(driver_version),
        "cuda_driver": _quietly(cuda_driver_version) if cuda else None,
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "cudnn": _quietly(lambda: cudnn_text(torch)),
        "cublas": _quietly(lambda: wheel_version(CUBLAS_WHEELS)),
        "cpu": _quietly(cpu_model),
        "cores": _quietly(cores),
        "machine": platform.machine(),
    }


def gpus(torch: ModuleType) -> list[dict[str, Any]]:
    """Every visible GPU's model, compute capability and SM count (CUDA initialised)."""
    described = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        described.append(
            {
                "name": properties.name,
                "capability": f"{properties.major}.{properties.minor}",
                "sms": properties.multi_processor_count,
            }
        )
    return described


def driver_version() -> str | None:
    """The NVIDIA kernel module version from /proc (no NVML needed inside images)."""
    import re
    from pathlib import Path

    try:
        text = Path("/proc/driver/nvidia/version").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    return match.group(1) if match else None


def cuda_driver_version() -> str | None:
    """What libcuda supports (cuDriverGetVersion), as major.minor; None without a driver."""
    import ctypes

    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    value = ctypes.c_int()
    if libcuda.cuDriverGetVersion(ctypes.byref(value)) != 0:
        return None
    return f"{value.value // 1000}.{(value.value % 1000) // 10}"


def cudnn_text(torch: ModuleType) -> str | None:
    """torch's cuDNN as major.minor.patch (90100 -> 9.1.0)."""
    cudnn = torch.backends.cudnn
    version = cudnn.version() if cudnn.is_available() else None
    if not version:
        return None
    major, rest = divmod(int(version), 10000)
    return f"{major}.{rest // 100}.{rest % 100}"


def wheel_version(names: Sequence[str]) -> str | None:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def cpu_model() -> str:
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass

    return platform.processor() or platform.machine()


def cores() -> int | None:
    """The cores this process may run on (a container's or taskset's limit, not the host's)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count()


def hash_tensor(digest: Any, tensor: Any) -> None:
    """Feed one tensor to a hashlib digest: the ASCII header `<dtype> <shape>\\n` (dtype as torch
    names it without `torch.`, e.g. `float32`, `bfloat16`, `bool`; the sizes joined by `,`,
    empty for a 0-d tensor), then its elements' bytes in row-major order, native byte order.
    A DTensor gives its local shard. Read in place, without NumPy: a contiguous CPU tensor is
    hashed where it lies, another is copied once (to the CPU, contiguous) first."""
    import ctypes

    data = tensor.detach()
    to_local = getattr(data, "to_local", None)
    if callable(to_local):
        data = to_local().detach()
    if data.device.type != "cpu":
        data = data.cpu()
    data = data.resolve_conj().resolve_neg().contiguous()
    shape = ",".join(str(size) for size in data.shape)
    digest.update(f"{str(data.dtype).split('.')[-1]} {shape}\n".encode("ascii"))
    size = data.numel() * data.element_size()
    if size:
        digest.update((ctypes.c_char * size).from_address(data.data_ptr()))


def params_hash(optimizer: Any) -> str:
    """sha256 over hash_tensor of every parameter, param_groups in order, each group's in
    order."""
    import hashlib

    digest = hashlib.sha256()
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            hash_tensor(digest, parameter)
    return digest.hexdigest()


def state_hash(optimizer: Any, torch: ModuleType) -> str:
    """sha256 over the optimizer's state as state_dict()["state"] keys it (a parameter's index
    in param_groups order), read from `optimizer.state` without state_dict() (whose hooks and
    sharded overrides a trace must not run): for each key in ascending order `param <key>\\n`,
    then for each state name in sorted order `<name>\\n` and the value's encoding."""
    import hashlib

    mappings: dict[int, int] = {}
    start = 0
    for group in optimizer.param_groups:  # the numbering of Optimizer.state_dict
        params = group["params"]
        mappings.update({id(p): i for i, p in enumerate(params, start) if id(p) not in mappings})
        start += len(params)
    packed = {
        (mappings[id(key)] if isinstance(key, torch.Tensor) else key): value
        for key, value in optimizer.state.items()
    }
    digest = hashlib.sha256()
    for key in _sorted(packed):
        digest.update(f"param {key!r}\n".encode())
        values = packed[key]
        for name in _sorted(values):
            digest.update(f"{name}\n".encode())
            _hash_value(digest, values[name], torch)
    return digest.hexdigest()


def _sorted(keys: Any) -> list[Any]:
    try:
        return sorted(keys)
    except TypeError:  # keys of mixed types
        return sorted(keys, key=repr)


def _hash_value(digest: Any, value: Any, torch: ModuleType) -> None:
    """A tensor: `tensor ` and hash_tensor; a list or tuple: `list <n>\\n` and its items; a
    dict: `dict <n>\\n` and, keys sorted, `<repr(key)>\\n` and the value; else `value
    <repr>\\n` (a float's repr is exact)."""
    if isinstance(value, torch.Tensor):
        digest.update(b"tensor ")
        hash_tensor(digest, value)
    elif isinstance(value, (list, tuple)):
        digest.update(f"list {len(value)}\n".encode())
        for item in value:
            _hash_value(digest, item, torch)
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)}\n".encode())
        for key in _sorted(value):
            digest.update(f"{key!r}\n".encode())
            _hash_value(digest, value[key], torch)
    else:
        digest.update(f"value {value!r}\n".encode())


def entry_hash(entry: dict[str, Any]) -> str:
    """sha256 of the entry's canonical JSON, its "hash" left out."""
    import hashlib
    import json

    body = {name: value for name, value in entry.items() if name != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Trace:
    """One global optimizer step post-hook (no change to the program): every `interval`-th
    step of each optimizer appends a chained entry to trace-<pid>.jsonl, flushed at once so a
    crashed run keeps its trace. The first failure switches the trace off and is named."""

    def __init__(self, torch: ModuleType, directory: str, interval: int) -> None:
        import threading
        import weakref

        self.torch = torch
        self.directory = directory
        self.interval = interval
        # optimizer -> [its index, in the order optimizers first stepped; steps it took]
        self.steps: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()
        self.seen = 0  # optimizers seen (a collected one keeps its index)
        self.lock = threading.Lock()  # optimizers stepped from several threads
        self.pid = os.getpid()
        self.previous: str | None = None
        from torch.optim.optimizer import register_optimizer_step_post_hook  # torch 2.0 and later

        self.handle: Any = register_optimizer_step_post_hook(self.step)

    def step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.handle is None:
            return
        try:
            with self.lock:
                self.record(optimizer)
        except Exception as error:
            self.handle.remove()
            self.handle = None
            _failed("the step trace stopped", error)

    def record(self, optimizer: Any) -> None:
        seen = self.steps.get(optimizer)
        if seen is None:
            seen = self.steps[optimizer] = [self.seen, 0]
            self.seen += 1
        seen[1] += 1
        if seen[1] % self.interval:
            return
        import json
        from pathlib import Path

        if os.getpid() != self.pid:  # a forked child writes its own file, its own chain
            self.pid, self.previous = os.getpid(), None
        entry: dict[str, Any] = {
            "step": seen[1],
            "optimizer": seen[0],
            "params": params_hash(optimizer),
            "state": state_hash(optimizer, self.torch),
            "previous": self.previous,
        }
        entry["hash"] = entry_hash(entry)
        path = Path(self.directory, f"trace-{self.pid}.jsonl")
        with path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
        self.previous = entry["hash"]
