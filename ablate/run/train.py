"""Train one variant. Read top to bottom: ``run`` → ``setup`` → ``train_one_epoch`` → ``evaluate`` → ``fit``.

``run`` never loses or mixes work already written: it locks the run directory, refuses one that
holds another config's run, skips a completed record, and resumes an unfinished run from its
checkpoint. A non-finite loss ends the run as ``diverged``; Ctrl-C and SIGTERM as ``interrupted``
(the last epoch's checkpoint is kept); any other error as ``failed`` with error.txt. The last two
are re-raised for the caller to decide.
"""
import itertools
import logging
import math
import os
import platform
import resource
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ablate.data import build_data
from ablate.data.loaders import Batches, build_loaders, epoch_seed, seed_all
from ablate.errors import ConfigError, Interrupted, RunDirError, WriteError
from ablate.model import fast_norms, model_stats
from ablate.model.build import build_model, min_train_bytes
from ablate.record import (
    RunRecord,
    now,
    read_record,
    release_space,
    reserve_space,
    set_aside_errors,
    write_error,
    write_history,
    write_record,
    write_run_config,
    write_val_correct,
)
from ablate.run.branches import BranchProbe
from ablate.run.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from ablate.run.claim import check_same_run, claimed
from ablate.run.distributed import (
    Dist,
    all_reduce_sum,
    broadcast,
    device_memory,
    gather_strided,
    init_distributed,
    pick_device,
)
from ablate.run.slurm_tasks import adopt_slurm_tasks
from ablate.run.tracking import Tracker
from ablate.specs import RunSpec

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """The training loss stopped being finite."""


# SystemExit too: submitit's handler for SLURM's timeout signal requeues the job, then exits.
INTERRUPTS = (KeyboardInterrupt, Interrupted, SystemExit)
# Raised by submitit's handler of that signal when it will not requeue (timed out too many times): the run stopped
# at its last checkpoint, as for any interrupt, and a rerun resumes it. By name: submitit is optional below the CLI.
SUBMITIT_STOPS = ("UncompletedJobError",)
# What gloo and NCCL say when another process of the run is gone (killed, or dead of its own error) mid-collective.
PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
             "remote process exited", "NCCL communicator was aborted")


def run(cfg: RunSpec, run_dir: Path, sweep: str | None = None) -> RunRecord:
    """Train, resume or skip the variant ``cfg`` (checked: ablate.config.spec.run_spec) in ``run_dir``; return its
    record.

    A directory held by a live process, or holding another config's run, is refused (RunDirError) untouched.
    """
    adopt_slurm_tasks()
    device = pick_device(cfg.train.device)
    d = init_distributed(device)
    run_dir = Path(broadcast(str(run_dir), d))  # under torchrun each rank's Hydra picks its own dir
    record = RunRecord.start(cfg, sweep=sweep, device=_device_name(device), world_size=d.world_size)
    with _claim_for_all_ranks(run_dir, record, d) as previous:
        if previous is not None and cfg.train.resume:
            if previous.status == "completed":
                log.info("%s already completed (top-1 %.2f): skipping", run_dir, previous.top1)
                return previous
            record.resume_from(previous)
        if d.is_main:
            reserve_space(run_dir)
            record.past_errors = set_aside_errors(run_dir)  # this attempt's error.txt, if any, is its own
            write_run_config(run_dir, cfg.config, cfg.overrides)
            write_record(run_dir, record)
        _fit_and_record(cfg, run_dir, record, device, d)
    return record


def record_failure(cfg: RunSpec, run_dir: Path, sweep: str | None, error: BaseException) -> None:
    """A ``failed`` record and error.txt for a run that failed before ``run`` recorded it (e.g. ``train.device=cuda``
    on a node without CUDA, found only on the node), so that its sweep counts it. A directory that holds a record,
    and ranks other than 0, write nothing."""
    if int(os.environ.get("RANK", "0")) > 0 or read_record(run_dir) is not None:
        return
    record = RunRecord.start(cfg, sweep=sweep, device=str(cfg.train.device),
                             world_size=int(os.environ.get("WORLD_SIZE", "1")))
    record.status, record.error, record.updated_at = "failed", _one_line(error), now()
    _best_effort(write_error, run_dir, record.error,
                 "".join(traceback.format_exception(type(error), error, error.__traceback__)))
    _best_effort(write_record, run_dir, record)


@contextmanager
def _claim_for_all_ranks(run_dir: Path, record: RunRecord, d: Dist) -> Iterator[RunRecord | None]:
    """Rank 0 locks ``run_dir`` and checks that it holds no other config's run; every rank gets its record."""
    with ExitStack() as stack:
        error, previous = None, None
        if d.is_main:
            try:
                stack.enter_context(claimed(run_dir))
                previous = read_record(run_dir)
                if previous is not None:
                    check_same_run(previous.config, record.config, run_dir)
            except (RunDirError, WriteError) as e:  # WriteError: e.g. a read-only directory
                error = e
        error, previous = broadcast((error, previous), d)
        if error:
            raise error
        yield previous


def _fit_and_record(cfg: RunSpec, run_dir: Path, record: RunRecord, device: torch.device, d: Dist) -> None:
    """``fit``, then record how it ended: completed, diverged, or interrupted and failed (both re-raised)."""
    try:
        with _sigterm_interrupts():
            fit(cfg, run_dir, record, device, d)
    except Diverged as e:
        record.status, record.error = "diverged", str(e)
        log.warning("%s diverged: %s", record.variant, e)
    except BaseException as e:
        interrupt = _interruption(e)
        if interrupt is not None and type(interrupt).__name__ in SUBMITIT_STOPS:
            interrupt = Interrupted(str(interrupt))  # not an error to log: the job ends as on SIGTERM
        if interrupt is None and _peer_gone(e, d):
            # This process is well; it stops where its checkpoint is, as on SIGTERM. Why the other ended (a kill, an
            # OOM, its own error) only that process's log can say.
            interrupt = Interrupted(f"the end of another of the run's {d.world_size} processes ({_one_line(e)}; "
                                    "its own log says why)")
        if interrupt is not None:
            record.status = "interrupted"
            record.error = (f"interrupted by {_cause(interrupt)} after epoch {record.epochs_done}; "
                            "the same command resumes it from its checkpoint")
            if interrupt is e:
                raise
            raise interrupt from None
        record.status, record.error = "failed", _one_line(e)
        if d.is_main:
            release_space(run_dir)  # on a full disk, what lets the reason be written
            _best_effort(write_error, run_dir, record.error, traceback.format_exc())
        raise
    finally:
        record.updated_at = now()
        if d.is_main:
            release_space(run_dir)
            _best_effort(write_record, run_dir, record)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into Interrupted while training, so that the record says so (Python's default just dies)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    previous = signal.signal(signal.SIGTERM, Interrupted.on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interruption(e: BaseException) -> BaseException | None:
    """The interrupt that ``e`` is, or that it was raised while handling (e.g. DataLoader workers that a signal to
    the whole process group stopped, seen while the interrupt unwinds); None for a failure of its own."""
    while e is not None:
        if isinstance(e, INTERRUPTS) or type(e).__name__ in SUBMITIT_STOPS:
            return e
        e = e.__context__
    return None


def _peer_gone(e: BaseException, d: Dist) -> bool:
    """Whether ``e`` is a collective that failed because another process of the run is gone."""
    return d.world_size > 1 and isinstance(e, RuntimeError) and any(m in str(e) for m in PEER_GONE)


def _cause(e: BaseException) -> str:
    if isinstance(e, KeyboardInterrupt):
        return "SIGINT (Ctrl-C)"
    if isinstance(e, SystemExit):
        return f"an exit request ({e.code})"
    return str(e)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return str(e) if isinstance(e, WriteError) else f"{type(e).__name__}: {text[0] if text else ''}"


def _best_effort(write: Callable[..., None], *args: Any) -> None:
    """Write a failure's record without hiding the failure: a write that fails too is logged in one line."""
    try:
        write(*args)
    except WriteError as e:
        log.error("could not record the failure: %s", e)


def _check_fits(cfg: RunSpec, device: torch.device) -> None:
    """ConfigError when a training step cannot fit in the device's memory whatever else is running."""
    total, size = device_memory(device, cfg.train.amp)
    need = min_train_bytes(cfg, size)
    if need > total:
        raise ConfigError(f"data.img_size={cfg.data.img_size} with train.batch_size={cfg.train.batch_size} needs "
                          f"at least {need / 1e9:,.1f} GB for a training step of model {cfg.model.name}, more than "
                          f"the {total / 1e9:,.1f} GB of {_device_name(device)}; lower either")


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


@dataclass(kw_only=True)
class Trainer:
    """Everything the epoch loop needs, built once by ``setup``."""

    cfg: RunSpec
    device: torch.device
    d: Dist
    model: nn.Module
    net: nn.Module  # the model as trained: wrapped for DDP and compiled when asked
    optimizer: torch.optim.Optimizer
    scheduler: Any
    criterion: nn.Module
    mixup: Mixup | None
    train_loader: Batches
    val_loader: Batches
    amp: torch.autocast
    epochs: int  # cool-down included
    accum_steps: int  # micro-batches per optimiser step
    ema: ModelEmaV3 | None  # train.ema_decay's EMA of the weights
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps; micro-batches that cannot fill the epoch's last step are left out."""
        return len(self.train_loader) // self.accum_steps


def setup(cfg: RunSpec, run_dir: Path, record: RunRecord, device: torch.device, d: Dist) -> Trainer:
    """Data, model, optimiser, schedule and loss; the checkpoint's state when the run resumes."""
    t = cfg.train
    _check_fits(cfg, device)
    ckpt_path = run_dir / CHECKPOINT
    # Read the checkpoint before any data or model work, so a corrupt one stops the run at once.
    ckpt = load_checkpoint(ckpt_path) if t.resume and ckpt_path.exists() else None
    if ckpt is not None:
        check_same_run(ckpt.get("config"), record.config, ckpt_path)
    data = build_data(cfg)
    torch.manual_seed(cfg.seed)
    with fast_norms(t.fast_norm):
        model = build_model(cfg, data.num_classes)
    stats = model_stats(model, cfg.data.img_size)
    record.params_m, record.frozen_params_m = stats["params_m"], stats["frozen_params_m"]
    record.macs_g = stats["macs_g"]
    record.data_info = data.info
    model.to(device)
    if device.type == "cuda" and t.channels_last:
        model.to(memory_format=torch.channels_last)
    lr = t.lr if t.lr is not None else t.lr_per_1024 * record.global_batch / 1024
    optimizer = create_optimizer_v2(model, "adamw", lr=lr, weight_decay=t.weight_decay, fused=t.fused_optimizer)
    train_loader, val_loader = build_loaders(cfg, data, device, rank=d.rank, world_size=d.world_size)
    steps = len(train_loader) // record.accum_steps  # optimiser steps per epoch
    scheduler, epochs = create_scheduler_v2(
        optimizer, "cosine", num_epochs=t.epochs, warmup_epochs=t.warmup_epochs, warmup_lr=t.warmup_lr,
        min_lr=t.min_lr, cooldown_epochs=t.cooldown_epochs, step_on_epochs=False, updates_per_epoch=steps)
    mixup = (Mixup(mixup_alpha=t.mixup, cutmix_alpha=t.cutmix, switch_prob=t.mixup_switch_prob,
                   label_smoothing=t.label_smoothing, num_classes=data.num_classes)
             if t.mixup > 0 or t.cutmix > 0 else None)
    criterion = SoftTargetCrossEntropy() if mixup else nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)
    ema = ModelEmaV3(model, decay=t.ema_decay) if t.ema_decay is not None else None
    history = []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ema is not None:
            ema.module.load_state_dict(ckpt["ema"])
        history = ckpt["history"]
        scheduler.step_update(len(history) * steps)
        log.info("resuming %s from epoch %d", run_dir, len(history))
    net = model
    if d.world_size > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        # Static shapes: train batches are all full (drop_last), so nothing recompiles for a dynamic batch.
        net = torch.compile(net, mode=t.compile_mode, dynamic=False)
    torch.backends.cudnn.benchmark = t.cudnn_benchmark  # shapes are fixed, so the autotuned choice pays
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.amp and device.type == "cuda")
    return Trainer(cfg=cfg, device=device, d=d, model=model, net=net, optimizer=optimizer, scheduler=scheduler,
                   criterion=criterion, mixup=mixup, train_loader=train_loader, val_loader=val_loader, amp=amp,
                   epochs=epochs, accum_steps=record.accum_steps, ema=ema, history=history)


def train_one_epoch(tr: Trainer, epoch: int) -> dict[str, float]:
    """One pass over this rank's shard; the mean loss and the images per second over all ranks.

    Each optimiser step accumulates ``accum_steps`` micro-batches per rank, each loss scaled by 1/accum_steps,
    so that a step's gradient is the mean over the global batch whatever the split into ranks and micro-batches.
    The loss is summed on the device and read every ``train.check_every`` steps and at the end: the only
    host syncs, so the GPU is never idle waiting for Python. A non-finite loss is caught there.
    """
    t, device, accum = tr.cfg.train, tr.device, tr.accum_steps
    tr.train_loader.sampler.set_epoch(epoch)
    _seed(tr.cfg.seed, epoch, tr.d.rank)
    tic = time.perf_counter()
    seen, loss_sum, window, first = 0, 0.0, torch.zeros((), device=device), 0
    tr.net.train()
    tr.optimizer.zero_grad(set_to_none=True)
    batches = itertools.islice(tr.train_loader, tr.steps_per_epoch * accum)
    bar = tqdm(batches, total=tr.steps_per_epoch * accum, desc=f"epoch {epoch + 1}/{tr.epochs}", leave=False,
               disable=not tr.d.is_main or None)
    for micro, (batch, y) in enumerate(bar):
        step, last = micro // accum, (micro + 1) % accum == 0
        x, y = _to(batch, device, t.channels_last), y.to(device, non_blocking=True)
        target = y
        if tr.mixup:
            x, target = tr.mixup(x, y)
        with _grad_sync(tr.net, last):
            with tr.amp:
                loss = tr.criterion(tr.net(x), target)
            (loss / accum).backward()
        # After backward nothing holds the batch (autograd has freed what it saved): the batched loader reuses it.
        tr.train_loader.give_back(batch)
        seen += len(x)
        window.add_(loss.detach(), alpha=len(x))
        if not last:
            continue
        if t.grad_clip:
            nn.utils.clip_grad_norm_(tr.model.parameters(), t.grad_clip)
        tr.optimizer.step()
        tr.optimizer.zero_grad(set_to_none=True)
        tr.scheduler.step_update(epoch * tr.steps_per_epoch + step + 1)
        if tr.ema is not None:
            tr.ema.update(tr.model)
        if (step + 1) % t.check_every == 0 or step + 1 == tr.steps_per_epoch:
            total = window.item()
            if not math.isfinite(total):
                raise Diverged(f"loss became {total} between step {first + 1} and step {step + 1} "
                               f"of epoch {epoch + 1}")
            loss_sum, first = loss_sum + total, step + 1
            window.zero_()
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{tr.optimizer.param_groups[0]['lr']:.2e}")
    seen, loss_sum = all_reduce_sum([seen, loss_sum], tr.d, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"lr": tr.optimizer.param_groups[0]["lr"], "train_loss": loss_sum / seen,
            "img_per_s": seen / (time.perf_counter() - tic)}


def _grad_sync(net: nn.Module, sync: bool) -> AbstractContextManager:
    """DDP all-reduces gradients in every backward; within an accumulation only the last one needs it."""
    return nullcontext() if sync or not hasattr(net, "no_sync") else net.no_sync()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Batches, device: torch.device, d: Dist, amp: torch.autocast,
             channels_last: bool = False) -> tuple[dict[str, float], torch.Tensor]:
    """Top-1/top-5 (%) and loss over this rank's shard of the val set, summed over ranks; and every val
    image's top-1 correctness (bool, CPU) in dataset order, gathered from all ranks.

    Sums stay on the device until the end, so the host waits once per evaluation, not once per batch."""
    model.eval()
    n, sums = 0, torch.zeros(3, dtype=torch.float64, device=device)  # loss, top-1 hits, top-5 hits
    hits = [torch.zeros(0, dtype=torch.bool, device=device)]
    for x, y in loader:
        x, y = _to(x, device, channels_last), y.to(device, non_blocking=True)
        with amp:
            logits = model(x).float()
        hit = logits.argmax(1).eq(y)  # top-1 from the same bits the report bootstraps over
        top5 = logits.topk(min(5, logits.shape[1]), 1).indices.eq(y[:, None]).any(1)
        n += len(y)
        sums += torch.stack([nn.functional.cross_entropy(logits, y, reduction="sum"), hit.sum(), top5.sum()])
        hits.append(hit)
    n, loss, c1, c5 = all_reduce_sum([n, *sums.tolist()], d, device)
    correct = gather_strided(torch.cat(hits).to(torch.uint8), d, int(n)).bool().cpu()
    return {"val_loss": loss / n, "top1": 100 * c1 / n, "top5": 100 * c5 / n}, correct


def fit(cfg: RunSpec, run_dir: Path, record: RunRecord, device: torch.device, d: Dist) -> None:
    """The epoch loop: train, evaluate, then record and checkpoint every epoch."""
    tr = setup(cfg, run_dir, record, device, d)
    if tr.history:  # the checkpoint's progress, also when results.json was lost
        record.update_from_history(tr.history, _peak_mem_mb(device))
    else:
        log.info("training %s from scratch", run_dir)
    probe = BranchProbe(tr.model, tr.val_loader, device, run_dir, len(tr.history)) if d.is_main else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    wall_start = time.perf_counter() - (tr.history[-1]["wall_s"] if tr.history else 0.0)
    start = len(tr.history)
    with Tracker(cfg, record, run_dir, enabled=d.is_main) as tracker:
        for epoch in range(start, tr.epochs):
            tic = time.perf_counter()
            row = {"epoch": epoch + 1, **train_one_epoch(tr, epoch)}
            metrics, correct = _evaluate_models(tr)
            row.update(metrics)
            row.update(epoch_s=time.perf_counter() - tic, wall_s=time.perf_counter() - wall_start)
            tr.history.append(row)
            log.info("epoch %d/%d  loss %.4f  val top-1 %.2f  top-5 %.2f  %.0f img/s", epoch + 1, tr.epochs,
                     row["train_loss"], row["top1"], row["top5"], row["img_per_s"])
            record.update_from_history(tr.history, _peak_mem_mb(device))
            tracker.log(row)
            if d.is_main:
                write_history(run_dir, tr.history)
                probe.record(epoch + 1)
                ema = {"ema": tr.ema.module.state_dict()} if tr.ema is not None else {}
                save_checkpoint(run_dir / CHECKPOINT, {"model": tr.model.state_dict(),
                                                       "optimizer": tr.optimizer.state_dict(), "epoch": epoch + 1,
                                                       "history": tr.history, "config": record.config, **ema})
                write_val_correct(run_dir, *correct)
                write_record(run_dir, record)
        if start == tr.epochs:  # a finished run whose record was lost: its final model, evaluated again
            _, correct = _evaluate_models(tr)
            if d.is_main:
                write_val_correct(run_dir, *correct)
        record.status = "completed"


def _evaluate_models(tr: Trainer) -> tuple[dict[str, float], list[np.ndarray]]:
    """``evaluate`` the model, and its EMA when kept (metrics prefixed ``ema_``); their per-image correctness."""
    models = {"": tr.model} if tr.ema is None else {"": tr.model, "ema_": tr.ema.module}
    metrics, correct = {}, []
    for prefix, model in models.items():
        values, hits = evaluate(model, tr.val_loader, tr.device, tr.d, tr.amp, tr.cfg.train.channels_last)
        metrics.update({prefix + k: v for k, v in values.items()})
        correct.append(hits.numpy())
    return metrics, correct


def _seed(seed: int, epoch: int, rank: int) -> None:
    # Reseeded per epoch (drop path, mixup, augmentation), so a resumed run continues as if never stopped.
    seed_all(epoch_seed(seed, epoch, rank))


def _to(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    fmt = torch.channels_last if channels_last and device.type == "cuda" else torch.contiguous_format
    return x.to(device, non_blocking=True, memory_format=fmt)


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
