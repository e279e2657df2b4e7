"""The example's training job: what `reprobuild run` carries (scripts/demo runs it and replays it;
tests/integration/test_replay.py and benchmarks/run_job.py use it too).

It reads its dataset from /data/train (a file of float32 values the test generates), feeds it
through a DataLoader with two worker processes whose batches are 80 MB each, more than the
engine's default 64 MB /dev/shm holds, trains a small model with SGD and momentum, and writes a
checkpoint and a metrics file to $REPROBUILD_OUTPUTS. TRAIN_LR (a variable it reads) sets the
learning rate; PERTURB_STEP=N nudges one weight after optimizer step N, as a nondeterministic
kernel would, so that a replay can show where two runs part.

Started by torchrun with more than one process (`reprobuild export slurm`: one per node, or per
GPU), it trains data-parallel: each rank a seeded shard of the rows, gradients averaged by
DistributedDataParallel (gloo on the CPU, NCCL on GPUs), rank 0 writing the outputs.
FAIL_RANK=N makes rank N fail after its first step, as a broken node would.
"""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

ITEM = 1024 * 1024  # float32 values per item: 4 MB
BATCH = 20  # 80 MB per batch
FEATURES = 64


class Expanded(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Each item is a slice of the dataset file tiled to 4 MB, and its target."""

    def __init__(self, path: Path) -> None:
        raw = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.float32)
        self.rows = raw.view(-1, FEATURES)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.rows[index]
        return row.repeat(ITEM // FEATURES), row[:4].sum().reshape(1)


def main() -> int:
    outputs = Path(os.environ["REPROBUILD_OUTPUTS"])
    learning_rate = float(os.environ.get("TRAIN_LR", "0.01"))
    perturb = int(os.environ.get("PERTURB_STEP", "0"))
    failing = int(os.environ.get("FAIL_RANK", "-1"))
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    data = Expanded(Path("/data/train/rows.f32"))
    sampler = DistributedSampler(data, shuffle=True, seed=0, drop_last=True) if distributed else None
    loader = DataLoader(
        data,
        batch_size=BATCH,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=2,
        drop_last=True,
    )
    first = nn.Linear(FEATURES, 32)
    model = nn.Sequential(first, nn.Tanh(), nn.Linear(32, 1))
    # DDP starts every rank from rank 0's weights and averages the gradients of each step.
    trained = DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9)
    losses = []
    step = 0
    for epoch in range(int(os.environ.get("TRAIN_EPOCHS", "2"))):
        if sampler is not None:
            sampler.set_epoch(epoch)
        for inputs, targets in loader:
            features = inputs.view(BATCH, -1, FEATURES).mean(dim=1)
            loss = nn.functional.mse_loss(trained(features), targets)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            step += 1
            if step == perturb:
                with torch.no_grad():
                    first.weight[0, 0] += 1e-3
            if rank == failing:
                raise RuntimeError(f"rank {rank} fails on purpose (FAIL_RANK={failing})")
            losses.append(loss.item())
            print(f"step {step} loss {loss.item():.6f}", flush=True)
    if rank == 0:
        torch.save(model.state_dict(), outputs / "model.pt")
        metrics = {"steps": step, "losses": losses, "lr": learning_rate}
        (outputs / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    if distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
