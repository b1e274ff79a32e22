"""Config → MetaFormer: the only place that reads the model's config keys."""
from functools import partial

from omegaconf import DictConfig, ListConfig

from ablate.errors import ConfigError
from ablate.model.layers import ACTS, NORMS
from ablate.model.metaformer import MetaFormer
from ablate.model.mixers import MIXERS, NEEDS_POSITION


def stage_mixer_names(cfg: DictConfig) -> list[str]:
    """The mixer of each stage: ``stage_mixers`` when set, else ``mixer`` everywhere."""
    num_stages = len(cfg.model.depths)
    names = cfg.get("stage_mixers")
    if names is None:
        return [cfg.mixer.name] * num_stages
    if not isinstance(names, (list, ListConfig)) or len(names) != num_stages:
        raise ConfigError(f"stage_mixers={names!r} must be null or a list of {num_stages} mixer names, "
                          f"one per stage, from: {', '.join(MIXERS.names())}")
    return [str(n) for n in names]


def check_model_config(cfg: DictConfig) -> None:
    """Raise ConfigError, naming the key and the allowed values, for any bad model setting."""
    for name in stage_mixer_names(cfg) + [cfg.mixer.name]:
        MIXERS.get(name)
    NORMS.get(cfg.norm.name)
    ACTS.get(cfg.act.name)
    pool = cfg.pool_size
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1 or pool % 2 == 0:
        raise ConfigError(f"pool_size={pool!r} must be an odd positive integer (the paper tries 3, 5, 7, 9)")
    for key in ("residual", "channel_mlp"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key}={cfg[key]!r} must be true or false")
    size = cfg.data.img_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 32:
        raise ConfigError(f"data.img_size={size!r} must be an integer ≥ 32 (four stages downsample by 32)")


def build_model(cfg: DictConfig, num_classes: int) -> MetaFormer:
    """The MetaFormer this config describes; token grids follow ``data.img_size``."""
    check_model_config(cfg)
    names = stage_mixer_names(cfg)
    first_attention = next((i for i, n in enumerate(names) if n in NEEDS_POSITION), None)
    m = cfg.model
    return MetaFormer(
        num_classes=num_classes,
        depths=list(m.depths),
        dims=list(m.dims),
        mixers=[partial(MIXERS.get(n), pool_size=cfg.pool_size) for n in names],
        norm=NORMS.get(cfg.norm.name),
        act=ACTS.get(cfg.act.name),
        img_size=cfg.data.img_size,
        mlp_ratio=m.mlp_ratio,
        drop_path=m.drop_path,
        layer_scale_init=m.layer_scale_init,
        residual=cfg.residual,
        channel_mlp=cfg.channel_mlp,
        position_embedding=[i == first_attention for i in range(len(names))],
    )
