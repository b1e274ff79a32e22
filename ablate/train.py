"""Train one variant. Read top to bottom: ``run`` → ``setup`` → ``train_one_epoch`` → ``evaluate`` → ``fit``.

``run`` never loses work already written: a completed record is skipped, an unfinished run
resumes from its checkpoint, a non-finite loss ends the run as ``diverged``, any other error is
recorded as ``failed`` (with error.txt) and re-raised for the caller to decide.
"""
import logging
import math
import platform
import random
import resource
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import accuracy
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ablate.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from ablate.config import check_config
from ablate.data import build_data
from ablate.design import free_overrides, name_run
from ablate.distributed import Dist, all_reduce_sum, broadcast, init_distributed, pick_device
from ablate.loaders import Batches, build_loaders
from ablate.model import build_model, fast_norms, model_stats
from ablate.record import ERROR, RunRecord, now, read_record, write_history, write_record
from ablate.tracking import Tracker

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """The training loss stopped being finite."""


def run(cfg: DictConfig, run_dir: Path, overrides: Sequence[str] = (), sweep: str | None = None) -> RunRecord:
    """Train, resume or skip the variant ``cfg`` in ``run_dir``; return its record."""
    check_config(cfg)
    device = pick_device(cfg.train.device)
    d = init_distributed(device)
    run_dir = Path(broadcast(str(run_dir), d))  # under torchrun each rank's Hydra picks its own dir
    previous = read_record(run_dir)
    if cfg.train.resume and previous and previous.status == "completed":
        log.info("%s already completed (top-1 %.2f): skipping", run_dir, previous.top1)
        return previous
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    record = RunRecord.start(cfg, asdict(name_run(cfg)), overrides, free_overrides(overrides), sweep, device_name,
                             d.world_size)
    try:
        fit(cfg, run_dir, record, device, d)
    except Diverged as e:
        record.status, record.error = "diverged", str(e)
        log.warning("%s diverged: %s", record.variant, e)
    except BaseException as e:
        record.status, record.error = "failed", f"{type(e).__name__}: {e}"
        if d.is_main:
            (run_dir / ERROR).parent.mkdir(parents=True, exist_ok=True)
            (run_dir / ERROR).write_text(traceback.format_exc())
        raise
    finally:
        record.updated_at = now()
        if d.is_main:
            write_record(run_dir, record)
    return record


@dataclass
class Trainer:
    """Everything the epoch loop needs, built once by ``setup``."""

    cfg: DictConfig
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
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)


def setup(cfg: DictConfig, run_dir: Path, record: RunRecord, device: torch.device, d: Dist) -> Trainer:
    """Data, model, optimiser, schedule and loss; the checkpoint's state when the run resumes."""
    t = cfg.train
    ckpt_path = run_dir / CHECKPOINT
    # Read the checkpoint before any data or model work, so a corrupt one stops the run at once.
    ckpt = load_checkpoint(ckpt_path) if t.resume and ckpt_path.exists() else None
    data = build_data(cfg)
    torch.manual_seed(cfg.seed)
    with fast_norms(t.fast_norm):
        model = build_model(cfg, data.num_classes)
    stats = model_stats(model, cfg.data.img_size)
    record.params_m, record.frozen_params_m, record.macs_g = stats["params_m"], stats["frozen_params_m"], stats["macs_g"]
    record.data_info = data.info
    model.to(device)
    if device.type == "cuda" and t.channels_last:
        model.to(memory_format=torch.channels_last)
    lr = t.lr if t.lr is not None else t.lr_per_1024 * t.batch_size * d.world_size / 1024
    optimizer = create_optimizer_v2(model, "adamw", lr=lr, weight_decay=t.weight_decay, fused=t.fused_optimizer)
    train_loader, val_loader = build_loaders(cfg, data, d, device)
    scheduler, epochs = create_scheduler_v2(
        optimizer, "cosine", num_epochs=t.epochs, warmup_epochs=t.warmup_epochs, warmup_lr=t.warmup_lr,
        min_lr=t.min_lr, cooldown_epochs=t.cooldown_epochs, step_on_epochs=False, updates_per_epoch=len(train_loader))
    mixup = (Mixup(mixup_alpha=t.mixup, cutmix_alpha=t.cutmix, switch_prob=t.mixup_switch_prob,
                   label_smoothing=t.label_smoothing, num_classes=data.num_classes)
             if t.mixup > 0 or t.cutmix > 0 else None)
    criterion = SoftTargetCrossEntropy() if mixup else nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)
    history = []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        history = ckpt["history"]
        scheduler.step_update(len(history) * len(train_loader))
        log.info("resuming %s from epoch %d", run_dir, len(history))
    net = model
    if d.world_size > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        # Static shapes: train batches are all full (drop_last), so nothing recompiles for a dynamic batch.
        net = torch.compile(net, mode=t.compile_mode, dynamic=False)
    torch.backends.cudnn.benchmark = t.cudnn_benchmark  # shapes are fixed, so the autotuned choice pays
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.amp and device.type == "cuda")
    return Trainer(cfg, device, d, model, net, optimizer, scheduler, criterion, mixup, train_loader, val_loader,
                   amp, epochs, history)


def train_one_epoch(tr: Trainer, epoch: int) -> dict[str, float]:
    """One pass over this rank's shard; the mean loss and the images per second over all ranks.

    The loss is summed on the device and read every ``train.check_every`` steps and at the end: the only
    host syncs, so the GPU is never idle waiting for Python. A non-finite loss is caught there.
    """
    t, device = tr.cfg.train, tr.device
    tr.train_loader.sampler.set_epoch(epoch)
    _seed(tr.cfg.seed, epoch, tr.d.rank)
    tic = time.perf_counter()
    seen, loss_sum, window, first = 0, 0.0, torch.zeros((), device=device), 0
    tr.net.train()
    bar = tqdm(tr.train_loader, desc=f"epoch {epoch + 1}/{tr.epochs}", leave=False, disable=not tr.d.is_main or None)
    for step, (x, y) in enumerate(bar):
        x, y = _to(x, device, t.channels_last), y.to(device, non_blocking=True)
        target = y
        if tr.mixup:
            x, target = tr.mixup(x, y)
        with tr.amp:
            loss = tr.criterion(tr.net(x), target)
        tr.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip:
            nn.utils.clip_grad_norm_(tr.model.parameters(), t.grad_clip)
        tr.optimizer.step()
        tr.scheduler.step_update(epoch * tr.steps_per_epoch + step + 1)
        seen += len(x)
        window.add_(loss.detach(), alpha=len(x))
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


@torch.no_grad()
def evaluate(model: nn.Module, loader: Batches, device: torch.device, d: Dist, amp: torch.autocast,
             channels_last: bool = False) -> dict[str, float]:
    """Top-1/top-5 (%) and loss over this rank's shard of the val set, summed over ranks."""
    model.eval()
    n = loss = c1 = c5 = 0.0
    for x, y in loader:
        x, y = _to(x, device, channels_last), y.to(device, non_blocking=True)
        with amp:
            logits = model(x).float()
        top1, top5 = accuracy(logits, y, topk=(1, min(5, logits.shape[1])))
        n += len(y)
        loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        c1 += top1.item() * len(y) / 100
        c5 += top5.item() * len(y) / 100
    n, loss, c1, c5 = all_reduce_sum([n, loss, c1, c5], d, device)
    return {"val_loss": loss / n, "top1": 100 * c1 / n, "top5": 100 * c5 / n}


def fit(cfg: DictConfig, run_dir: Path, record: RunRecord, device: torch.device, d: Dist) -> None:
    """The epoch loop: train, evaluate, then record and checkpoint every epoch."""
    tr = setup(cfg, run_dir, record, device, d)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    wall_start = time.perf_counter() - (tr.history[-1]["wall_s"] if tr.history else 0.0)
    with Tracker(cfg, record, run_dir, enabled=d.is_main) as tracker:
        for epoch in range(len(tr.history), tr.epochs):
            tic = time.perf_counter()
            row = {"epoch": epoch + 1, **train_one_epoch(tr, epoch)}
            row.update(evaluate(tr.model, tr.val_loader, device, d, tr.amp, cfg.train.channels_last))
            row.update(epoch_s=time.perf_counter() - tic, wall_s=time.perf_counter() - wall_start)
            tr.history.append(row)
            log.info("epoch %d/%d  loss %.4f  val top-1 %.2f  top-5 %.2f  %.0f img/s", epoch + 1, tr.epochs,
                     row["train_loss"], row["top1"], row["top5"], row["img_per_s"])
            record.update_from_history(tr.history, _peak_mem_mb(device))
            tracker.log(row)
            if d.is_main:
                write_history(run_dir, tr.history)
                save_checkpoint(run_dir / CHECKPOINT, {"model": tr.model.state_dict(),
                                                       "optimizer": tr.optimizer.state_dict(),
                                                       "epoch": epoch + 1, "history": tr.history})
                write_record(run_dir, record)
        record.status = "completed"


def _seed(seed: int, epoch: int, rank: int) -> None:
    # Reseeded per epoch (drop path, mixup, augmentation), so a resumed run continues as if never stopped.
    value = seed * 100_003 + epoch * 1_009 + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def _to(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    fmt = torch.channels_last if channels_last and device.type == "cuda" else torch.contiguous_format
    return x.to(device, non_blocking=True, memory_format=fmt)


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
