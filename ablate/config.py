"""Composing and checking configs: the same config the CLI builds, and one readable line when it is wrong."""
from collections.abc import Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from ablate.errors import ConfigError
from ablate.model import check_model_config

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"
GROUPS = ("model", "mixer", "norm", "act", "data", "train")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_overrides(overrides: Sequence[str]) -> None:
    """Reject an unknown option of a config group (also inside a sweep's comma list) before Hydra runs."""
    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in GROUPS or value.startswith(("glob(", "choice(", "range(")):
            continue
        allowed = group_options(key)
        for option in value.split(","):
            if option not in allowed:
                raise ConfigError(f"{key}={option!r} is not one of: {', '.join(allowed)}")


def check_config(cfg: DictConfig) -> None:
    """Every check that can run before data is read or a model is built."""
    check_model_config(cfg)
    t = cfg.train
    for key in ("epochs", "batch_size"):
        value = t[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"train.{key}={value!r} must be a positive integer")
    if t.lr is None and t.lr_per_1024 is None:
        raise ConfigError("train.lr=null needs train.lr_per_1024 to scale the learning rate from")
    if OmegaConf.is_missing(cfg.data, "root"):
        raise ConfigError(f"data={cfg.data.name} needs data.root=PATH (see conf/data/{cfg.data.name}.yaml)")
    root = cfg.data.root
    if root is not None and not Path(root).expanduser().exists():
        raise ConfigError(f"data.root={root}: no such directory")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ConfigError(f"seed={cfg.seed!r} must be an integer")


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python -m ablate OVERRIDES...`` would run, checked."""
    overrides = list(overrides)
    check_overrides(overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    check_config(cfg)
    return cfg
