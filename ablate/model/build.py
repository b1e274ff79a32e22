"""Config → MetaFormer: the only place that reads the model's config keys."""
from functools import partial

from omegaconf import DictConfig
from torch import nn

from ablate.config import check_model_config, stage_mixer_names
from ablate.model.layers import ACTS, NORMS
from ablate.model.metaformer import MetaFormer, stage_grids
from ablate.model.mixers import MIXERS


def _mixer(cls: type[nn.Module], dim: int, **kwargs) -> nn.Module:
    mixer = cls(dim, **kwargs)
    return mixer.requires_grad_(False) if cls.frozen else mixer


def mixer_factories(cfg: DictConfig) -> list[partial]:
    """One ``factory(dim)`` per stage, passing each mixer the arguments its traits ask for."""
    names = stage_mixer_names(cfg)
    factories = []
    for name, grid in zip(names, stage_grids(cfg.data.img_size, len(names))):
        cls = MIXERS.get(name)
        kwargs = {"pool_size": cfg.pool_size} if cls.uses_pool_size else {}
        if cls.needs_grid:
            kwargs["grid"] = grid
        factories.append(partial(_mixer, cls, **kwargs))
    return factories


def build_model(cfg: DictConfig, num_classes: int) -> MetaFormer:
    """The MetaFormer this config describes; token grids follow ``data.img_size``."""
    check_model_config(cfg)
    classes = [MIXERS.get(n) for n in stage_mixer_names(cfg)]
    first_position = next((i for i, cls in enumerate(classes) if cls.needs_position), None)
    m = cfg.model
    return MetaFormer(
        num_classes=num_classes,
        depths=list(m.depths),
        dims=list(m.dims),
        mixers=mixer_factories(cfg),
        norm=NORMS.get(cfg.norm.name),
        act=ACTS.get(cfg.act.name),
        img_size=cfg.data.img_size,
        mlp_ratio=m.mlp_ratio,
        drop_path=m.drop_path,
        layer_scale_init=m.layer_scale_init,
        residual=cfg.residual,
        channel_mlp=cfg.channel_mlp,
        position_embedding=[i == first_position for i in range(len(classes))],
    )
