"""MetaFormer built from named parts."""
from ablate.model.build import build_model
from ablate.model.layers import ACTS, NORMS, fast_norms
from ablate.model.metaformer import MetaFormer
from ablate.model.mixers import MIXERS
from ablate.model.pooling import set_pooling
from ablate.model.stats import model_stats

__all__ = ["ACTS", "MIXERS", "NORMS", "MetaFormer", "build_model", "fast_norms", "model_stats", "set_pooling"]
