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
"""

from __future__ import annotations

import os
import random
import sys

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
APPLIED: dict[str, Any] = {}
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


def _warn(text: str) -> None:
    """Once per text: the seed is read at start and at each import it serves."""
    if text not in _warned:
        _warned.add(text)
        print(f"reprobuild determinism hook: {text}", file=sys.stderr)


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
        if mode() == "0":
            return
        try:
            APPLIED.update(SETTINGS[module.__name__](module))
        except Exception as error:  # the program must still get its module, and be told
            APPLIED["error"] = f"{type(error).__name__}: {error}"
            _warn(f"could not make {module.__name__} deterministic ({APPLIED['error']})")

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
    """Called at interpreter start by the .pth file."""
    if mode() == "0" or any(isinstance(finder, _Finder) for finder in sys.meta_path):
        return
    chosen_seed = seed()
    random.seed(chosen_seed)
    APPLIED["random_seed"] = chosen_seed
    sys.meta_path.insert(0, _Finder())
