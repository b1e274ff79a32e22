"""The embedded default: scikit-learn's 8×8 digits, upscaled to RGB; ships with scikit-learn, no download."""
import math

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from ablate.data import DATASETS, TRAIN_IMAGES, DataBundle
from ablate.data.store import in_memory_pixels
from ablate.specs import RunSpec

SPLIT_SEED = 0  # fixed, so every run and every seed sees the same train/val split
IMAGES = 1797  # load_digits


@TRAIN_IMAGES.register("digits")
def train_images(cfg: RunSpec, at_most: int) -> int:
    return IMAGES - math.ceil(cfg.data.val_fraction * IMAGES)  # train_test_split rounds the test share up


@DATASETS.register("digits")
def digits(cfg: RunSpec) -> DataBundle:
    images, labels = load_digits(return_X_y=True)
    train_idx, val_idx = train_test_split(range(len(labels)), test_size=cfg.data.val_fraction,
                                          random_state=SPLIT_SEED, stratify=labels)
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
