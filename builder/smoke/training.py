"""A tiny training run: SGD steps of a small CNN with dropout, fed by a DataLoader whose worker
processes and shuffling are seeded. Its final weights are fingerprinted like any kernel output."""

from __future__ import annotations

import random

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

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
        nn.AdaptiveAvgPool2d(4),
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
        multiprocessing_context="spawn",
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
