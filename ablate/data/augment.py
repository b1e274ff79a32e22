"""The paper's train recipe on whole batches of uint8 pixels, on the batch's own device: one code path for the CPU
and CUDA, so CI runs the code a GPU runs.

Per batch, in timm's order: the random-resized crop and horizontal flip, each image's box resized by the
antialiased bilinear filter PIL uses (``resized_crops``); timm's RandAugment (``BatchRandAugment``: timm's string
parsed by timm, its operations, n per image drawn with replacement, each applied with its probability and a magnitude
drawn per operation);
normalisation; random erasing (``erase_batch``). Mixup/cutmix stay in the training loop, which already applies timm's
``Mixup`` to the batch on the device. Values stay integers in 0-255 between operations, as PIL's uint8 images do.
A GPU takes a batch in one pass; the CPU works through it in chunks of ``CPU_CHUNK`` images, and there worker
threads make whole batches side by side (``ablate.data.loaders.TensorBatches``).

Every random draw is per image and comes from a CPU generator (parameters are a few numbers per image), so the
CPU and CUDA see the same crops and operations for the same seed; only erasing's noise is drawn on the device.
docs/data.md lists where this differs from timm's PIL transforms, and tests/test_augment.py measures each operation
against timm's own on the same images.
"""
import math
import queue
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ablate.data.transforms import HFLIP, MEAN, RATIO, SCALE, STD, erase_batch, timm_rand_augment
from ablate.errors import ConfigError
from ablate.specs import RunSpec

LEVEL = 10.0  # timm's magnitude scale: levels 0-10
# Images per pass on the CPU: a chunk's float tensors (~10 MB at 224 px) stay in the allocator's reused memory
# and the caches; whole batches would map fresh pages for every operation, several times slower. A GPU takes the batch.
CPU_CHUNK = 16


# --- the random-resized crop and flip -----------------------------------------------------------------------------

def crop_boxes(hw: Tensor, g: torch.Generator, scale: tuple[float, float] = SCALE,
               ratio: tuple[float, float] = RATIO, tries: int = 10) -> Tensor:
    """timm's RandomResizedCrop.get_params for every image at once: (top, left, height, width) per row of ``hw``.

    Up to ``tries`` draws of an area fraction (uniform in ``scale``) and a log-uniform aspect ratio; the first that
    fits is placed uniformly; none fitting gives timm's fallback, a centre crop clamped to ``ratio``.
    """
    n = len(hw)
    h, w = hw[:, 0:1].double(), hw[:, 1:2].double()
    area = torch.empty(n, tries, dtype=torch.float64).uniform_(*scale, generator=g) * h * w
    aspect = torch.empty(n, tries, dtype=torch.float64).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                                 generator=g).exp()
    cw, ch = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
    fits = (cw <= w) & (ch <= h)
    first = fits.int().argmax(1, keepdim=True)
    cw, ch, ok = cw.gather(1, first), ch.gather(1, first), fits.any(1, keepdim=True)
    u = torch.rand(n, 2, dtype=torch.float64, generator=g)
    top, left = (u[:, :1] * (h - ch + 1)).floor(), (u[:, 1:] * (w - cw + 1)).floor()
    in_ratio = w / h
    fw = torch.where(in_ratio > ratio[1], (h * ratio[1]).round(), w)
    fh = torch.where(in_ratio < ratio[0], (w / ratio[0]).round(), h)
    fallback = ((h - fh) // 2, (w - fw) // 2, fh, fw)
    return torch.cat([torch.where(ok, a, b) for a, b in zip((top, left, ch, cw), fallback)], 1)


def resized_crops(pixels: Tensor, meta: Tensor, boxes: Tensor, flip: Tensor, size: int) -> Tensor:
    """Each image's crop ``boxes`` (top, left, height, width, in its true orientation) resized to ``size``² by
    torch's antialiased bilinear filter, as PIL resizes a box, and flipped where ``flip``: float NCHW in 0-255.

    ``pixels`` is the stores' NHWC uint8 box; ``meta`` (CPU) holds each image's true (height, width, transposed): a
    portrait image is stored transposed, so its crop is cut transposed and turned back after resizing. The boxes lie
    inside each image's own pixels (``crop_boxes``), never in the box's padding.
    """
    out = torch.empty(len(pixels), 3, size, size, device=pixels.device)
    rows = zip(boxes.int().tolist(), meta[:, 2].tolist(), flip.tolist())
    for i, ((top, left, height, width), transposed, mirror) in enumerate(rows):
        region = pixels[i, left:left + width, top:top + height] if transposed else \
            pixels[i, top:top + height, left:left + width]
        x = region.permute(2, 0, 1)[None]
        # torch's uint8 antialiased kernel exists on the CPU only, where it is faster than float; its fixed-point
        # weights land within one grey level of the float kernel a GPU runs.
        x = F.interpolate(x if x.device.type == "cpu" else x.float(), (size, size), mode="bilinear",
                          antialias=True, align_corners=False)[0]
        if x.is_floating_point():  # the uint8 kernel rounds itself
            x = x.round_()
        if transposed:
            x = x.transpose(1, 2)
        out[i] = x.flip(2) if mirror else x
    return out


# --- RandAugment's operations on batches (x: float NCHW holding integers 0-255; a: one argument per image) ---------

def _blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """PIL's Image.blend(degenerate, x, factor): clipped to 0-255, truncated to an integer."""
    f = factor.view(-1, 1, 1, 1)
    return (degenerate + f * (x - degenerate)).clamp_(0, 255).floor_()


def _grey(x: Tensor) -> Tensor:
    """PIL's RGB → L conversion (ITU-R 601-2 luma in 16-bit fixed point), N1HW."""
    r, g, b = x.unbind(1)  # float32 holds every partial sum exactly: all stay below 2**24
    return ((r * 19595 + g * 38470 + b * 7471 + 32768) / 65536).floor_()[:, None]


def auto_contrast(x: Tensor, _: Tensor) -> Tensor:
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    scale = 255 / (hi - lo).clamp(min=1)
    return torch.where(hi > lo, (x * scale - lo * scale).clamp_(0, 255).floor_(), x)


def equalize(x: Tensor, _: Tensor) -> Tensor:
    """PIL's ImageOps.equalize per channel: a lookup table from the channel's histogram."""
    n, c = x.shape[:2]
    flat = x.reshape(n * c, -1).long()
    hist = torch.zeros(n * c, 256, device=x.device).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float))
    last = hist.gather(1, flat.amax(1, keepdim=True))  # the count of the highest value present
    step = ((hist.sum(1, keepdim=True) - last) / 255).floor()
    before = hist.cumsum(1) - hist
    lut = ((step / 2).floor() + before).div(step.clamp(min=1)).floor().clamp_(max=255)
    keep = (step == 0) | ((hist > 0).sum(1, keepdim=True) <= 1)
    out = torch.where(keep, flat.float(), lut.gather(1, flat))
    return out.view_as(x)


def invert(x: Tensor, _: Tensor) -> Tensor:
    return 255 - x


def posterize(x: Tensor, bits: Tensor) -> Tensor:
    shift = (2 ** (8 - bits.clamp(0, 8))).view(-1, 1, 1, 1)
    return (x / shift).floor_() * shift  # 0 bits: black, as timm means (transforms.posterize)


def solarize(x: Tensor, thresh: Tensor) -> Tensor:
    return torch.where(x >= thresh.view(-1, 1, 1, 1), 255 - x, x)


def solarize_add(x: Tensor, add: Tensor) -> Tensor:
    return torch.where(x < 128, (x + add.view(-1, 1, 1, 1)).clamp_(max=255), x)


def color(x: Tensor, factor: Tensor) -> Tensor:
    return _blend(_grey(x).expand_as(x), x, factor)


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    mean = (_grey(x).mean((1, 2, 3), keepdim=True) + 0.5).floor()
    return _blend(mean.expand_as(x), x, factor)


def brightness(x: Tensor, factor: Tensor) -> Tensor:
    return _blend(torch.zeros_like(x), x, factor)


def sharpness(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with PIL's SMOOTH filter (3×3, centre 5, the rest 1, over 13; rounded), which leaves the border as is."""
    smooth = x.clone()
    rows = x[:, :, :-2] + x[:, :, 1:-1] + x[:, :, 2:]
    window = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:] + 4 * x[:, :, 1:-1, 1:-1]  # 3×3 sum + 4 × centre
    smooth[:, :, 1:-1, 1:-1] = window.div_(13).add_(0.5).floor_()
    return _blend(smooth, x, factor)


def _warp(x: Tensor, matrix: Tensor, fill: Tensor) -> Tensor:
    """PIL's affine transform: output pixel centre → input point by ``matrix`` (N×2×3, pixels); bilinear inside the
    image (edges clamped), ``fill`` where the point falls outside it."""
    n, _, h, w = x.shape
    xs = (torch.arange(w, device=x.device) + 0.5).view(1, 1, w)
    ys = (torch.arange(h, device=x.device) + 0.5).view(1, h, 1)
    a, b, c, d, e, f = matrix.view(n, 6, 1, 1).unbind(1)
    u, v = a * xs + b * ys + c, d * xs + e * ys + f
    inside = ((u >= 0) & (u < w) & (v >= 0) & (v < h))[:, None]
    grid = torch.stack([u * (2 / w) - 1, v * (2 / h) - 1], -1)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return torch.where(inside, warped.round_(), fill.view(1, 3, 1, 1))


def _affine(build: Callable[[Tensor, int, int], tuple[Tensor, ...]]) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """An operation from its PIL coefficients (a, b, c, d, e, f) per image."""
    def op(x: Tensor, arg: Tensor, fill: Tensor) -> Tensor:
        coefficients = torch.stack(build(arg.float(), x.shape[2], x.shape[3]), 1).view(-1, 2, 3)
        return _warp(x, coefficients, fill)
    return op


def _rotation(deg: Tensor, h: int, w: int) -> tuple[Tensor, ...]:
    # PIL's Image.rotate: counter-clockwise about the centre (w/2, h/2).
    r = torch.deg2rad(deg)
    cos, sin, cx, cy = r.cos(), r.sin(), w / 2, h / 2
    return cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy


def _zero(a: Tensor) -> Tensor:
    return torch.zeros_like(a)


def _one(a: Tensor) -> Tensor:
    return torch.ones_like(a)


GEOMETRIC = {
    "Rotate": _affine(_rotation),
    "ShearX": _affine(lambda a, h, w: (_one(a), a, _zero(a), _zero(a), _one(a), _zero(a))),
    "ShearY": _affine(lambda a, h, w: (_one(a), _zero(a), _zero(a), a, _one(a), _zero(a))),
    "TranslateXRel": _affine(lambda a, h, w: (_one(a), _zero(a), a * w, _zero(a), _one(a), _zero(a))),
    "TranslateYRel": _affine(lambda a, h, w: (_one(a), _zero(a), _zero(a), _zero(a), _one(a), a * h)),
    "TranslateX": _affine(lambda a, h, w: (_one(a), _zero(a), a, _zero(a), _one(a), _zero(a))),
    "TranslateY": _affine(lambda a, h, w: (_one(a), _zero(a), _zero(a), _zero(a), _one(a), a)),
}
COLOUR = {
    "AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert,
    "Posterize": posterize, "PosterizeIncreasing": posterize, "PosterizeOriginal": posterize,
    "Solarize": solarize, "SolarizeIncreasing": solarize, "SolarizeAdd": solarize_add,
    "Color": color, "ColorIncreasing": color, "Contrast": contrast, "ContrastIncreasing": contrast,
    "Brightness": brightness, "BrightnessIncreasing": brightness, "Sharpness": sharpness,
    "SharpnessIncreasing": sharpness,
}


def level_args(name: str, m: Tensor, negate: Tensor, translate_const: float) -> Tensor:
    """timm's level function (auto_augment.LEVEL_TO_ARG[name]) for every image's magnitude ``m`` (0-10); ``negate``
    is its random sign, for the operations timm negates at random."""
    level = m / LEVEL
    sign = torch.where(negate, -1.0, 1.0).to(m.dtype)
    posterize_bits = (level * 4).floor()
    solarize_thresh = (level * 256).floor().clamp(max=256)
    table = {
        "Rotate": level * 30 * sign, "ShearX": level * 0.3 * sign, "ShearY": level * 0.3 * sign,
        "TranslateXRel": level * 0.45 * sign, "TranslateYRel": level * 0.45 * sign,
        "TranslateX": level * translate_const * sign, "TranslateY": level * translate_const * sign,
        "Posterize": posterize_bits, "PosterizeIncreasing": 4 - posterize_bits, "PosterizeOriginal": posterize_bits + 4,
        "Solarize": solarize_thresh, "SolarizeIncreasing": 256 - solarize_thresh,
        "SolarizeAdd": (level * 110).floor().clamp(max=128),
    }
    if name in table:
        return table[name]
    if name.endswith("Increasing"):  # Color, Contrast, Brightness, Sharpness: 1 ± 0.9 level, at least 0.1
        return (1 + sign * level * 0.9).clamp(min=0.1)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return level * 1.8 + 0.1
    return torch.zeros_like(m)  # AutoContrast, Equalize, Invert take no argument


@dataclass
class BatchRandAugment:
    """timm's RandAugment (``train.randaug``, parsed by timm) applied per image to a batch."""

    names: list[str]
    num_layers: int
    prob: float
    magnitude: float
    magnitude_std: float
    magnitude_max: float
    weights: Tensor | None  # timm's choice weights; with them, ops are drawn without replacement, as timm does
    fill: Tensor  # the geometric operations' fill (timm: the mean pixel, 124 116 104)
    translate_const: float

    @classmethod
    def from_spec(cls, spec: str, img_size: int) -> "BatchRandAugment":
        ra = timm_rand_augment(spec, img_size)
        names = [op.name for op in ra.ops]
        missing = sorted(set(names) - set(GEOMETRIC) - set(COLOUR))
        if missing:
            raise ConfigError(f"train.randaug={spec!r}: the batched path has no counterpart for timm's "
                              f"{', '.join(missing)}; use a class-folder tree with data.loader=torch")
        op = ra.ops[0]
        weights = None if ra.choice_weights is None else torch.as_tensor(ra.choice_weights, dtype=torch.float)
        return cls(names, ra.num_layers, op.prob, op.magnitude, op.magnitude_std, op.magnitude_max or LEVEL,
                   weights, torch.tensor(op.kwargs["fillcolor"], dtype=torch.float), op.hparams["translate_const"])

    def draw(self, n: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Per layer and image: the operation's index (len(names): skipped), its argument; and the random signs."""
        k = len(self.names)
        if self.weights is None:
            ops = torch.randint(k, (n, self.num_layers), generator=g)
        else:
            ops = torch.multinomial(self.weights.expand(n, k), self.num_layers, replacement=False, generator=g)
        skip = torch.rand(n, self.num_layers, generator=g) > self.prob
        if math.isinf(self.magnitude_std):
            m = torch.rand(n, self.num_layers, generator=g, dtype=torch.float64) * self.magnitude
        else:
            m = self.magnitude + self.magnitude_std * torch.randn(n, self.num_layers, generator=g,
                                                                  dtype=torch.float64)
        m = m.clamp(0, self.magnitude_max)
        negate = torch.rand(n, self.num_layers, generator=g) > 0.5
        args = torch.zeros(n, self.num_layers, dtype=torch.float64)
        for i, name in enumerate(self.names):
            chosen = ops == i
            if chosen.any():
                args[chosen] = level_args(name, m[chosen], negate[chosen], self.translate_const)
        return torch.where(skip, k, ops), args, negate

    def __call__(self, x: Tensor, ops: Tensor, args: Tensor) -> Tensor:
        """``x`` with each image's drawn operations (``draw``'s first two results, on the CPU) applied in place."""
        for layer, chosen in enumerate(ops.T.tolist()):  # grouped on the host: no device sync
            rows: dict[int, list[int]] = {}
            for row, op in enumerate(chosen):
                rows.setdefault(op, []).append(row)
            for op, group in rows.items():  # one operation per image and layer: the groups commute
                if op == len(self.names):
                    continue
                arg = args[group, layer]
                if len(group) == 1:  # the common case on the CPU's chunks: a view, no gather
                    one = x[group[0]:group[0] + 1]
                    one.copy_(self.apply(self.names[op], one, arg))
                else:
                    at = torch.tensor(group).to(x.device, non_blocking=True)
                    x.index_copy_(0, at, self.apply(self.names[op], x.index_select(0, at), arg))
        return x

    def apply(self, name: str, x: Tensor, arg: Tensor) -> Tensor:
        arg = arg.to(x.device, torch.float32)
        if name in GEOMETRIC:
            return GEOMETRIC[name](x, arg, self.fill.to(x.device))
        return COLOUR[name](x, arg)


# --- the recipe ---------------------------------------------------------------------------------------------------

def normalise(x: Tensor, out: Tensor | None = None) -> Tensor:
    """0-255 → ImageNet mean/std (into ``out``, when given)."""
    scale = 1 / (torch.tensor(STD, device=x.device).view(1, 3, 1, 1) * 255)
    shift = -torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1) / torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return torch.addcmul(shift, x, scale, out=out)  # one pass over the batch


def to_normalised(pixels: Tensor) -> Tensor:
    """Ready val pixels (NHWC uint8) → the model's input."""
    return normalise(pixels.permute(0, 3, 1, 2).float())


@dataclass
class TrainRecipe:
    """The paper's train transform for batches of stored pixels: ``[pixels, labels], index, generator → (x, y)``.

    ``meta`` (N×3: true height, width, transposed) stays on the CPU, where the crops are drawn: reading it from the
    device would make the host wait for the GPU every batch.
    """

    img_size: int
    randaug: BatchRandAugment | None
    reprob: float
    meta: Tensor
    spare: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, repr=False)  # batches given back

    @classmethod
    def from_config(cls, cfg: RunSpec, meta: Tensor) -> "TrainRecipe":
        t = cfg.train
        if t.color_jitter and not t.randaug:  # timm drops colour jitter when RandAugment is on, as the paper did
            raise ConfigError(f"train.color_jitter={t.color_jitter} without train.randaug: colour jitter is not "
                              "part of data.loader=batched; set train.color_jitter=0 or read a tree with torch/dali")
        randaug = BatchRandAugment.from_spec(t.randaug, cfg.data.img_size) if t.randaug else None
        return cls(cfg.data.img_size, randaug, t.reprob, meta.cpu())

    def __call__(self, batch: list[Tensor], index: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        pixels, labels = batch
        n, meta = len(pixels), self.meta[index]
        # Every draw for the batch first, then the work chunk by chunk: the same images come out whatever the chunk.
        boxes = crop_boxes(meta[:, :2], g)
        flip = torch.rand(n, generator=g) < HFLIP
        ops, args, _ = self.randaug.draw(n, g) if self.randaug else (None, None, None)
        out = self._memory((n, 3, self.img_size, self.img_size), pixels.device)
        step = n if pixels.device.type == "cuda" else CPU_CHUNK
        for i in range(0, n, step):
            part = slice(i, i + step)
            x = resized_crops(pixels[part], meta[part], boxes[part], flip[part], self.img_size)
            if self.randaug:
                x = self.randaug(x, ops[part], args[part])
            normalise(x, out=out[part])
        if self.reprob:
            erase_batch(out, self.reprob, generator=g, noise=device_generator(g, out.device))
        return out, labels

    def give_back(self, x: Tensor) -> None:
        """``x``, a batch this recipe made, is no longer used: a later batch is made in its memory (every value of it
        is written again). On the CPU, a fresh batch's memory costs a page fault every 4 KB: a fifth of the recipe's
        time at 224 px. Thread-safe: worker threads take what the training loop gives back."""
        self.spare.put(x)

    def _memory(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        while True:
            try:
                x = self.spare.get_nowait()
            except queue.Empty:
                return torch.empty(shape, device=device)
            if x.shape == shape and x.device == device:
                return x


def device_generator(g: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from ``g``: erasing's per-pixel noise is drawn where the batch is."""
    return torch.Generator(device).manual_seed(int(torch.randint(2**62, (), generator=g)))
