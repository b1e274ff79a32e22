"""MetaFormer built from named parts, with plain typed arguments: no Hydra, no config.

    from ablate.model import MetaFormer
    model = MetaFormer.from_names(depths=[2, 2, 6, 2], dims=[64, 128, 320, 512], norm="bn")  # Table 5's BN row
"""
from ablate.model.layers import ACTS, NORMS, fast_norms
from ablate.model.metaformer import MetaFormer, stage_grids
from ablate.model.mixers import MIXERS
from ablate.model.pooling import set_pooling
from ablate.model.stats import model_stats

__all__ = ["ACTS", "MIXERS", "NORMS", "MetaFormer", "fast_norms", "model_stats", "set_pooling", "stage_grids"]
