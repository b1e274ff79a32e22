"""RunSpec → MetaFormer: a run's model from its typed spec (ablate/specs.py), and the memory a training step needs."""
from typing import Any

from ablate.model.metaformer import MetaFormer, stage_grids
from ablate.model.mixers import MIXERS
from ablate.specs import RunSpec


def model_args(spec: RunSpec) -> dict[str, Any]:
    """``MetaFormer.from_names``'s arguments for this run; token grids follow ``data.img_size``."""
    m = spec.model
    return {"depths": list(m.depths), "dims": list(m.dims), "mixers": list(spec.mixers), "pool_size": spec.pool_size,
            "norm": spec.norm, "act": spec.act, "img_size": spec.data.img_size, "mlp_ratio": m.mlp_ratio,
            "drop_path": m.drop_path, "layer_scale_init": m.layer_scale_init, "residual": spec.residual,
            "channel_mlp": spec.channel_mlp}


def build_model(spec: RunSpec, num_classes: int) -> MetaFormer:
    """The MetaFormer this run describes."""
    return MetaFormer.from_names(**model_args(spec), num_classes=num_classes)


def min_train_bytes(spec: RunSpec, hidden_bytes: int) -> int:
    """A lower bound on the memory one training step of ``spec`` needs: activations kept for the backward pass
    (per block at least the two sub-blocks' inputs and the MLP's hidden map before and after its activation)
    and the token-grid matrices of grid-bound mixers. The residual stream, the matrices and the norms' outputs
    stay fp32 under bf16 autocast (4 bytes); only the MLP's hidden maps take ``hidden_bytes`` (2 under bf16
    autocast, 4 in fp32). Real steps take about twice as much (tests/test_gpu.py checks that it is a bound)."""
    m = spec.model
    hidden = 2 * m.mlp_ratio if spec.channel_mlp else 0
    total = 0
    grids = stage_grids(spec.data.img_size, len(spec.mixers))
    for depth, dim, (h, w), name in zip(m.depths, m.dims, grids, spec.mixers):
        total += spec.train.batch_size * depth * (2 * 4 + hidden * hidden_bytes) * dim * h * w
        if MIXERS.get(name).needs_grid:
            total += depth * (h * w) ** 2 * 4
    return total
