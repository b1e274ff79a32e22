"""The paper's image transforms (PoolFormer's timm train.py recipe), built by timm so they match it exactly.

Train: RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3), hflip 0.5, RandAugment (``train.randaug``), colour jitter
(``train.color_jitter``; timm drops it when RandAugment is on, as the paper's runs did), random erasing
(``train.reprob``, per-pixel noise), ImageNet mean/std. Eval: bicubic resize to int(img_size / crop_pct), centre crop.
The DALI path (ablate/dali_transforms.py) reads the same constants, so both loaders follow one recipe; it erases
with ``erase_batch``, timm's random erasing for a whole batch on its device.
"""
import math
from collections.abc import Callable

import torch
from omegaconf import DictConfig
from PIL import Image, ImageOps
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform

SCALE = (0.08, 1.0)      # random-resized crop: fraction of the image's area
RATIO = (3 / 4, 4 / 3)   # random-resized crop: aspect ratio range
HFLIP = 0.5
MEAN, STD = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


def train_interpolation(cfg: DictConfig) -> str:
    # The paper trains with --train-interpolation random; the short recipe (no RandAugment) keeps eval's bicubic.
    return "random" if cfg.train.randaug else "bicubic"


def eval_resize(cfg: DictConfig) -> int:
    """The shorter side before the centre crop, as timm computes it from ``crop_pct``."""
    return int(cfg.data.img_size / cfg.model.crop_pct)


def train_transform(cfg: DictConfig) -> Callable:
    t = cfg.train
    transform = create_transform(
        cfg.data.img_size, is_training=True, scale=SCALE, ratio=RATIO, hflip=HFLIP,
        auto_augment=t.randaug or None,
        color_jitter=t.color_jitter or None,  # timm would add a no-op ColorJitter for 0
        re_prob=t.reprob, re_mode="pixel", re_count=1,
        interpolation=train_interpolation(cfg), mean=MEAN, std=STD)
    for op in (op for step in transform.transforms for op in getattr(step, "ops", ())):
        if op.name.startswith("Posterize"):
            op.aug_fn = posterize
    return transform


def posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, which asks for 0 bits (a black image) at magnitude 10: Pillow 13 raises on 0 bits."""
    if bits_to_keep >= 8:
        return img
    return ImageOps.posterize(img, bits_to_keep) if bits_to_keep > 0 else Image.new(img.mode, img.size)


def eval_transform(cfg: DictConfig) -> Callable:
    return create_transform(cfg.data.img_size, is_training=False, crop_pct=cfg.model.crop_pct,
                            interpolation="bicubic", mean=MEAN, std=STD)


def erase_batch(x: torch.Tensor, prob: float, tries: int = 10) -> torch.Tensor:
    """timm's RandomErasing(prob, mode="pixel", max_count=1) on a whole batch at once, on its device.

    Per image, with probability ``prob``: up to ``tries`` draws of an area (2%-33% of the image) and a log-uniform
    aspect ratio (0.3-3.3); the first that fits is filled with N(0, 1) noise at a uniform position.
    """
    n, _, h, w = x.shape
    area = torch.empty(n, tries, device=x.device).uniform_(0.02, 1 / 3) * (h * w)
    aspect = torch.empty(n, tries, device=x.device).uniform_(math.log(0.3), math.log(1 / 0.3)).exp()
    eh, ew = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
    fits = (eh < h) & (ew < w)
    first = fits.int().argmax(1, keepdim=True)  # the first try that fits, as timm's loop stops there
    eh, ew = eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1)
    erase = fits.any(1) & (torch.rand(n, device=x.device) < prob)
    top = (torch.rand(n, device=x.device) * (h - eh + 1)).floor()
    left = (torch.rand(n, device=x.device) * (w - ew + 1)).floor()
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None]) &
              (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None]) & erase[:, None, None])
    return torch.where(inside[:, None], torch.randn_like(x), x)
