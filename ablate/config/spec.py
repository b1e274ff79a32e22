"""Config → RunSpec: the one place where a composed, checked Hydra config becomes typed values (ablate/specs.py).

Everything after this edge (run/, data/, model/) reads the spec, never the config object.
"""
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from ablate.config.checks import check_config, stage_mixer_names
from ablate.config.design import free_overrides, name_run
from ablate.errors import ConfigError
from ablate.specs import DataSpec, ModelSpec, RunSpec, TrainSpec, WandbSpec

T = TypeVar("T")


def typed(kind: type[T], node: Mapping[str, Any]) -> T:
    """``kind`` from a config node's plain values; lists become tuples, so the spec stays frozen all through."""
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in node.items()})


def to_spec(cfg: DictConfig, overrides: Sequence[str] = ()) -> RunSpec:
    """The RunSpec of ``cfg`` (checked first), named by its design and carrying the ``overrides`` that made it."""
    check_config(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    return RunSpec(model=typed(ModelSpec, config["model"]), data=typed(DataSpec, config["data"]),
                   train=typed(TrainSpec, config["train"]), wandb=typed(WandbSpec, config.get("wandb", {})),
                   mixers=tuple(stage_mixer_names(cfg)), pool_size=cfg.pool_size, norm=cfg.norm.name,
                   act=cfg.act.name, residual=cfg.residual, channel_mlp=cfg.channel_mlp, seed=cfg.seed,
                   name=name_run(cfg), overrides=tuple(overrides), free_overrides=tuple(free_overrides(overrides)),
                   config=config)


def run_spec(cfg: DictConfig, overrides: Sequence[str] = ()) -> RunSpec:
    """``to_spec``, and what only a run needs: ``train.batch_size`` against the training images, which the data set
    counts without decoding (a folder's files only until there are enough), so a run that cannot form one batch, or
    whose data root holds no training images at all, stops before anything is written."""
    spec = to_spec(cfg, overrides)
    from ablate.data import train_images  # the data sets, with torch: after the checks that need neither
    batch = spec.train.batch_size
    n = train_images(spec, at_most=batch)
    if n is not None and n < batch:
        raise ConfigError(f"train.batch_size={batch} exceeds the {n} training images of data={spec.data.name}; "
                          f"lower it")
    return spec
