"""One fresh process: apply the settings, check preconditions, run the suite, print JSON."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from functools import partial
from typing import Any

import torch

from . import kernels, key, preconditions, settings, training
from .fingerprint import fingerprint
from .runner import EXPECT_VARIABLE

GPU_SCALE, CPU_SCALE = 6, 0
SEED = 0
# torch's message for an op it cannot run under use_deterministic_algorithms(True): such a
# kernel is skipped and named in the report, since this torch offers no deterministic version.
NO_DETERMINISTIC = "does not have a deterministic implementation"


def _visible(device: torch.device) -> bool:
    return device.type == "cpu" or torch.cuda.is_available()


def deterministic_run(device: torch.device, self_test: bool, ranks: int = 1) -> dict[str, Any]:
    settings.apply(deterministic=True, seed=SEED)
    expected = json.loads(os.environ.get(EXPECT_VARIABLE) or "{}")
    checks = preconditions.gpu_checks(expected.get("min_driver")) if device.type == "cuda" else []
    checks += preconditions.version_checks(expected)
    checks += preconditions.rank_checks(device, ranks) if ranks > 1 else []
    found = key.build(device) if _visible(device) else key.unseen(device)
    if ranks > 1:
        found["distributed"] = key.distributed(device, ranks)
    answer: dict[str, Any] = {
        "key": found,
        "preconditions": [asdict(check) for check in checks],
        "fingerprints": {},
        "errors": {},
        "skipped": {},
        "seconds": {},
    }
    if not all(check.ok for check in checks):
        return answer
    scale = GPU_SCALE if device.type == "cuda" else CPU_SCALE
    suite = [(k.name, partial(k.run, device, scale)) for k in kernels.for_device(device)]
    suite.append(("training_sgd_cnn", partial(training.train, device, SEED)))
    for name, run in suite:
        started = time.perf_counter()
        try:
            answer["fingerprints"][name] = fingerprint(run())
        except Exception as error:  # a kernel's failure is reported, never fatal to the suite
            message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            unsupported = isinstance(error, ImportError) or NO_DETERMINISTIC in str(error)
            answer["skipped" if unsupported else "errors"][name] = message
        answer["seconds"][name] = round(time.perf_counter() - started, 3)
    if self_test:
        # A kernel whose output depends on the process: proves the comparison can fail.
        answer["fingerprints"]["self_test_process_entropy"] = fingerprint(
            [torch.tensor(list(os.urandom(16)), dtype=torch.uint8)]
        )
    return answer


def canary_run(device: torch.device) -> dict[str, Any]:
    """Witnesses twice each, without deterministic settings: some must differ on a GPU."""
    settings.apply(deterministic=False, seed=SEED)
    scale = GPU_SCALE if device.type == "cuda" else CPU_SCALE
    prints = {}
    for kernel in kernels.for_device(device):
        if not kernel.witness:
            continue
        try:
            prints[kernel.name] = [fingerprint(kernel.run(device, scale)) for _ in range(2)]
        except Exception:  # unavailable on this device or torch: not a witness here
            continue
    return {"fingerprints": prints}


def main(role: str, cpu: bool, self_test: bool, ranks: int = 1) -> None:
    """ranks: the size of the process groups the runner starts beside this process; the key and
    the preconditions (`deterministic` role) cover them."""
    # GPU mode without a GPU still takes the CUDA device: its precondition check says so.
    device = torch.device("cpu" if cpu else "cuda")
    answer = canary_run(device) if role == "canary" else deterministic_run(device, self_test, ranks)
    print(json.dumps(answer), flush=True)
