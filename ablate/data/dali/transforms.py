"""The paper's transforms (ablate/data/transforms.py) as NVIDIA DALI graphs, for ``data.loader=dali``.

Train: the random-resized crop is decoded as a region of interest (only the crop's part of each JPEG is decoded; on
CUDA by the GPU's decoder), resized to ``img_size`` with a random bilinear/bicubic filter (bicubic without
RandAugment), then timm's RandAugment rebuilt from DALI's ``auto_aug`` operations, colour jitter when RandAugment is
off, and normalisation with the horizontal flip folded in. Val: the shorter side resized to int(img_size / crop_pct)
(bicubic), a centre crop, normalisation. Random erasing and mixup/cutmix work on whole batches on the device, after
the graph (ablate/data/dali/batches.py, ablate/run/train.py). docs/data.md lists every difference from timm.

RandAugment follows timm's string (``train.randaug``, parsed by timm itself): timm's operations and their magnitude
ranges (timm's own level functions give each operation's argument), n operations drawn with replacement, each applied
with timm's probability (0.5), the magnitude drawn per operation from N(m, mstd) clipped to [0, 10] as timm does.
DALI's ready-made ``rand_augment`` differs on all four counts (its suite, always applied, fixed magnitude, its ranges).

A graph is traced once per configuration and process (seconds: RandAugment is a tree of conditionals) and kept
serialized; each epoch deserializes it with that epoch's seed in about a tenth of a second.
"""
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali import math as dmath
from nvidia.dali.auto_aug import augmentations as aa
from nvidia.dali.auto_aug.core import augmentation, select
from nvidia.dali.data_node import DataNode
from timm.data.auto_augment import AugmentOp

from ablate.data.transforms import HFLIP, MEAN, RATIO, SCALE, STD, eval_resize, timm_rand_augment, train_interpolation
from ablate.errors import ConfigError
from ablate.specs import RunSpec

INPUT = "encoded"  # the graph's input: each batch's file bytes, fed by ablate/data/dali/batches.py
BINS_PER_LEVEL = 100  # magnitude resolution: timm's levels (0-10) in steps of 0.01
FILL = round(255 * sum(MEAN) / len(MEAN))  # DALI fills with one grey, timm with the per-channel mean (124, 116, 104)


def _enhance(arg: float) -> float:
    return abs(arg - 1)  # timm gives 1 ± m; DALI's enhance operations take m, the sign and the 1 apart


def _posterize_mask(bits: float) -> np.uint8:
    return np.uint8(0xFF & ~(0xFF >> int(bits)))  # keep the top `bits` bits; 0 bits (black) is allowed, as in timm


# auto_aug's equalize and sharpness call DALI's deprecated experimental aliases, which warn on every trace.
@augmentation
def _equalize(data: DataNode, _) -> DataNode:
    return fn.equalize(data)


@augmentation(mag_range=(0, 0.9), randomly_negate=True, mag_to_param=aa.sharpness_kernel, param_device="auto")
def _sharpness(data: DataNode, kernel: DataNode) -> DataNode:
    return fn.filter(data, kernel)


_posterize = aa.posterize.augmentation(mag_to_param=_posterize_mask)


def _factor(aug, mag_to_param: Callable | None = None):
    return aug.augmentation(randomly_negate=False, mag_to_param=mag_to_param)  # timm's plain 0.1-1.9 factors


# timm's operation → (DALI's augmentation, timm's argument → DALI's magnitude; None where there is no magnitude).
# Geometric and "Increasing" arguments are randomly negated by both libraries, so DALI gets their size.
TIMM_OPS: dict[str, tuple] = {
    "AutoContrast": (aa.auto_contrast, None), "Equalize": (_equalize, None), "Invert": (aa.invert, None),
    "Rotate": (aa.rotate, abs), "ShearX": (aa.shear_x, abs), "ShearY": (aa.shear_y, abs),
    "TranslateXRel": (aa.translate_x, abs), "TranslateYRel": (aa.translate_y, abs),
    "TranslateX": (aa.translate_x_no_shape, abs), "TranslateY": (aa.translate_y_no_shape, abs),
    "Posterize": (_posterize, float), "PosterizeIncreasing": (_posterize, float),
    "Solarize": (aa.solarize, float), "SolarizeIncreasing": (aa.solarize, float),
    "SolarizeAdd": (aa.solarize_add, float),
    "ColorIncreasing": (aa.color, _enhance), "ContrastIncreasing": (aa.contrast, _enhance),
    "BrightnessIncreasing": (aa.brightness, _enhance), "SharpnessIncreasing": (_sharpness, _enhance),
    "Color": (_factor(aa.color), float), "Contrast": (_factor(aa.contrast), float),
    "Brightness": (_factor(aa.brightness), float),
    "Sharpness": (_factor(_sharpness, aa.sharpness_kernel_shifted), float),
}


@dataclass(frozen=True)
class DaliOp:
    """One RandAugment operation: auto_aug's DALI function and its argument per signed magnitude bin, precomputed.

    auto_aug's own wrapper maps every bin through Python inside the traced graph, which DALI's autograph turns into
    minutes for per-image magnitudes; the table here is plain numpy, built before tracing.
    """

    fn: Callable
    params: np.ndarray | None  # [bin] for the positive argument, [bins + bin] for the negated one
    param_device: str  # "cpu", or "auto": where the images are
    takes: frozenset[str]  # the extra arguments it accepts (shape, fill_value)

    def __call__(self, data: DataNode, signed_bin: DataNode, **kwargs) -> DataNode:
        param = None
        if self.params is not None:
            device = data.device if self.param_device == "auto" else self.param_device
            param = types.Constant(self.params, device=device)[signed_bin]
        return self.fn(data, param, **{k: v for k, v in kwargs.items() if k in self.takes})


def check_rand_augment(spec: str, img_size: int) -> None:
    """One ConfigError before training when DALI has no counterpart for an operation in ``spec``."""
    missing = sorted({op.name for op in timm_rand_augment(spec, img_size).ops} - set(TIMM_OPS))
    if missing:
        raise ConfigError(f"train.randaug={spec!r}: data.loader=dali has no counterpart for timm's "
                          f"{', '.join(missing)}; use data.loader=torch")


def dali_op(aug, to_magnitude: Callable | None = None, op: AugmentOp | None = None,
            levels: np.ndarray | None = None) -> DaliOp:
    """``aug`` with its arguments tabulated at timm's ``levels`` by ``op``'s own level function."""
    takes = frozenset(inspect.signature(aug.op).parameters) - {"data"}
    if to_magnitude is None:
        return DaliOp(aug.op, None, aug.param_device, takes)
    state = random.getstate()  # timm's level functions draw the random sign from `random`; leave it untouched
    try:
        magnitudes = np.array([to_magnitude(op.level_fn(level, op.hparams)[0]) for level in levels])
    finally:
        random.setstate(state)
    signed = np.concatenate([magnitudes, -magnitudes if aug.randomly_negate else magnitudes])
    params = np.array([np.asarray(aug.mag_to_param(m)) for m in signed.astype(np.float32)])
    return DaliOp(aug.op, params, aug.param_device, takes)


@dataclass(frozen=True)
class RandAugment:
    """timm's RandAugment as DALI operations; the last operation is the identity, for operations skipped."""

    ops: list[DaliOp]
    layers: int
    weights: list[float] | None  # timm's choice weights; None: uniform
    prob: float  # each drawn operation is applied with this probability
    magnitude: float
    std: float  # per-image noise on the magnitude; inf: uniform on [0, magnitude]
    upper: float  # magnitudes are clipped to [0, upper]

    @classmethod
    def from_timm(cls, spec: str, img_size: int) -> "RandAugment":
        check_rand_augment(spec, img_size)
        ra = timm_rand_augment(spec, img_size)
        first = ra.ops[0]  # timm gives every operation the same probability and magnitude settings
        upper = first.magnitude_max or 10
        levels = np.arange(round(upper * BINS_PER_LEVEL) + 1) / BINS_PER_LEVEL
        ops = [dali_op(*TIMM_OPS[op.name], op, levels) for op in ra.ops] + [dali_op(aa.identity)]
        weights = None if ra.choice_weights is None else list(ra.choice_weights)
        return cls(ops, ra.num_layers, weights, first.prob, first.magnitude, first.magnitude_std, upper)

    @property
    def bins(self) -> int:
        """Magnitude bins: the table of each operation holds one argument per bin and sign."""
        return round(self.upper * BINS_PER_LEVEL) + 1

    def __call__(self, img: DataNode, img_size: int) -> DataNode:
        skip = len(self.ops) - 1
        for _ in range(self.layers):
            pick = fn.random.choice(skip, p=self.weights)  # with replacement, as timm draws
            applied = fn.random.coin_flip(probability=self.prob)
            op = applied * pick + (1 - applied) * skip
            signed = self._bin() + self.bins * fn.random.coin_flip(probability=0.5)
            img = select(self.ops, op, img, signed_bin=signed, shape=[img_size, img_size], fill_value=FILL)
        return img

    def _bin(self) -> DataNode:
        """Per image, timm's magnitude: N(m, std) (uniform on [0, m] for std=inf), clipped to [0, upper]."""
        if self.std == float("inf"):
            level = fn.random.uniform(range=[0, self.magnitude])
        else:
            level = fn.random.normal(mean=self.magnitude, stddev=self.std)
        return fn.cast(dmath.clamp(level, 0.0, float(self.upper)) * BINS_PER_LEVEL, dtype=types.INT32)  # rounds


def _decoder(gpu: bool) -> dict:
    # "mixed": parsing on the CPU, decoding on the GPU. EXIF orientation is ignored, as PIL's loader ignores it.
    return {"device": "mixed" if gpu else "cpu", "output_type": types.RGB, "adjust_orientation": False}


def _normalize(img: DataNode, **crop_or_mirror) -> DataNode:
    return fn.crop_mirror_normalize(img, dtype=types.FLOAT, output_layout="CHW", mean=[255 * m for m in MEAN],
                                    std=[255 * s for s in STD], **crop_or_mirror)


@pipeline_def(enable_conditionals=True)
def _train_graph(gpu: bool, img_size: int, random_filter: bool, randaug: RandAugment | None,
                 color_jitter: float) -> DataNode:
    encoded = fn.external_source(name=INPUT, dtype=types.UINT8, no_copy=True)  # see DaliBatches._run
    img = fn.decoders.image_random_crop(encoded, **_decoder(gpu), random_area=list(SCALE),
                                        random_aspect_ratio=list(RATIO), num_attempts=10)
    if random_filter:  # timm's "random": bilinear or bicubic per image
        interp = fn.cast(fn.random.choice([int(types.INTERP_LINEAR), int(types.INTERP_CUBIC)]),
                         dtype=types.INTERP_TYPE)
    else:
        interp = types.INTERP_CUBIC
    img = fn.resize(img, size=[img_size, img_size], interp_type=interp, antialias=True)
    if randaug:
        img = randaug(img, img_size)
    elif color_jitter:  # as timm: colour jitter only without RandAugment
        jitter = [fn.random.uniform(range=[max(0.0, 1 - color_jitter), 1 + color_jitter]) for _ in range(3)]
        img = fn.color_twist(img, brightness=jitter[0], contrast=jitter[1], saturation=jitter[2])
    return _normalize(img, mirror=fn.random.coin_flip(probability=HFLIP))


@pipeline_def
def _val_graph(gpu: bool, img_size: int, resize: int) -> DataNode:
    encoded = fn.external_source(name=INPUT, dtype=types.UINT8, no_copy=True)  # see DaliBatches._run
    img = fn.decoders.image(encoded, **_decoder(gpu))
    hw = fn.peek_image_shape(encoded, adjust_orientation=False)[0:2]  # from the header: no wait for the GPU
    size = resize * hw // dmath.min(hw[0], hw[1])  # torchvision's Resize(int): the longer side rounded down
    img = fn.resize(img, size=fn.cast(size, dtype=types.FLOAT), interp_type=types.INTERP_CUBIC, antialias=True)
    return _normalize(img, crop=(img_size, img_size))


def train_graph(cfg: RunSpec, device_id: int | None) -> bytes:
    """The serialized train graph for ``cfg`` on GPU ``device_id`` (None: CPU only)."""
    t = cfg.train
    return _train_serialized(device_id, cfg.data.img_size, train_interpolation(cfg) == "random", t.randaug or None,
                             float(t.color_jitter or 0))


@lru_cache(maxsize=8)
def _train_serialized(device_id: int | None, img_size: int, random_filter: bool, randaug: str | None,
                      color_jitter: float) -> bytes:
    ra = RandAugment.from_timm(randaug, img_size) if randaug else None  # outside the trace: see DaliOp
    return _train_graph(device_id is not None, img_size, random_filter, ra, color_jitter,
                        **_trace_only(device_id)).serialize()


def val_graph(cfg: RunSpec, device_id: int | None) -> bytes:
    return _val_serialized(device_id, cfg.data.img_size, eval_resize(cfg))


@lru_cache(maxsize=8)
def _val_serialized(device_id: int | None, img_size: int, resize: int) -> bytes:
    return _val_graph(device_id is not None, img_size, resize, **_trace_only(device_id)).serialize()


def _trace_only(device_id: int | None) -> dict:
    return {"batch_size": 1, "num_threads": 1, "device_id": device_id}  # each epoch deserializes with its own
