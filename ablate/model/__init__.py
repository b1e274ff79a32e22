"""MetaFormer built from named parts."""
from ablate.model.build import build_model
from ablate.model.layers import ACTS, NORMS
from ablate.model.metaformer import MetaFormer
from ablate.model.mixers import MIXERS
from ablate.model.stats import model_stats

__all__ = ["ACTS", "MIXERS", "NORMS", "MetaFormer", "build_model", "model_stats"]
