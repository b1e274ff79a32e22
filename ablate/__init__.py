"""ablate: an ablation-study harness for MetaFormer vision models."""
from ablate.config import compose
from ablate.errors import ConfigError
from ablate.model import build_model, model_stats

__all__ = ["ConfigError", "build_model", "compose", "model_stats"]
