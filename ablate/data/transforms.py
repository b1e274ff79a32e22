"""The paper's image transforms (PoolFormer's timm train.py recipe), built by timm so they match it exactly.

Train: RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3), hflip 0.5, RandAugment (``train.randaug``), colour jitter
(``train.color_jitter``; timm drops it when RandAugment is on, as the paper's runs did), random erasing
(``train.reprob``, per-pixel noise), ImageNet mean/std. Eval: bicubic resize to int(img_size / crop_pct), centre crop.
The DALI path (ablate/data/dali/transforms.py) reads the same constants, so both loaders follow one recipe; it erases
with ``erase_batch``, timm's random erasing for a whole batch on its device.
"""
import math
from collections.abc import Callable

import torch
from PIL import Image, ImageOps
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from timm.data.auto_augment import RandAugment, rand_augment_transform
from torchvision.transforms import Compose

from ablate.specs import RunSpec

SCALE = (0.08, 1.0)      # random-resized crop: fraction of the image's area
RATIO = (3 / 4, 4 / 3)   # random-resized crop: aspect ratio range
HFLIP = 0.5
MEAN, STD = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


def train_interpolation(cfg: RunSpec) -> str:
    # The paper trains with --train-interpolation random; the short recipe (no RandAugment) keeps eval's bicubic.
    return "random" if cfg.train.randaug else "bicubic"


def eval_resize(cfg: RunSpec) -> int:
    """The shorter side before the centre crop, as timm computes it from ``crop_pct``."""
    return int(cfg.data.img_size / cfg.model.crop_pct)


def train_transform(cfg: RunSpec) -> Callable:
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


def timm_rand_augment(spec: str, img_size: int) -> RandAugment:
    """timm's RandAugment for ``spec``, with the hyper-parameters timm's create_transform gives it."""
    return rand_augment_transform(spec, {"translate_const": int(img_size * 0.45),
                                         "img_mean": tuple(min(255, round(255 * m)) for m in MEAN)})


def posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, which asks for 0 bits (a black image) at magnitude 10: Pillow 13 raises on 0 bits."""
    if bits_to_keep >= 8:
        return img
    return ImageOps.posterize(img, bits_to_keep) if bits_to_keep > 0 else Image.new(img.mode, img.size)


def eval_transform(cfg: RunSpec) -> Callable:
    return create_transform(cfg.data.img_size, is_training=False, crop_pct=cfg.model.crop_pct,
                            interpolation="bicubic", mean=MEAN, std=STD)


def eval_pil(img_size: int, crop_pct: float) -> Callable:
    """The eval transform's PIL part (resize and centre crop, bicubic): what a pixel store keeps of val images."""
    eval_transform = create_transform(img_size, is_training=False, crop_pct=crop_pct, interpolation="bicubic")
    resize, crop, *_ = eval_transform.transforms
    return Compose([resize, crop])


def erase_batch(x: torch.Tensor, prob: float, tries: int = 10, generator: torch.Generator | None = None,
                noise: torch.Generator | None = None) -> torch.Tensor:
    """timm's RandomErasing(prob, mode="pixel", max_count=1) on a whole batch, in place, on its device.

    Per image, with probability ``prob``: up to ``tries`` draws of an area (2%-33% of the image) and a log-uniform
    aspect ratio (0.3-3.3); the first that fits is filled with N(0, 1) noise at a uniform position. The rectangles
    are drawn on the CPU (``generator``), so nothing waits for the device; the noise on x's device (``noise``, a
    generator there), for the rectangles only.
    """
    n, c, h, w = x.shape
    g = generator
    area = torch.empty(n, tries).uniform_(0.02, 1 / 3, generator=g) * (h * w)
    aspect = torch.empty(n, tries).uniform_(math.log(0.3), math.log(1 / 0.3), generator=g).exp()
    eh, ew = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
    fits = (eh < h) & (ew < w)
    first = fits.int().argmax(1, keepdim=True)  # the first try that fits, as timm's loop stops there
    eh, ew = eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1)
    erase = fits.any(1) & (torch.rand(n, generator=g) < prob)
    top = (torch.rand(n, generator=g) * (h - eh + 1)).floor()
    left = (torch.rand(n, generator=g) * (w - ew + 1)).floor()
    boxes = torch.stack([torch.arange(n), top, left, eh, ew], 1)[erase].int().tolist()
    for i, t, left, rh, rw in boxes:
        x[i, :, t:t + rh, left:left + rw] = torch.randn(c, rh, rw, device=x.device, dtype=x.dtype, generator=noise)
    return x
