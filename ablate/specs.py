"""A run as typed values: what ``config/`` turns a composed, checked config into, once, for the rest of ablate.

``run/``, ``data/`` and ``model/`` take these frozen dataclasses and never see Hydra or OmegaConf. Their field names
are the config's keys (``spec.data.img_size`` is ``data.img_size``), so an error message that names a key names the
field too. The YAML files under ``conf/`` hold the defaults; tests/test_specs.py checks that every key they define is
a field here and every field a key there. ``config`` keeps the resolved config as plain data: the record, the
fingerprint and the ``.hydra/config.yaml`` a run leaves are made from it, as they were before the specs existed.
"""
import copy
from dataclasses import dataclass, field
from typing import Any

from ablate.errors import ConfigError

# Keys that do not decide a run's result: where the data lives, a start-up check, logging (wandb, and how often
# the loss is read), the resume switch.
NOT_RESULT_KEYS = ("data.root", "data.verify", "wandb", "train.check_every", "train.resume")


@dataclass(frozen=True)
class ModelSpec:
    """``model=``: a MetaFormer size (conf/model/)."""

    name: str
    depths: tuple[int, ...]
    dims: tuple[int, ...]
    mlp_ratio: float
    drop_path: float
    layer_scale_init: float | None
    crop_pct: float


@dataclass(frozen=True)
class DataSpec:
    """``data=``: a data set (conf/data/); the keys only some data sets have take their defaults elsewhere."""

    name: str
    img_size: int
    root: str | None = None
    val_fraction: float | None = None  # digits: the share held out for validation
    verify: bool = False  # class-folder trees: decode every image at start-up
    loader: str = "auto"  # class-folder trees and stores: torch | dali | batched | auto


@dataclass(frozen=True)
class TrainSpec:
    """``train=``: a recipe (conf/train/)."""

    name: str
    epochs: int
    batch_size: int  # per process and micro-batch
    global_batch: int | None
    lr: float | None
    lr_per_1024: float | None
    weight_decay: float
    warmup_epochs: float
    warmup_lr: float
    min_lr: float
    cooldown_epochs: int
    label_smoothing: float
    mixup: float
    cutmix: float
    mixup_switch_prob: float
    randaug: str | None
    reprob: float
    color_jitter: float
    grad_clip: float | None
    ema_decay: float | None
    device: str
    amp: bool
    channels_last: bool
    compile: bool
    compile_mode: str
    fused_optimizer: bool
    cudnn_benchmark: bool
    fast_norm: bool
    check_every: int
    num_workers: int
    resume: bool

    def accumulation_steps(self, world_size: int) -> int:
        """Micro-batches per optimiser step: ``global_batch`` over ``batch_size`` × ``world_size``, or 1 when
        ``global_batch`` is null (the global batch is then whatever the processes hold); ConfigError when they do
        not divide."""
        goal, batch = self.global_batch, self.batch_size
        if goal is None:
            return 1
        if isinstance(goal, bool) or not isinstance(goal, int) or goal < 1:
            raise ConfigError(f"train.global_batch={goal!r} must be null or a positive integer")
        if goal % (batch * world_size) == 0:
            return goal // (batch * world_size)
        if goal % world_size:
            hint = f"run on a number of processes that divides {goal}"
        else:  # the largest per-process batch up to the one asked for that divides each process's share
            share = goal // world_size
            hint = f"e.g. train.batch_size={max(b for b in range(1, min(batch, share) + 1) if share % b == 0)}"
        raise ConfigError(f"train.global_batch={goal} is not a multiple of train.batch_size={batch} × {world_size} "
                          f"process(es) = {batch * world_size}; {hint}")

    def global_batch_for(self, world_size: int) -> int:
        """Images per optimiser step on ``world_size`` processes."""
        return self.batch_size * world_size * self.accumulation_steps(world_size)


@dataclass(frozen=True)
class WandbSpec:
    """``wandb.*``: optional Weights & Biases logging."""

    enabled: bool = False
    mode: str = "offline"
    project: str = "ablate"
    entity: str | None = None
    init_timeout_s: float | None = None

    @property
    def on(self) -> bool:
        return bool(self.enabled) and self.mode != "disabled"


@dataclass(frozen=True)
class RunName:
    """What a run's design is called: its Table 5 row, group and variant (ablate.config.design)."""

    row: str | None  # the Table 5 row id, when the design is one of the paper's
    group: str
    variant: str
    is_baseline: bool


@dataclass(frozen=True)
class RunSpec:
    """One run: the model, data and recipe, the block design, the seed, and the names and overrides that say it."""

    model: ModelSpec
    data: DataSpec
    train: TrainSpec
    wandb: WandbSpec
    mixers: tuple[str, ...]  # each stage's token mixer (``stage_mixers``, else ``mixer`` everywhere)
    pool_size: int
    norm: str
    act: str
    residual: bool
    channel_mlp: bool
    seed: int
    name: RunName
    overrides: tuple[str, ...] = ()  # as given on the command line or by the sweep
    free_overrides: tuple[str, ...] = ()  # the overrides that are settings: neither design, seed nor sweep row
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # the resolved config, as plain data

    def result_config(self, world_size: int) -> dict[str, Any]:
        """The resolved config minus NOT_RESULT_KEYS: what two runs must share to be the same run.

        The recipe's batch is the global one: ``train.global_batch`` holds it, resolved, and the per-process
        ``train.batch_size`` is left out, so one GPU with accumulation and eight without run the same config.
        """
        config = copy.deepcopy(self.config)
        config["train"]["global_batch"] = self.train.global_batch_for(world_size)
        config["train"].pop("batch_size")
        for key in NOT_RESULT_KEYS:
            *parents, leaf = key.split(".")
            node = config
            for parent in parents:
                node = node.get(parent, {})
            node.pop(leaf, None)
        return config
