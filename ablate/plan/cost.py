"""What one distinct model of a sweep costs: params, MACs, the memory a training step needs at least, the disk a
run leaves, and its training and evaluation speed, measured here in a few steps or read from a results file."""
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ablate.errors import ConfigError
from ablate.model.build import build_model, min_train_bytes
from ablate.specs import RunSpec

if TYPE_CHECKING:
    from torch import nn

# Data sets whose files may not be here: (train, val) images and classes, as their builders find them.
KNOWN_SIZES = {"imagenet100": (126_689, 5_000, 100), "imagenet": (1_281_167, 50_000, 1000)}
RECORD_BYTES = 16_384  # results.json, the run's config and log: a few KB each
HISTORY_ROW_BYTES = 160  # one epoch's line of history.csv
CPU_BATCH = 16  # the batch a CPU measurement starts at ...
CPU_STEP_S = 0.25  # ... and doubles (up to the run's own) while a training step takes less than this
EVAL_SPEEDUP = 3.0  # a forward pass is about a third of a training step (forward + backward), when not measured


@dataclass
class DataSize:
    train: int
    val: int
    num_classes: int
    source: str  # "counted" (the data set was built here) or "known" (KNOWN_SIZES)


@dataclass
class ModelCost:
    """One distinct model's cost; speeds in images per second, sizes in bytes."""

    params_m: float
    frozen_params_m: float
    macs_g: float
    min_train_bytes: int
    checkpoint_bytes: int
    train_img_s: float | None = None
    eval_img_s: float | None = None
    speed_source: str = "not measured"

    def record_bytes(self, epochs: int, val_images: int) -> int:
        """results.json, history.csv and val_correct.npz (a bit per val image, twice with an EMA)."""
        return RECORD_BYTES + HISTORY_ROW_BYTES * epochs + val_images // 4


def data_size(cfg: RunSpec) -> DataSize:
    """Train and val images and classes of ``cfg.data``: counted by building the data set (in-memory sets, folders
    that are here), else the sizes of the known sets whose files are elsewhere."""
    from ablate.data import build_data
    try:
        data = build_data(cfg)
        return DataSize(len(data.train), len(data.val), data.num_classes, "counted")
    except (ConfigError, FileNotFoundError):
        if cfg.data.name in KNOWN_SIZES:
            return DataSize(*KNOWN_SIZES[cfg.data.name], "known")
        raise


def model_cost(cfg: RunSpec, num_classes: int, hidden_bytes: int, steps: int | None = None) -> ModelCost:
    """Params, MACs, memory bound and checkpoint size of ``cfg``'s model; with ``steps``, its speeds measured here
    (``measure_speed``)."""
    from ablate.model import model_stats
    model = build_model(cfg, num_classes)
    stats = model_stats(model, cfg.data.img_size)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    # The checkpoint: the model's state, AdamW's two fp32 moments per trainable parameter, and an EMA copy if kept.
    checkpoint = state + 2 * 4 * trainable + (state if cfg.train.ema_decay is not None else 0)
    cost = ModelCost(stats["params_m"], stats["frozen_params_m"], stats["macs_g"], min_train_bytes(cfg, hidden_bytes),
                     checkpoint)
    if steps:
        cost.train_img_s, cost.eval_img_s = measure_speed(model, cfg, num_classes, steps)
        cost.speed_source = "measured"
    return cost


def measure_speed(model: "nn.Module", cfg: RunSpec, num_classes: int, steps: int) -> tuple[float, float]:
    """Training and evaluation img/s of ``model`` (``cfg``'s) on its device: ``steps`` AdamW steps and forward
    passes on one random batch, each after one untimed (the model, optimiser and loss of ablate.run.train; no data
    loading). On a GPU at the run's batch size; on the CPU at the largest batch up to it whose step stays short
    (``CPU_STEP_S``), since a small batch costs more per image (xs at 32 px: a third of the speed at 16 as at 64)."""
    import torch
    from timm.optim import create_optimizer_v2
    from torch import nn

    from ablate.run.distributed import pick_device
    t, device = cfg.train, pick_device(cfg.train.device)
    model = model.to(device)
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=t.weight_decay, fused=t.fused_optimizer)
    criterion = nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.amp and device.type == "cuda")

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randn(n, 3, cfg.data.img_size, cfg.data.img_size, device=device),
                torch.randint(0, num_classes, (n,), device=device))

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with amp:
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def seconds(fn, *args: torch.Tensor) -> float:
        """The median of ``steps`` timed calls, after one untimed (allocations, cuDNN's choice): a burst of other
        work slows one, not the median."""
        fn(*args)
        times = []
        for _ in range(steps):
            tic = time.perf_counter()
            fn(*args)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - tic)
        return statistics.median(times)

    model.train()
    size = t.batch_size if device.type != "cpu" else min(t.batch_size, CPU_BATCH)
    x, y = batch(size)
    took = seconds(step, x, y)
    while device.type == "cpu" and size < t.batch_size and took < CPU_STEP_S:
        size = min(2 * size, t.batch_size)
        x, y = batch(size)
        took = seconds(step, x, y)
    model.eval()
    with torch.no_grad(), amp:
        evaluate = seconds(model, x)
    return size / took, size / evaluate


def read_speeds(path: Path) -> dict[str, float]:
    """img/s by row from a results file (benchmarks/throughput.py's): lines ``<row> <img/s> ...``; the first
    number after a row's name counts, the first line of a row wins."""
    speeds: dict[str, float] = {}
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"--speeds {path}: {e.strerror or e}") from None
    for line in text.splitlines():
        match = re.match(r"(\S+)\s+(\d+(?:\.\d+)?)(?:\s|$)", line)
        if match and not line.startswith("#"):
            speeds.setdefault(match[1], float(match[2]))
    if not speeds:
        raise ConfigError(f"--speeds {path}: no line '<row> <img/s>' in it")
    return speeds
