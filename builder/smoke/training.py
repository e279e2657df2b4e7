"""A tiny training run: SGD steps of a small CNN with dropout, fed by a DataLoader whose worker
processes and shuffling are seeded. Its final weights are fingerprinted like any kernel output."""

from __future__ import annotations

import multiprocessing
import random

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

# Workers touch only CPU tensors, so forking after CUDA is up is safe, as in most Linux training;
# spawn would import torch once more per worker (seconds each).
_START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
STEPS = 8
BATCH = 16
WORKERS = 2


def _seed_worker(worker_id: int) -> None:
    # Workers are reseeded by the DataLoader from its generator; Python's RNG follows it.
    random.seed(torch.initial_seed() % 2**32 + worker_id)


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.Conv2d(8, 8, 3, padding=1),
        # AdaptiveAvgPool2d has no deterministic CUDA backward (torch raises under
        # use_deterministic_algorithms); a fixed 4x4 average over 16x16 inputs has one.
        nn.AvgPool2d(4),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )


def train(device: torch.device, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(STEPS * BATCH, 3, 16, 16, generator=generator)
    labels = torch.randint(0, 10, (STEPS * BATCH,), generator=generator)
    loader = DataLoader(
        TensorDataset(images, labels),
        batch_size=BATCH,
        shuffle=True,
        num_workers=WORKERS,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed),
        multiprocessing_context=_START_METHOD,
        persistent_workers=False,
    )
    torch.manual_seed(seed)  # model initialisation and dropout masks
    model = _model().to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for batch, target in loader:
        optimiser.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(batch.to(device)), target.to(device))
        loss.backward()
        optimiser.step()
    return [parameter.detach() for parameter in model.parameters()]
