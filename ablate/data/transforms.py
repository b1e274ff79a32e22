"""The paper's image transforms (PoolFormer's timm train.py recipe), built by timm so they match it exactly.

Train: RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3), hflip 0.5, RandAugment (``train.randaug``), colour jitter
(``train.color_jitter``; timm drops it when RandAugment is on, as the paper's runs did), random erasing
(``train.reprob``, per-pixel noise), ImageNet mean/std. Eval: bicubic resize to int(img_size / crop_pct), centre crop.
"""
from collections.abc import Callable

from omegaconf import DictConfig
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform


def train_transform(cfg: DictConfig) -> Callable:
    t = cfg.train
    return create_transform(
        cfg.data.img_size, is_training=True, scale=(0.08, 1.0), hflip=0.5,
        auto_augment=t.randaug or None,
        color_jitter=t.color_jitter or None,  # timm would add a no-op ColorJitter for 0
        re_prob=t.reprob, re_mode="pixel", re_count=1,
        # The paper trains with --train-interpolation random; the short recipe (no RandAugment) keeps eval's bicubic.
        interpolation="random" if t.randaug else "bicubic",
        mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)


def eval_transform(cfg: DictConfig) -> Callable:
    return create_transform(cfg.data.img_size, is_training=False, crop_pct=cfg.model.crop_pct,
                            interpolation="bicubic", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
