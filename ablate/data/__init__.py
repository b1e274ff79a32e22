"""Data sets by name: each builder turns ``cfg.data`` (and the recipe in ``cfg.train``) into a DataBundle."""
from __future__ import annotations

import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

if TYPE_CHECKING:  # torch loads with the data sets, not with the package: the config checks list files without it
    from torch.utils.data import Dataset

from ablate.registry import Registry

DATASETS = Registry("data")


@dataclass
class DataBundle:
    train: Dataset
    val: Dataset
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)  # goes into the run record (e.g. skipped files)
    # In-memory sets: cfg → the same images as uint8 pixel splits (ablate/data/store.py), for data.loader=batched.
    pixels: Callable[[DictConfig], tuple[Dataset, Dataset]] | None = None


def build_data(cfg: DictConfig) -> DataBundle:
    """The train/val sets that ``cfg.data.name`` names; raises ConfigError/FileNotFoundError early."""
    _register_builtin()
    return DATASETS.get(cfg.data.name)(cfg)


def _register_builtin() -> None:
    # Every module of this package, imported on first use: a new data set is one module (and its YAML), and
    # `import ablate` stays cheap.
    for module in pkgutil.iter_modules(__path__):
        import_module(f"{__name__}.{module.name}")
