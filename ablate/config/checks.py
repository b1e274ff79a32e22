"""Composing and checking configs: the same config the CLI builds, and one readable line when it is wrong."""
import difflib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from ablate.data.dali import dali_installed
from ablate.errors import ConfigError
from ablate.specs import TrainSpec

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"  # the repo's conf/, linked into the package
GROUPS = ("model", "mixer", "norm", "act", "data", "train")
LOADERS = ("auto", "batched", "dali", "torch")
MAX_SEED = 2**32 - 1


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _leaves(node: Mapping, prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


@cache
def known_keys() -> frozenset[str]:
    """Every key ablate's config defines: config.yaml's own, and ``group.key`` for every option of every group."""
    top = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"))
    keys = {k for k in _leaves(top) if not k.startswith(("defaults", "hydra."))}
    for group in GROUPS:
        for path in (CONF_DIR / group).glob("*.yaml"):
            keys |= {f"{group}.{k}" for k in _leaves(OmegaConf.to_container(OmegaConf.load(path)))
                     if k != "defaults"}
    return frozenset(keys)


def _free_form(key: str) -> bool:
    """Keys ablate does not define but passes on: Hydra's own (e.g. hydra.launcher.*) and the sweep files."""
    return key == "sweep" or key.startswith(("hydra.", "hydra/", "sweep/"))


def _check_key(override: str, key: str) -> None:
    bare = key.lstrip("+~")
    if _free_form(bare) or bare in GROUPS:
        return
    if bare not in known_keys():
        near = difflib.get_close_matches(bare, known_keys(), n=1)
        hint = f"; did you mean {near[0]}?" if near else "; the keys are those of conf/"
        raise ConfigError(f"{override}: {bare} is not a key of ablate's config{hint}")


def check_overrides(overrides: Sequence[str]) -> None:
    """Reject unknown keys (also with +) and unknown options of a config group (also inside a sweep's comma list)
    before Hydra runs."""
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep:
            continue
        _check_key(override, key)
        key = key.lstrip("+~")
        if key not in GROUPS or value.startswith(("glob(", "choice(", "range(")):
            continue
        for option in value.split(","):
            _check_option(key, option)


def stage_mixer_names(cfg: DictConfig) -> list[str]:
    """The mixer of each stage: ``stage_mixers`` when set, else ``mixer`` everywhere."""
    num_stages = len(cfg.model.depths)
    names = cfg.get("stage_mixers")
    if names is None:
        return [cfg.mixer.name] * num_stages
    if not isinstance(names, (list, ListConfig)) or len(names) != num_stages:
        raise ConfigError(f"stage_mixers={names!r} must be null or a list of {num_stages} mixer names, "
                          f"one per stage, from: {', '.join(group_options('mixer'))}")
    return [str(n) for n in names]


def _check_option(group: str, name: str) -> None:
    allowed = group_options(group)
    if name not in allowed:
        raise ConfigError(f"{group}={name!r} is not one of: {', '.join(allowed)}")


def check_model_config(cfg: DictConfig) -> None:
    """The model's keys, checked against conf/ alone, so that checking imports no torch."""
    for name in stage_mixer_names(cfg):
        _check_option("mixer", name)
    pool = cfg.pool_size
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1 or pool % 2 == 0:
        raise ConfigError(f"pool_size={pool!r} must be an odd positive integer (the paper tries 3, 5, 7, 9)")
    for key in ("residual", "channel_mlp"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key}={cfg[key]!r} must be true or false")
    size = cfg.data.img_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 32:
        raise ConfigError(f"data.img_size={size!r} must be an integer ≥ 32 (four stages downsample by 32)")


def _check_number(node: DictConfig, key: str, positive: bool, at_most: float | None = None) -> None:
    """``train.<key>`` is null or a finite number, > 0 (``positive``) or ≥ 0, and ≤ ``at_most``."""
    value = node[key]
    if value is None:
        return
    bound = "> 0" if positive else "≥ 0"
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value > 0 if positive else value >= 0) and (at_most is None or value <= at_most))
    if not ok:
        limit = f" and ≤ {at_most:g}" if at_most is not None else ""
        raise ConfigError(f"train.{key}={value!r} must be a finite number {bound}{limit}")


def check_config(cfg: DictConfig) -> None:
    """Every check that can run before data is read or a model is built."""
    check_model_config(cfg)
    t = cfg.train
    for key in ("epochs", "batch_size", "check_every"):
        value = t[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"train.{key}={value!r} must be a positive integer")
    if t.lr is None and t.lr_per_1024 is None:
        raise ConfigError("train.lr=null needs train.lr_per_1024 to scale the learning rate from")
    for key in ("lr", "lr_per_1024"):
        _check_number(t, key, positive=True)
    for key in ("weight_decay", "warmup_lr", "min_lr", "mixup", "cutmix", "grad_clip"):
        _check_number(t, key, positive=False)
    for key in ("label_smoothing", "reprob", "mixup_switch_prob", "ema_decay"):
        _check_number(t, key, positive=False, at_most=1.0)
    for key in ("warmup_epochs", "cooldown_epochs"):
        _check_number(t, key, positive=False)
    if OmegaConf.is_missing(cfg.data, "root"):
        raise ConfigError(f"data={cfg.data.name} needs data.root=PATH (see conf/data/{cfg.data.name}.yaml)")
    root = cfg.data.root
    if root is not None and not Path(root).expanduser().exists():
        raise ConfigError(f"data.root={root}: no such directory")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"seed={cfg.seed!r} must be an integer in 0..{MAX_SEED} (2**32-1, numpy's range)")
    check_loader(cfg)
    # torchrun's process count, as training sees it
    TrainSpec(**OmegaConf.to_container(t, resolve=True)).accumulation_steps(int(os.environ.get("WORLD_SIZE", "1")))


def check_loader(cfg: DictConfig) -> None:
    """``data.loader``: a known name, and DALI installed when it is asked for by name."""
    loader = cfg.data.get("loader", "auto")
    if loader not in LOADERS:
        raise ConfigError(f"data.loader={loader!r} is not one of: {', '.join(LOADERS)}")
    if loader == "dali" and not dali_installed():
        raise ConfigError("data.loader=dali needs NVIDIA DALI: pip install -e '.[dali]' "
                          "(the CUDA 13 wheel; use nvidia-dali-cuda120 with a CUDA 12 torch), or data.loader=auto")


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python -m ablate OVERRIDES...`` would run, checked."""
    overrides = list(overrides)
    check_overrides(overrides)
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app, whose search path already holds conf/
        cfg = hydra_compose(config_name="config", overrides=overrides)
    else:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    check_config(cfg)
    return cfg
