"""The embedded default: scikit-learn's 8×8 digits, upscaled to RGB; ships with scikit-learn, no download."""
import math
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from ablate.data import DATASETS, TRAIN_IMAGES, DataBundle
from ablate.data.store import in_memory_pixels
from ablate.files import cached
from ablate.specs import RunSpec

SPLIT_SEED = 0  # fixed, so every run and every seed sees the same train/val split
IMAGES = 1797  # load_digits


@TRAIN_IMAGES.register("digits")
def train_images(cfg: RunSpec, at_most: int) -> int:
    return IMAGES - math.ceil(cfg.data.val_fraction * IMAGES)  # train_test_split rounds the test share up


def digits_split(val_fraction: float) -> dict[str, np.ndarray]:
    """scikit-learn's digits (``images``: 0-16, 64 a row; ``labels``) and their stratified ``train`` and ``val``
    indices. Importing scikit-learn takes 1.5-2 s, about a third of a small run's start-up, so the arrays are kept in
    the user's cache folder, named by scikit-learn's version and the split."""
    def make() -> dict[str, np.ndarray]:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        images, labels = load_digits(return_X_y=True)
        train, val = train_test_split(np.arange(len(labels)), test_size=val_fraction, random_state=SPLIT_SEED,
                                      stratify=labels)
        return {"images": images.astype(np.uint8), "labels": labels, "train": train, "val": val}

    def read(path: Path) -> dict[str, np.ndarray]:
        with np.load(path, allow_pickle=False) as kept:
            return {key: kept[key] for key in ("images", "labels", "train", "val")}

    def write(split: dict[str, np.ndarray], path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, **split)

    version = metadata.version("scikit-learn")
    return cached(f"digits-sklearn{version}-val{val_fraction!r}-seed{SPLIT_SEED}.npz", make, read, write)


@DATASETS.register("digits")
def digits(cfg: RunSpec) -> DataBundle:
    split = digits_split(cfg.data.val_fraction)
    images, labels, train_idx, val_idx = (split[key] for key in ("images", "labels", "train", "val"))
    images = images.astype(np.float64)  # load_digits' dtype: the same arithmetic below
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    x = F.interpolate(x, size=cfg.data.img_size, mode="bilinear", align_corners=False)
    train_x = x[train_idx]
    x = ((x - train_x.mean()) / train_x.std()).expand(-1, 3, -1, -1).contiguous()
    y = torch.tensor(labels, dtype=torch.long)
    pixels = torch.tensor(images * (255 / 16), dtype=torch.float32).round().to(torch.uint8).reshape(-1, 8, 8)

    def as_pixels(cfg: RunSpec):  # the 8×8 images themselves: the recipe's crop does the upscaling
        return in_memory_pixels(cfg, (pixels[train_idx], y[train_idx]), (pixels[val_idx], y[val_idx]))

    return DataBundle(TensorDataset(x[train_idx], y[train_idx]), TensorDataset(x[val_idx], y[val_idx]), 10,
                      {"train_images": len(train_idx), "val_images": len(val_idx)}, as_pixels)
