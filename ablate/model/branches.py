"""What each branch of a MetaFormer's blocks has learned: per stage, the mean |LayerScale| of the token-mixer and
channel-MLP branches, and how much each adds to the residual stream on a given batch.

A branch's update is the tensor a block adds to its stream: the branch's output after LayerScale (drop path is off
in eval mode). Its size is the L2 norm over (C, H, W) of one image's update, averaged over the batch's images and
over the stage's blocks. Without residual connections the update is the whole stream; without a channel MLP the
mixer is the block's only branch; without LayerScale the |LayerScale| columns are NaN.
"""
import math
from typing import Any

import torch
from timm.models.metaformer import Scale
from torch import nn

from ablate.model.metaformer import MetaFormerBlock

# Each block's modules whose output is its branch's update (LayerScale, or the Identity standing for it).
UPDATE_MODULES = {"mixer": "layer_scale1", "mlp": "layer_scale2"}
COLUMNS = ["stage", "grid", "mixer_ls", "mlp_ls", "mixer_update", "mlp_update", "mixer_share"]


def _mean_abs_scale(blocks: list[MetaFormerBlock], branch: str) -> float:
    """Mean |γ| over the channels of every block's LayerScale (timm's ``Scale``) on ``branch``; NaN where there
    is none."""
    scales = [module.scale for module in (getattr(b, UPDATE_MODULES[branch], None) for b in blocks)
              if isinstance(module, Scale)]
    return torch.cat([s.detach().abs().flatten().float() for s in scales]).mean().item() if scales else math.nan


@torch.no_grad()
def measure_branches(model: nn.Module, x: torch.Tensor) -> list[dict[str, Any]]:
    """One row per stage of ``model`` (a MetaFormer), with COLUMNS: ``grid`` is the stage's token grid (``"8x8"``),
    ``*_ls`` the mean |LayerScale|, ``*_update`` the mean norm of the branch's update on ``x``, ``mixer_share`` the
    mixer's part of the stage's summed updates, mixer / (mixer + MLP): 1 without a channel MLP, NaN when both are 0.

    The model is evaluated in eval mode and left in the mode it was in."""
    stages = [[b for b in stage.blocks if isinstance(b, MetaFormerBlock)] for stage in model.stages]
    sizes: dict[tuple[int, str], list[float]] = {}
    grids: dict[int, str] = {}
    handles = []

    def hook(stage: int, branch: str):
        def record(module: nn.Module, args: tuple[torch.Tensor], out: torch.Tensor) -> None:
            grids[stage] = "x".join(map(str, out.shape[-2:]))
            sizes.setdefault((stage, branch), []).append(out.float().flatten(1).norm(dim=1).mean().item())
        return record

    for i, blocks in enumerate(stages):
        for block in blocks:
            for branch, name in UPDATE_MODULES.items():
                if hasattr(block, name):  # no channel MLP: no layer_scale2
                    handles.append(getattr(block, name).register_forward_hook(hook(i, branch)))
    training = model.training
    try:
        model.eval()
        model(x)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    rows = []
    for i, blocks in enumerate(stages):
        mixer, mlp = (sizes.get((i, branch), []) for branch in UPDATE_MODULES)
        total = sum(mixer) + sum(mlp)
        rows.append({"stage": i + 1, "grid": grids.get(i, ""),
                     "mixer_ls": _mean_abs_scale(blocks, "mixer"), "mlp_ls": _mean_abs_scale(blocks, "mlp"),
                     "mixer_update": sum(mixer) / len(mixer) if mixer else math.nan,
                     "mlp_update": sum(mlp) / len(mlp) if mlp else math.nan,
                     "mixer_share": sum(mixer) / total if total > 0 else math.nan})
    return rows
