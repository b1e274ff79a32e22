"""Batches for the training loop: a DataLoader or DALI for image files, on-device gathering for in-memory tensors."""
import math
from collections.abc import Iterable, Iterator, Sized
from typing import Protocol

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, DistributedSampler, Sampler, TensorDataset

from ablate.config.checks import accumulation_steps, dali_installed
from ablate.data import DataBundle
from ablate.data.folder import ImageFolderSplit
from ablate.run.distributed import Dist
from ablate.errors import ConfigError


class Batches(Iterable[tuple[torch.Tensor, torch.Tensor]], Sized, Protocol):
    sampler: Sampler


class TensorBatches:
    """An in-memory TensorDataset gathered a batch at a time, on the device when it fits.

    No per-image collate and no workers: on a GPU this is what keeps small data sets from being
    loader-bound (airbench's trick). Same sampler and batch boundaries as a DataLoader would use.
    A set larger than a quarter of the GPU's free memory stays in host memory and each gathered
    batch is copied over (e.g. Fashion-MNIST at 224×224 would take 42 GB).
    """

    def __init__(self, data: TensorDataset, sampler: Sampler, batch_size: int, drop_last: bool,
                 device: torch.device) -> None:
        size = sum(t.numel() * t.element_size() for t in data.tensors)
        fits = device.type != "cuda" or size < torch.cuda.mem_get_info(device)[0] / 4
        self.home = device if fits else torch.device("cpu")
        self.tensors = [t.to(self.home) for t in data.tensors]
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.as_tensor(list(self.sampler), device=self.home)
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            x, y = (t[index] for t in self.tensors)
            yield x, y  # the loop moves them to the device (a no-op when they live there)


def build_loaders(cfg: DictConfig, data: DataBundle, d: Dist, device: torch.device) -> tuple[Batches, Batches]:
    """Train batches (shuffled by a seeded sampler, last partial batch dropped) and this rank's val batches."""
    t = cfg.train
    accum = accumulation_steps(t, d.world_size)
    if len(data.train) < t.batch_size * d.world_size * accum:
        raise ConfigError(f"train.batch_size={t.batch_size} × {d.world_size} processes × {accum} accumulation "
                          f"steps exceeds the {len(data.train)} training images")
    # The sampler's seed and set_epoch fix each epoch's order, so a resumed run sees the same batches.
    train_sampler = DistributedSampler(data.train, num_replicas=d.world_size, rank=d.rank, shuffle=True,
                                       seed=cfg.seed)
    # Each rank evaluates a disjoint slice, so no image is counted twice.
    val_sampler = range(d.rank, len(data.val), d.world_size)
    specs = [(data.train, train_sampler, t.batch_size, True), (data.val, val_sampler, t.batch_size * 2, False)]
    loader = pick_loader(cfg, data, device)
    data.info["loader"] = loader  # data.info is the run record's data_info: auto resolves per machine
    if loader == "tensors":
        return tuple(TensorBatches(ds, sampler, bs, drop, device) for ds, sampler, bs, drop in specs)
    if loader == "dali":
        from ablate.data.dali.batches import dali_loaders  # DALI loads only when asked for
        return dali_loaders(cfg, specs, device)
    common = {"num_workers": t.num_workers, "pin_memory": device.type == "cuda",
              "persistent_workers": t.num_workers > 0}
    return tuple(DataLoader(ds, batch_size=bs, sampler=sampler, drop_last=drop, **common)
                 for ds, sampler, bs, drop in specs)


def pick_loader(cfg: DictConfig, data: DataBundle, device: torch.device) -> str:
    """``tensors`` for in-memory sets; for image folders ``data.loader``, with auto → dali on CUDA when installed."""
    asked = cfg.data.get("loader", "torch")
    folders = isinstance(data.train, ImageFolderSplit) and isinstance(data.val, ImageFolderSplit)
    if asked == "dali" and not folders:
        raise ConfigError(f"data.loader=dali reads class-folder trees (data=folder, imagenet, imagenet100); "
                          f"data={cfg.data.name} is not one")
    if isinstance(data.train, TensorDataset) and isinstance(data.val, TensorDataset):
        return "tensors"
    if asked == "auto":
        return "dali" if folders and device.type == "cuda" and dali_installed() else "torch"
    return asked
