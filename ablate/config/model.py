"""Config → MetaFormer: the one place that reads the model's config keys and turns them into plain arguments."""
from typing import Any

from omegaconf import DictConfig

from ablate.config.checks import check_model_config, stage_mixer_names
from ablate.model import MIXERS, MetaFormer, stage_grids


def model_args(cfg: DictConfig) -> dict[str, Any]:
    """``MetaFormer.from_names``'s arguments for this config; token grids follow ``data.img_size``."""
    check_model_config(cfg)
    m = cfg.model
    return {"depths": list(m.depths), "dims": list(m.dims), "mixers": stage_mixer_names(cfg),
            "pool_size": cfg.pool_size, "norm": cfg.norm.name, "act": cfg.act.name, "img_size": cfg.data.img_size,
            "mlp_ratio": m.mlp_ratio, "drop_path": m.drop_path, "layer_scale_init": m.layer_scale_init,
            "residual": cfg.residual, "channel_mlp": cfg.channel_mlp}


def build_model(cfg: DictConfig, num_classes: int) -> MetaFormer:
    """The MetaFormer this config describes."""
    return MetaFormer.from_names(**model_args(cfg), num_classes=num_classes)


def min_train_bytes(cfg: DictConfig, hidden_bytes: int) -> int:
    """A lower bound on the memory one training step of ``cfg`` needs: activations kept for the backward pass
    (per block at least the two sub-blocks' inputs and the MLP's hidden map before and after its activation)
    and the token-grid matrices of grid-bound mixers. The residual stream, the matrices and the norms' outputs
    stay fp32 under bf16 autocast (4 bytes); only the MLP's hidden maps take ``hidden_bytes`` (2 under bf16
    autocast, 4 in fp32). Real steps take about twice as much (tests/test_gpu.py checks that it is a bound)."""
    m = cfg.model
    hidden = 2 * m.mlp_ratio if cfg.channel_mlp else 0
    names = stage_mixer_names(cfg)
    total = 0
    for depth, dim, (h, w), name in zip(m.depths, m.dims, stage_grids(cfg.data.img_size, len(names)), names):
        total += cfg.train.batch_size * depth * (2 * 4 + hidden * hidden_bytes) * dim * h * w
        if MIXERS.get(name).needs_grid:
            total += depth * (h * w) ** 2 * 4
    return total
