"""ablate: an ablation-study harness for MetaFormer vision models."""
from importlib import import_module
from typing import Any

# Loaded on first use, so that `python -m ablate.report` need not import torch, timm and Hydra.
_API = {"compose": "ablate.config", "ConfigError": "ablate.errors", "build_model": "ablate.config.model",
        "model_stats": "ablate.model"}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'ablate' has no attribute {name!r}")
    return getattr(import_module(_API[name]), name)
