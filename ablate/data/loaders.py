"""Batches for the training loop: a DataLoader or DALI for image files; on-device gathering (and the batched recipe)
for in-memory tensors and pixel stores."""
import math
import os
import random
import signal
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, TensorDataset

from ablate.data import DataBundle
from ablate.data.dali import dali_installed
from ablate.data.folder import ImageFolderSplit
from ablate.data.store import PixelSplit, to_device
from ablate.errors import ConfigError
from ablate.specs import RunSpec


class Batches(Iterable[tuple[torch.Tensor, torch.Tensor]], Sized, Protocol):
    sampler: Sampler

    def give_back(self, x: torch.Tensor) -> None:
        """The consumer is done with ``x``, a batch's input: a later batch may be made in its memory. Loaders that
        cannot reuse it ignore it."""


class FileBatches(DataLoader):
    """torch's DataLoader as ``Batches``: its worker processes send each batch in fresh memory, so nothing is given
    back."""

    def give_back(self, x: torch.Tensor) -> None:
        pass


class SeededSampler(Sampler):
    """A DistributedSampler's indices, each with the seed its sample's augmentation draws from: (seed, epoch, rank)
    and the index, so that what a sample draws depends neither on the worker that makes it nor on that worker's past.
    Persistent DataLoader workers carry their random state from epoch to epoch, which a run resumed there never had."""

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        s = self.sampler
        seed = epoch_seed(s.seed, s.epoch, s.rank)
        return ((i, batch_seed(seed, i)) for i in s)


class SeededSamples(Dataset):
    """``data`` indexed by ``SeededSampler``'s (index, seed): Python's, numpy's and torch's generators are seeded
    before the sample is made (timm's transforms draw from all three)."""

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> object:
        index, seed = key
        seed_all(seed)
        return self.data[index]


class TensorBatches:
    """In-memory tensors gathered a batch at a time, on the device when they fit; ``transform`` makes each batch.

    No per-image collate: on a GPU this is what keeps data from being loader-bound (airbench's trick). Same sampler
    and batch boundaries as a DataLoader would use. Tensors larger than half the GPU's free memory stay in host memory
    (a store: memory-mapped); each batch is gathered into pinned memory and copied over on a side stream while the one
    before is used. On the CPU, ``workers`` threads make whole batches side by side, with one torch thread each (torch's
    thread count is per thread): a DataLoader's processes would send every float batch through shared memory, which
    costs more than making it.

    ``transform(batch, index, generator) → (x, y)`` (a PixelSplit's: the paper's recipe on uint8 pixels, ablate/data/
    augment.py) draws from a generator seeded by the sampler's (seed, epoch, rank) and the batch's number, so a resumed
    run sees the same batches, each rank its own, and the batches do not depend on the number of workers; without one
    the batch is the tensors as they are (digits, Fashion-MNIST).
    """

    def __init__(self, data: TensorDataset | PixelSplit, sampler: Sampler, batch_size: int, drop_last: bool,
                 device: torch.device, workers: int = 0) -> None:
        size = sum(t.numel() * t.element_size() for t in data.tensors)
        fits = device.type != "cuda" or size < torch.cuda.mem_get_info(device)[0] / 2
        self.home, self.device = (device if fits else torch.device("cpu")), device
        self.tensors = [to_device(t, self.home) for t in data.tensors]
        self.transform = getattr(data, "transform", None)
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last
        # At most a thread per core: they compute, never wait on files, so more would only take turns.
        self.workers = min(workers, len(os.sched_getaffinity(0))) if self.transform and device.type == "cpu" else 0

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def give_back(self, x: torch.Tensor) -> None:
        """The consumer is done with ``x``, a batch's input: a later batch may be made in its memory (the recipe's
        ``give_back``). A consumer that never calls it gets fresh memory for every batch."""
        if hasattr(self.transform, "give_back"):
            self.transform.give_back(x)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        s = self.sampler
        epoch = _Epoch(self, torch.as_tensor(list(s)),
                       epoch_seed(getattr(s, "seed", 0), getattr(s, "epoch", 0), getattr(s, "rank", 0)))
        if self.workers:
            yield from _in_threads(epoch, self.workers)
        elif self.transform and self.home.type == "cpu":
            yield from (epoch[i] for i in range(len(epoch)))
        elif self.transform:
            yield from (epoch.make(i, gathered) for i, gathered in enumerate(self._gathered(epoch)))
        else:
            yield from (tuple(batch) for _, batch in self._gathered(epoch))

    def _gathered(self, epoch: "_Epoch") -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
        """Each batch's index (CPU) and tensors on the device; from pinned host memory, one batch ahead on a side
        stream."""
        indices = epoch.indices
        if self.home == self.device:
            # One copy of the order per epoch: a copy per batch from pageable memory would wait for the GPU.
            at_home = epoch.order.to(self.home)
            for i, index in enumerate(indices):
                yield index, [t[at_home[i * self.batch_size:(i + 1) * self.batch_size]] for t in self.tensors]
            return
        stream = torch.cuda.Stream(self.device)

        def copy(index: torch.Tensor) -> list[torch.Tensor]:
            host = [t[index].pin_memory() for t in self.tensors]
            with torch.cuda.stream(stream):
                return [h.to(self.device, non_blocking=True) for h in host]

        ahead = copy(indices[0]) if indices else []
        for i in range(len(indices)):
            torch.cuda.current_stream(self.device).wait_stream(stream)
            batch = ahead
            for t in batch:
                t.record_stream(torch.cuda.current_stream(self.device))
            if i + 1 < len(indices):
                ahead = copy(indices[i + 1])
            yield indices[i], batch


class _Epoch:
    """One epoch of ``TensorBatches``: batch ``i``, gathered and transformed, by a worker thread or in line."""

    def __init__(self, batches: TensorBatches, order: torch.Tensor, seed: int) -> None:
        size = batches.batch_size
        self.order, self.indices = order, [order[i * size:(i + 1) * size] for i in range(len(batches))]
        self.tensors, self.transform, self.seed = batches.tensors, batches.transform, seed
        self.scratch = threading.local()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``i`` made on the CPU, its pixels gathered into this thread's buffer: fresh pages for every batch
        (33 MB at 224 px) cost more than the gather itself, and the transform only reads them (``PixelSplit``)."""
        index = self.indices[i]
        pixels, *rest = self.tensors
        if not hasattr(self.scratch, "pixels"):
            self.scratch.pixels = pixels.new_empty((len(self.indices[0]), *pixels.shape[1:]))
        gathered = torch.index_select(pixels, 0, index, out=self.scratch.pixels[:len(index)])
        return self.make(i, (index, [gathered, *(t[index] for t in rest)]))

    def make(self, i: int, gathered: tuple[torch.Tensor, list[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        index, batch = gathered
        return self.transform(batch, index, torch.Generator().manual_seed(batch_seed(self.seed, i)))


def _in_threads(epoch: _Epoch, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``epoch``'s batches in order, made by ``workers`` threads up to two batches each ahead of the consumer."""
    pool = ThreadPoolExecutor(workers, "batches", initializer=torch.set_num_threads, initargs=(1,))
    ahead: deque[Future] = deque()
    try:
        for i in range(len(epoch)):
            ahead.append(pool.submit(epoch.__getitem__, i))
            if len(ahead) > 2 * workers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
    finally:  # also when the consumer stops early: the batches in flight finish, the rest never start
        pool.shutdown(cancel_futures=True)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """One seed per (seed, epoch, rank): what a resumed run and each torchrun rank draw their randomness from."""
    return seed * 100_003 + epoch * 1_009 + rank


def seed_all(value: int) -> None:
    """Seed Python's, numpy's and torch's global generators from one value (timm's transforms, drop path and mixup
    draw from all three)."""
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def batch_seed(epoch: int, i: int) -> int:
    """Batch ``i``'s seed in the epoch seeded ``epoch`` (``epoch_seed``): any worker makes the same batch."""
    return (epoch * 1_000_003 + i) % 2**63


def build_loaders(cfg: RunSpec, data: DataBundle, device: torch.device, *, rank: int = 0,
                  world_size: int = 1) -> tuple[Batches, Batches]:
    """Train batches (shuffled by a seeded sampler, last partial batch dropped) and val batches, of process
    ``rank`` of ``world_size``."""
    t = cfg.train
    accum = t.accumulation_steps(world_size)
    if len(data.train) < t.batch_size * world_size * accum:
        raise ConfigError(f"train.batch_size={t.batch_size} × {world_size} processes × {accum} accumulation "
                          f"steps exceeds the {len(data.train)} training images")
    # The sampler's seed and set_epoch fix each epoch's order, so a resumed run sees the same batches.
    train_sampler = DistributedSampler(data.train, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed)
    # Each rank evaluates a disjoint slice, so no image is counted twice.
    val_sampler = range(rank, len(data.val), world_size)
    specs = [(data.train, train_sampler, t.batch_size, True), (data.val, val_sampler, t.batch_size * 2, False)]
    loader = pick_loader(cfg, data, device)
    data.info["loader"] = loader  # data.info is the run record's data_info: auto resolves per machine
    if loader in ("tensors", "batched"):
        if loader == "batched" and not isinstance(data.train, PixelSplit):
            specs = [(split, *spec[1:]) for split, spec in zip(data.pixels(cfg), specs)]
        return tuple(TensorBatches(ds, sampler, bs, drop, device, t.num_workers) for ds, sampler, bs, drop in specs)
    if loader == "dali":
        from ablate.data.dali.batches import dali_loaders  # DALI loads only when asked for
        return dali_loaders(cfg, specs, device)
    # Each loader has its own generator for its workers' base seed: drawn from torch's global one, it would shift the
    # draws of drop path in the epoch where a resumed run first iterates (persistent workers start only once).
    common = {"num_workers": t.num_workers, "pin_memory": device.type == "cuda",
              "persistent_workers": t.num_workers > 0, "worker_init_fn": quiet_on_interrupt,
              "generator": torch.Generator().manual_seed(cfg.seed)}
    return (FileBatches(SeededSamples(data.train), batch_size=t.batch_size, sampler=SeededSampler(train_sampler),
                        drop_last=True, **common),
            FileBatches(data.val, batch_size=t.batch_size * 2, sampler=val_sampler, **common))


def quiet_on_interrupt(worker_id: int) -> None:
    """In a DataLoader worker: SIGINT and SIGTERM end it quietly (exit 0).

    A signal to the whole process group (SLURM's, or Ctrl-C in a terminal) reaches the workers too. Killed by it,
    they would make the main process raise ``DataLoader worker ... is killed by signal`` while it handles the same
    signal as an interruption, and the run would be recorded as failed.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_quietly)


def _exit_quietly(signum: int, frame: object) -> None:
    os._exit(0)


def pick_loader(cfg: RunSpec, data: DataBundle, device: torch.device) -> str:
    """The loader ``data.loader`` names, with ``auto`` resolved to the fastest one available.

    A pixel store: ``batched``. In-memory sets: ``batched`` when the recipe augments images (train.randaug or
    train.reprob), else ``tensors`` (gathered as they are). Class-folder trees: ``dali`` on CUDA when installed,
    else ``torch``.
    """
    asked = cfg.data.loader
    where = f"data.loader={asked}"
    store = isinstance(data.train, PixelSplit)
    folders = isinstance(data.train, ImageFolderSplit) and isinstance(data.val, ImageFolderSplit)
    in_memory = isinstance(data.train, TensorDataset)
    if store:
        if asked not in ("auto", "batched"):
            raise ConfigError(f"{where}: data.root={cfg.data.root} is a pixel store, read by data.loader=batched "
                              "(or auto); point data.root at a class-folder tree for the other loaders")
        return "batched"
    if asked == "dali" and not folders:
        raise ConfigError(f"data.loader=dali reads class-folder trees (data=folder, imagenet, imagenet100); "
                          f"data={cfg.data.name} is not one")
    if asked == "batched" and data.pixels is None:
        raise ConfigError(f"{where} reads a pixel store or an in-memory set; make a store of data.root with "
                          f"python -m ablate.data.prepare --format pixels --src {cfg.data.root} --out DIR")
    if in_memory:
        augments = data.pixels is not None and (bool(cfg.train.randaug) or cfg.train.reprob > 0)
        return "batched" if asked == "batched" or (asked == "auto" and augments) else "tensors"
    if asked == "auto":
        return "dali" if folders and device.type == "cuda" and dali_installed() else "torch"
    return asked
