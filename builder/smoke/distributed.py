"""One rank of a `--ranks N` process group: join the group, fingerprint its collectives, answer.

Every rank applies the settings first (deterministic, or the canary's defaults), then joins the
group through rank 0's TCPStore on the loopback address, with NCCL and one GPU per rank, or gloo
on the CPU. It fingerprints:

- `distributed_all_reduce`: the sum over the ranks of a seeded float32 tensor per rank whose
  values span 48 binades, so that the bits depend on the order the sum meets its terms;
- `distributed_ddp_step`: the parameters after a few DistributedDataParallel steps of a small
  model, each rank training on its own seeded shard. Its forward sums tokens into bags with
  `index_add_` (atomic adds on a GPU), which makes it the group's canary witness.

Every rank prints its fingerprints (the runner checks that the ranks agree), the settings it ran
with, and the group's part of the key. A rank that fails prints its error and leaves at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import key, settings
from .child import CPU_SCALE, GPU_SCALE, SEED
from .fingerprint import fingerprint
from .group import COLLECTIVE_TIMEOUT_S, LOOPBACK
from .runner import FAIL, PASS

# With --self-test, the rank this names fails before it joins: its peers would wait for it up
# to the timeout, so the runner must stop them and report its message.
FAIL_RANK_VARIABLE = "REPROBUILD_SMOKE_FAIL_RANK"
VOCABULARY, WIDTH, BAGS, CLASSES, DDP_STEPS = 64, 32, 64, 10, 4


def all_reduce_input(rank: int, scale: int) -> torch.Tensor:
    """The rank's term of the sum, made on the CPU from its own seed."""
    generator = torch.Generator().manual_seed(SEED + 1 + rank)
    values = torch.randn(1 << (16 + scale), generator=generator)
    binades = torch.randint(-24, 25, values.shape, generator=generator).to(torch.float32)
    return values * torch.exp2(binades)


def all_reduce(device: torch.device, rank: int, scale: int) -> list[torch.Tensor]:
    tensor = all_reduce_input(rank, scale).to(device)
    dist.all_reduce(tensor)
    return [tensor]


class _Bags(nn.Module):
    """Token embeddings summed into bags (`index_add_`), then a linear classifier per bag."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, WIDTH)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, tokens: torch.Tensor, bags: torch.Tensor) -> torch.Tensor:
        pooled = torch.zeros(BAGS, WIDTH, device=tokens.device)
        logits: torch.Tensor = self.head(pooled.index_add_(0, bags, self.embedding(tokens)))
        return logits


def ddp_steps(device: torch.device, rank: int, scale: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED + 100 + rank)  # each rank its own shard
    tokens = torch.randint(0, VOCABULARY, (DDP_STEPS, 1 << (10 + scale)), generator=generator)
    bags = torch.randint(0, BAGS, tokens.shape, generator=generator)
    labels = torch.randint(0, CLASSES, (DDP_STEPS, BAGS), generator=generator)
    torch.manual_seed(SEED)  # one initial model in every rank (DDP broadcasts rank 0's anyway)
    device_ids = [device.index] if device.type == "cuda" else None
    model = DistributedDataParallel(_Bags().to(device), device_ids=device_ids)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(DDP_STEPS):
        optimiser.zero_grad(set_to_none=True)
        logits = model(tokens[step].to(device), bags[step].to(device))
        F.cross_entropy(logits, labels[step].to(device)).backward()
        optimiser.step()
    return [parameter.detach() for parameter in model.parameters()]


@dataclass(frozen=True)
class Collective:
    name: str
    witness: bool  # may vary without deterministic settings on GPUs: the canary runs it
    run: Callable[[torch.device, int, int], list[torch.Tensor]]  # (device, rank, scale)


SUITE = (
    Collective("distributed_all_reduce", False, all_reduce),
    Collective("distributed_ddp_step", True, ddp_steps),
)


@dataclass(frozen=True)
class Rank:
    mode: str  # deterministic or canary
    rank: int
    world_size: int
    port: int  # rank 0's store
    cpu: bool
    self_test: bool

    @property
    def device(self) -> torch.device:
        return torch.device("cpu") if self.cpu else torch.device("cuda", self.rank)


def _join(rank: Rank) -> None:
    timeout = timedelta(seconds=COLLECTIVE_TIMEOUT_S)
    if rank.self_test and os.environ.get(FAIL_RANK_VARIABLE) == str(rank.rank):
        raise RuntimeError(
            f"injected failure in rank {rank.rank} ({FAIL_RANK_VARIABLE}={rank.rank} with "
            "--self-test)"
        )
    if rank.device.type == "cuda":
        torch.cuda.set_device(rank.device)
    # tcp://: rank 0 hosts a TCPStore there; the timeout bounds the store and each collective.
    dist.init_process_group(
        key.backend(rank.device),
        init_method=f"tcp://{LOOPBACK}:{rank.port}",
        rank=rank.rank,
        world_size=rank.world_size,
        timeout=timeout,
    )


def _leave(rank: Rank) -> None:
    # Every rank passes the barrier before any leaves: rank 0's store outlives its peers' use.
    device_ids = [rank.rank] if rank.device.type == "cuda" else None
    dist.barrier(device_ids=device_ids)
    dist.destroy_process_group()


def run(rank: Rank) -> dict[str, Any]:
    """The rank's answer: fingerprints (deterministic) or two runs of each witness (canary)."""
    settings.apply(deterministic=rank.mode == "deterministic", seed=SEED)
    _join(rank)
    scale = CPU_SCALE if rank.cpu else GPU_SCALE
    prints: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    canary = rank.mode == "canary"
    for collective in SUITE:
        if canary and not collective.witness:
            continue
        started = time.perf_counter()
        runs = [
            fingerprint(collective.run(rank.device, rank.rank, scale)) for _ in range(1 + canary)
        ]
        prints[collective.name] = runs if canary else runs[0]
        seconds[collective.name] = round(time.perf_counter() - started, 3)
    _leave(rank)
    return {
        "rank": rank.rank,
        "fingerprints": prints,
        "seconds": seconds,
        "settings": settings.record(),
        "distributed": key.distributed(rank.device, rank.world_size),
    }


def main(rank: Rank) -> int:
    try:
        answer = run(rank)
    except Exception as error:  # the group is broken: say why, and leave without waiting
        first = str(error).splitlines()[0] if str(error) else ""
        message = f"{type(error).__name__}: {first}"
        print(json.dumps({"rank": rank.rank, "error": message, "at": time.time()}), flush=True)
        sys.stderr.flush()
        # An orderly exit would wait for the group's threads, which wait for the peers.
        os._exit(FAIL)
    print(json.dumps(answer), flush=True)
    return PASS
