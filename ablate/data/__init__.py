"""Data sets by name: each builder turns ``cfg.data`` (and the recipe in ``cfg.train``) into a DataBundle."""
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig
from torch.utils.data import Dataset

from ablate.model.registry import Registry

DATASETS = Registry("data")


@dataclass
class DataBundle:
    train: Dataset
    val: Dataset
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)  # goes into the run record (e.g. skipped files)


def build_data(cfg: DictConfig) -> DataBundle:
    """The train/val sets that ``cfg.data.name`` names; raises ConfigError/FileNotFoundError early."""
    _register_builtin()
    return DATASETS.get(cfg.data.name)(cfg)


def _register_builtin() -> None:
    # Imported lazily so that `import ablate` stays cheap and optional readers load only when used.
    from ablate.data import digits, fashion_mnist, folder, imagenet, imagenet100  # noqa: F401
