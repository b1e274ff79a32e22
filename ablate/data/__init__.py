"""Data sets by name: each builder turns a run's ``spec.data`` (and the recipe in ``spec.train``) into a DataBundle,
and each counts its own training images for the checks before a run (``TRAIN_IMAGES``)."""
from __future__ import annotations

import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads with the data sets, not with the package: the config checks list files without it
    from torch.utils.data import Dataset

from ablate.registry import Registry
from ablate.specs import RunSpec

DATASETS = Registry("data")
# name → (spec, at_most) → the data set's training images, counted up to at_most without loading them (None:
# unknown before loading); ConfigError when there are none to count.
TRAIN_IMAGES = Registry("data")


@dataclass
class DataBundle:
    train: Dataset
    val: Dataset
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)  # goes into the run record (e.g. skipped files)
    # In-memory sets: cfg → the same images as uint8 pixel splits (ablate/data/store.py), for data.loader=batched.
    pixels: Callable[[RunSpec], tuple[Dataset, Dataset]] | None = None


def build_data(cfg: RunSpec) -> DataBundle:
    """The train/val sets that ``cfg.data.name`` names; raises ConfigError/FileNotFoundError early."""
    _register_builtin()
    return DATASETS.get(cfg.data.name)(cfg)


def train_images(spec: RunSpec, at_most: int) -> int | None:
    """How many training images ``spec.data`` holds (up to ``at_most``), as the data set itself counts them."""
    _register_builtin()
    name = spec.data.name
    return TRAIN_IMAGES.get(name)(spec, at_most) if name in TRAIN_IMAGES.names() else None


def _register_builtin() -> None:
    # Every module of this package, imported on first use: a new data set is one module (and its YAML), and
    # `import ablate` stays cheap.
    for module in pkgutil.iter_modules(__path__):
        import_module(f"{__name__}.{module.name}")
