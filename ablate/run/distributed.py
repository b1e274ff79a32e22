"""Data-parallel runs: the process group from torchrun's environment (which ``slurm_tasks`` gives SLURM's tasks)."""
import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ablate.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group torchrun or SLURM describes (NCCL on CUDA, gloo on CPU); one process needs none."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str) -> torch.device:
    """``auto`` takes this process's GPU when there is one, else the CPU.

    A process's GPU is the one of its local rank, or the only one it sees (SLURM's ``--gpus-per-task=1``).
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.device_count() == 1:
        local_rank = 0
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    elif name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={name!r} but no CUDA device is visible; use auto or cpu")
        torch.cuda.set_device(device)
    return device


def device_memory(device: torch.device, amp: bool) -> tuple[int, int]:
    """The device's memory in bytes, and the bytes of one element of the MLP's hidden maps in a training step there
    (min_train_bytes): bf16 autocast halves those on CUDA when ``amp``, the residual stream stays fp32."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory, 2 if amp else 4
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), 4


def broadcast(value: object, d: Dist) -> object:
    """Rank 0's value on every rank."""
    if d.world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(values: list[float], d: Dist, device: torch.device) -> list[float]:
    if d.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_strided(values: torch.Tensor, d: Dist, total: int) -> torch.Tensor:
    """Every rank's 1-D ``values`` for ``range(rank, total, world_size)``, put back in index order on each rank."""
    if d.world_size == 1:
        return values
    padded = values.new_zeros(math.ceil(total / d.world_size))
    padded[:len(values)] = values
    parts = [torch.empty_like(padded) for _ in range(d.world_size)]
    dist.all_gather(parts, padded)
    # Rank r's j-th value is index r + j * world_size: reading the stacked parts row by row interleaves them.
    return torch.stack(parts, 1).flatten()[:total]
