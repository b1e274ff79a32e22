"""Train one variant: build, (resume,) loop over epochs, evaluate, record. Readable top to bottom.

``run`` never loses work already written: a completed record is skipped, an unfinished run
resumes from its checkpoint, a non-finite loss ends the run as ``diverged``, any other error is
recorded as ``failed`` (with error.txt) and re-raised for the caller to decide.
"""
import logging
import platform
import random
import resource
import statistics
import subprocess
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import timm
import torch
from omegaconf import DictConfig, OmegaConf
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import accuracy
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ablate.config import ROOT, check_config
from ablate.data import build_data
from ablate.distributed import Dist, all_reduce_sum, broadcast, init_distributed, pick_device
from ablate.loaders import Batches, build_loaders
from ablate.model import build_model, model_stats
from ablate.paper import ABLATION_KEYS, name_run, signature_diff
from ablate.record import (CHECKPOINT, ERROR, HISTORY, RESULTS, load_checkpoint, read_results, save_checkpoint,
                           write_history, write_json)
from ablate.tracking import Tracker

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """The training loss stopped being finite."""


def run(cfg: DictConfig, run_dir: Path, overrides: Sequence[str] = (), sweep: str | None = None) -> dict[str, Any]:
    """Train, resume or skip the variant ``cfg`` in ``run_dir``; return its record."""
    check_config(cfg)
    run_dir = Path(run_dir)
    device = pick_device(cfg.train.device)
    d = init_distributed(device)
    run_dir = Path(broadcast(str(run_dir), d))  # under torchrun each rank's Hydra picks its own dir
    previous = read_results(run_dir)
    if cfg.train.resume and previous and previous.get("status") == "completed":
        log.info("%s already completed (top-1 %.2f): skipping", run_dir, previous["top1"])
        return previous
    record = _new_record(cfg, overrides, sweep, device, d)
    try:
        _train(cfg, run_dir, record, device, d)
    except Diverged as e:
        record.update(status="diverged", error=str(e))
        log.warning("%s diverged: %s", record["variant"], e)
    except BaseException as e:
        record.update(status="failed", error=f"{type(e).__name__}: {e}")
        if d.is_main:
            (run_dir / ERROR).parent.mkdir(parents=True, exist_ok=True)
            (run_dir / ERROR).write_text(traceback.format_exc())
        raise
    finally:
        record["updated_at"] = _now()
        if d.is_main:
            write_json(run_dir / RESULTS, record)
    return record


def _train(cfg: DictConfig, run_dir: Path, record: dict[str, Any], device: torch.device, d: Dist) -> None:
    t = cfg.train
    ckpt_path = run_dir / CHECKPOINT
    # Read the checkpoint before any data or model work, so a corrupt one stops the run at once.
    ckpt = load_checkpoint(ckpt_path) if t.resume and ckpt_path.exists() else None
    data = build_data(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.num_classes)
    record.update(model_stats(model, cfg.data.img_size), data_info=data.info)
    model.to(device)
    if device.type == "cuda" and t.channels_last:
        model.to(memory_format=torch.channels_last)
    global_batch = t.batch_size * d.world_size
    lr = t.lr if t.lr is not None else t.lr_per_1024 * global_batch / 1024
    optimizer = create_optimizer_v2(model, "adamw", lr=lr, weight_decay=t.weight_decay)
    train_loader, val_loader = build_loaders(cfg, data, d, device)
    steps_per_epoch = len(train_loader)
    scheduler, epochs = create_scheduler_v2(
        optimizer, "cosine", num_epochs=t.epochs, warmup_epochs=t.warmup_epochs, warmup_lr=t.warmup_lr,
        min_lr=t.min_lr, cooldown_epochs=t.cooldown_epochs, step_on_epochs=False, updates_per_epoch=steps_per_epoch)
    mixup = (Mixup(mixup_alpha=t.mixup, cutmix_alpha=t.cutmix, switch_prob=t.mixup_switch_prob,
                   label_smoothing=t.label_smoothing, num_classes=data.num_classes)
             if t.mixup > 0 or t.cutmix > 0 else None)
    criterion = SoftTargetCrossEntropy() if mixup else nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)

    history: list[dict[str, Any]] = []
    start = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        history, start = ckpt["history"], ckpt["epoch"]
        scheduler.step_update(start * steps_per_epoch)
        log.info("resuming %s from epoch %d", run_dir, start)
    net = model
    if d.world_size > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        net = torch.compile(net)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.amp and device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    wall_start = time.perf_counter() - (history[-1]["wall_s"] if history else 0.0)
    with Tracker(cfg, record, run_dir, enabled=d.is_main) as tracker:
        for epoch in range(start, epochs):
            train_loader.sampler.set_epoch(epoch)
            _seed(cfg.seed, epoch, d.rank)
            tic = time.perf_counter()
            seen, loss_sum = 0, 0.0
            net.train()
            bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                       disable=not d.is_main or None)
            for step, (x, y) in enumerate(bar):
                x, y = _to(x, device, t.channels_last), y.to(device, non_blocking=True)
                target = y
                if mixup:
                    x, target = mixup(x, y)
                with amp:
                    loss = criterion(net(x), target)
                if not torch.isfinite(loss):
                    raise Diverged(f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if t.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                optimizer.step()
                scheduler.step_update(epoch * steps_per_epoch + step + 1)
                seen += len(x)
                loss_sum += loss.item() * len(x)
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            seen, loss_sum = all_reduce_sum([seen, loss_sum], d, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_s = time.perf_counter() - tic
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss_sum / seen,
                   **evaluate(model, val_loader, device, d, amp, t.channels_last),
                   "epoch_s": time.perf_counter() - tic, "img_per_s": seen / train_s,
                   "wall_s": time.perf_counter() - wall_start}
            history.append(row)
            log.info("epoch %d/%d  loss %.4f  val top-1 %.2f  top-5 %.2f  %.0f img/s", epoch + 1, epochs,
                     row["train_loss"], row["top1"], row["top5"], row["img_per_s"])
            _summarise(record, history, device)
            tracker.log(row)
            if d.is_main:
                write_history(run_dir / HISTORY, history)
                save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                            "epoch": epoch + 1, "history": history})
                write_json(run_dir / RESULTS, record)
        record["status"] = "completed"


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


def _seed(seed: int, epoch: int, rank: int) -> None:
    # Reseeded per epoch (drop path, mixup, augmentation), so a resumed run continues as if never stopped.
    value = seed * 100_003 + epoch * 1_009 + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def _to(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    fmt = torch.channels_last if channels_last and device.type == "cuda" else torch.contiguous_format
    return x.to(device, non_blocking=True, memory_format=fmt)


def _summarise(record: dict[str, Any], history: list[dict[str, Any]], device: torch.device) -> None:
    last = history[-1]
    best = max(history, key=lambda r: r["top1"])
    record.update(
        epochs_done=last["epoch"], top1=last["top1"], top5=last["top5"], val_loss=last["val_loss"],
        train_loss=last["train_loss"], best_top1=best["top1"], best_epoch=best["epoch"],
        # The median, so that the first epoch's warm-up (cuDNN autotuning, compilation) does not count.
        img_per_s=statistics.median(r["img_per_s"] for r in history), wall_s=last["wall_s"],
        peak_mem_mb=(torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                     else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        updated_at=_now())


def _new_record(cfg: DictConfig, overrides: Sequence[str], sweep: str | None, device: torch.device,
                d: Dist) -> dict[str, Any]:
    values = {k: OmegaConf.to_container(cfg[k]) if OmegaConf.is_config(cfg[k]) else cfg[k]
              for k in ABLATION_KEYS if k not in ("mixer", "norm", "act")}
    values.update(mixer=cfg.mixer.name, norm=cfg.norm.name, act=cfg.act.name)
    group, variant = name_run(values, (cfg.ablation.group, cfg.ablation.variant))
    return {
        "status": "running", "group": group, "variant": variant, "is_baseline": not signature_diff(values),
        "overrides": list(overrides), "sweep": sweep, "seed": cfg.seed,
        "epochs": cfg.train.epochs + cfg.train.cooldown_epochs, "epochs_done": 0,
        "top1": None, "top5": None, "best_top1": None, "best_epoch": None, "val_loss": None, "train_loss": None,
        "params_m": None, "frozen_params_m": None, "macs_g": None, "img_size": cfg.data.img_size,
        "model": cfg.model.name, "data": cfg.data.name, "recipe": cfg.train.name,
        "img_per_s": None, "peak_mem_mb": None, "wall_s": None,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "world_size": d.world_size, "versions": _versions(), "git_commit": _git_commit(), "error": None,
        "started_at": _now(), "updated_at": _now(),
    }


def _versions() -> dict[str, str]:
    import omegaconf
    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "hydra": hydra.__version__, "omegaconf": omegaconf.__version__}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
