"""Batches from NVIDIA DALI for class-folder trees: the torch path's files, labels and sampler, DALI's decoding.

The files come in the sampler's order (DistributedSampler: this rank's shard, reshuffled per epoch by
``set_epoch``), read ahead by a thread pool and fed to the graph (ablate/data/dali/transforms.py); labels come from the
same (path, label) list. Each epoch deserializes the graph with a seed drawn from torch's generator, which
ablate/run/train.py reseeds per epoch and rank before iterating, so a resumed run sees the same crops and augmentations.
A batch that DALI cannot decode is re-read with PIL and the error names the file (UnreadableImageError).

Each batch is copied out of DALI's buffer into a tensor torch allocated, on torch's current stream (as DALI's own
PyTorch iterator does), before DALI may reuse the buffer: zero-copy ``from_dlpack`` would leave both the buffer's
lifetime and the ordering of DALI's stream against torch's to behaviour nothing here verifies. The copy costs one
read and write of the batch in device memory (S12 at 224, batch 128: 77 MB, tens of µs on an H100, against a step
of tens of ms).

Random erasing runs here, on each finished batch on its device (``erase_batch``): DALI's erase fills with constants,
timm's with per-pixel noise. Mixup/cutmix stay in the training loop: timm's Mixup already works on the device batch.
"""
import math
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from nvidia.dali import Pipeline
from nvidia.dali.plugin.pytorch import feed_ndarray, to_torch_type
from torch.utils.data import Sampler

from ablate.data.dali.transforms import INPUT, train_graph, val_graph
from ablate.data.folder import ImageFolderSplit, decode_error
from ablate.data.transforms import erase_batch
from ablate.errors import UnreadableImageError
from ablate.specs import RunSpec

PREFETCH = 2  # batches DALI works on ahead of the training step


class DaliBatches:
    """One split's batches, ``(x, y)`` on the pipeline's device: x normalised float NCHW, y int64."""

    def __init__(self, split: ImageFolderSplit, sampler: Sampler, batch_size: int, drop_last: bool, graph: bytes,
                 device: torch.device, threads: int, reprob: float = 0.0, seeded: bool = False) -> None:
        self.samples, self.sampler, self.batch_size, self.drop_last = split.samples, sampler, batch_size, drop_last
        self.graph, self.device, self.threads, self.reprob, self.seeded = graph, device, threads, reprob, seeded

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def give_back(self, x: torch.Tensor) -> None:
        pass  # each batch is already a copy that torch allocated (see above)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = list(self.sampler)
        chunks = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)][:len(self)]
        if not chunks:
            return
        # Drawn from the generator train.py reseeds per epoch and rank, as a DataLoader draws its workers' seeds.
        seed = int(torch.randint(2**31 - 1, ())) if self.seeded else 0
        pipe = Pipeline.deserialize(
            self.graph, seed=seed, batch_size=self.batch_size, num_threads=self.threads,
            device_id=self.device.index if self.device.type == "cuda" else None,
            prefetch_queue_depth=min(PREFETCH, len(chunks)), exec_pipelined=True, exec_async=True, exec_dynamic=True)
        with ThreadPoolExecutor(self.threads) as pool:
            for x, chunk in self._run(pipe, pool, chunks):
                y = torch.tensor([self.samples[i][1] for i in chunk], pin_memory=x.is_cuda)  # non_blocking needs pinned
                y = y.to(x.device, non_blocking=True)
                yield (erase_batch(x, self.reprob) if self.reprob else x), y

    def _run(self, pipe: Pipeline, pool: Executor, chunks: list[list[int]]) -> Iterator[tuple[torch.Tensor, list[int]]]:
        """Feed the chunks' files, keep the pipeline ``prefetch_queue_depth`` batches ahead, yield its outputs."""
        encoded = zip(chunks, read_ahead(pool, [self._paths(c) for c in chunks], ahead=2 * self.threads))
        in_flight: deque[tuple[list[int], list[np.ndarray]]] = deque()  # fed, not yet returned

        def feed() -> bool:
            chunk, data = next(encoded, (None, None))
            if chunk is not None:
                pipe.feed_input(INPUT, data)  # no copy: the bytes stay in `in_flight` until their batch is out
                in_flight.append((chunk, data))
            return chunk is not None

        for _ in range(pipe.prefetch_queue_depth):
            feed()
        pipe.schedule_run()  # the first call runs `prefetch_queue_depth` iterations
        while in_flight:
            try:
                (out,) = pipe.share_outputs()
            except RuntimeError as err:
                unreadable = self._unreadable([chunk for chunk, _ in in_flight])
                if unreadable:
                    raise unreadable from err
                raise
            x = self._copy(out.as_tensor())
            pipe.release_outputs()
            chunk, _ = in_flight.popleft()
            if feed():
                pipe.schedule_run()
            yield x, chunk

    def _copy(self, out: object) -> torch.Tensor:
        """DALI's output in torch's own memory; on CUDA the copy is ordered on torch's current stream."""
        x = torch.empty(out.shape(), dtype=to_torch_type[out.dtype], device=self.device)
        return feed_ndarray(out, x, torch.cuda.current_stream(self.device) if x.is_cuda else None)

    def _paths(self, chunk: Sequence[int]) -> list[str]:
        return [self.samples[i][0] for i in chunk]

    def _unreadable(self, chunks: Sequence[list[int]]) -> UnreadableImageError | None:
        """The files PIL cannot decode among the batches in flight: DALI's error does not name them."""
        errors = [e for chunk in chunks for e in map(decode_error, self._paths(chunk)) if e]
        return UnreadableImageError(f"cannot read image {'; '.join(errors)}") if errors else None


def read_ahead(pool: Executor, batches: list[list[str]], ahead: int) -> Iterator[list[np.ndarray]]:
    """Each batch's file bytes, in order, with up to ``ahead`` batches being read at a time."""
    futures = deque()
    for paths in batches:
        futures.append(pool.submit(_read, paths))
        if len(futures) > ahead:
            yield futures.popleft().result()
    while futures:
        yield futures.popleft().result()


def _read(paths: list[str]) -> list[np.ndarray]:
    return [np.frombuffer(Path(p).read_bytes(), dtype=np.uint8) for p in paths]


def dali_loaders(cfg: RunSpec, specs: Sequence[tuple], device: torch.device) -> tuple[DaliBatches, DaliBatches]:
    """Train and val batches for ``specs`` (split, sampler, batch size, drop_last) as build_loaders sets them up."""
    device_id = device.index if device.type == "cuda" else None
    threads = max(1, cfg.train.num_workers)  # DALI's CPU threads take the DataLoader's worker budget
    (train, *train_spec), (val, *val_spec) = specs
    return (DaliBatches(train, *train_spec, train_graph(cfg, device_id), device, threads, cfg.train.reprob, True),
            DaliBatches(val, *val_spec, val_graph(cfg, device_id), device, threads))
