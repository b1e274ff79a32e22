"""The batched recipe against timm's own PIL operations, on the same images with the same parameters.

Tolerances (grey levels of 255, per pixel): colour operations exact (AutoContrast within 1: PIL truncates its
scaled values in double precision); RandAugment's geometric operations, with PIL's bilinear filter, within 1 and
0.6 on average (rounding at the sample points); the crop equal to timm's crop-then-resize when it enlarges,
within 1 when it reduces (PIL's and torch's antialiasing round differently).
docs/data.md says where the recipe differs from timm's (random bicubic, antialiasing).
"""
import random

import numpy as np
import pytest
import timm.data.auto_augment
import torch
import torchvision.transforms.functional as tv
from fake_images import photo
from PIL import Image
from timm.data.auto_augment import LEVEL_TO_ARG, NAME_TO_OP
from timm.data.transforms import RandomResizedCropAndInterpolation

from ablate import ConfigError, compose
from ablate.config.spec import to_spec
from ablate.data.augment import GEOMETRIC, BatchRandAugment, TrainRecipe, crop_boxes, level_args, resized_crops
from ablate.data.transforms import MEAN, RATIO, SCALE, STD, posterize

PAPER = "rand-m9-mstd0.5-inc1"
INTEGER_ARGS = ("Posterize", "Solarize")  # timm passes these as ints


def _tensor(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(img)).permute(2, 0, 1).float() for img in images])


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [photo(i, (40, 32)) for i in range(3)]


@pytest.mark.parametrize("negate", [False, True])
def test_every_operation_matches_timms_pil_operation(images, negate):
    ra = BatchRandAugment.from_spec(PAPER, 40)
    assert len(ra.names) == 15 and ra.num_layers == 2 and ra.prob == 0.5
    x = _tensor(images)
    kwargs = {"fillcolor": tuple(int(v) for v in ra.fill), "resample": Image.BILINEAR}
    for name in ra.names:
        args = level_args(name, torch.full((len(images),), 9.0, dtype=torch.float64),
                          torch.full((len(images),), negate), ra.translate_const)
        ours = ra.apply(name, x.clone(), args)
        op = posterize if name.startswith("Posterize") else NAME_TO_OP[name]
        theirs = []
        for img, a in zip(images, args.tolist()):
            level = [int(a) if name.startswith(INTEGER_ARGS) else a] if LEVEL_TO_ARG[name] else []
            theirs.append(op(img, *level, **kwargs))
        diff = (ours - _tensor(theirs)).abs()
        geometric = name in GEOMETRIC
        assert diff.max() <= (1 if geometric or name == "AutoContrast" else 0), name
        assert diff.mean() <= (0.6 if geometric else 0.01), name
        assert not geometric or diff.mean() > 0 or ours.ne(x).any(), name  # the operation did something


def test_arguments_are_timms_level_functions(monkeypatch):
    ra = BatchRandAugment.from_spec(PAPER, 224)
    magnitudes = torch.linspace(0, 10, 41, dtype=torch.float64)
    for negate in (False, True):
        # timm negates when random.random() > 0.5
        monkeypatch.setattr(timm.data.auto_augment.random, "random", lambda negate=negate: 1.0 if negate else 0.0)
        for name in ra.names:
            ours = level_args(name, magnitudes, torch.full_like(magnitudes, negate, dtype=torch.bool),
                              ra.translate_const)
            fn = LEVEL_TO_ARG[name]
            theirs = [fn(m, {"translate_const": ra.translate_const})[0] if fn else 0.0 for m in magnitudes.tolist()]
            assert torch.allclose(ours, torch.tensor(theirs, dtype=torch.float64)), name


def test_draws_follow_timms_distribution():
    ra = BatchRandAugment.from_spec(PAPER, 224)
    g = torch.Generator().manual_seed(0)
    ops, _, _ = ra.draw(20_000, g)
    applied = ops < len(ra.names)
    assert abs(applied.float().mean() - 0.5) < 0.02  # each drawn operation applied with p=0.5
    counts = torch.bincount(ops[applied], minlength=15).float()
    assert counts.min() / counts.max() > 0.85  # uniform choice with replacement


def test_magnitude_noise_and_clipping():
    ra = BatchRandAugment.from_spec(PAPER, 224)
    ra.names = ["Rotate"]  # |argument| = 3 × magnitude
    _, args, _ = ra.draw(20_000, torch.Generator().manual_seed(1))
    m = args.abs() / 3
    assert abs(m.mean() - 9) < 0.02 and abs(m.std() - 0.5) < 0.03 and m.max() <= 10
    with pytest.raises(ConfigError, match="the batched path has no counterpart for timm's Desaturate"):
        BatchRandAugment.from_spec("rand-m9-t3a", 224)


def test_crop_boxes_follow_timms_random_resized_crop():
    hw = torch.tensor([[30, 40]]).expand(4000, 2)
    boxes = crop_boxes(hw, torch.Generator().manual_seed(0))
    random.seed(0)
    theirs = torch.tensor([RandomResizedCropAndInterpolation.get_params(Image.new("RGB", (40, 30)), SCALE, RATIO)
                           for _ in range(4000)], dtype=torch.float64)
    for b in (boxes, theirs):
        assert (b[:, 0] >= 0).all() and (b[:, 0] + b[:, 2] <= 30).all() and (b[:, 1] + b[:, 3] <= 40).all()
    area = [(b[:, 2] * b[:, 3]).mean() / 1200 for b in (boxes, theirs)]
    aspect = [(b[:, 3] / b[:, 2]).log().mean() for b in (boxes, theirs)]
    assert abs(area[0] - area[1]) < 0.02 and abs(aspect[0] - aspect[1]) < 0.03
    # No draw fits: timm's fallback, a centre crop clamped to the ratio range.
    for size in ((100, 10), (10, 100), (40, 30)):
        img, hw = Image.new("RGB", size), torch.tensor([[size[1], size[0]]])
        ours = crop_boxes(hw, torch.Generator(), scale=(2.0, 3.0))[0].tolist()
        assert ours == list(RandomResizedCropAndInterpolation.get_params(img, (2.0, 3.0), RATIO))


def test_crop_is_timms_crop_then_resize(images):
    img = images[0]  # 40 wide, 32 high
    pixels = torch.from_numpy(np.array(img))
    box, meta = torch.tensor([[5.0, 7.0, 20.0, 25.0]]), torch.tensor([[32, 40, 0]])  # top, left, height, width

    def theirs(size: int) -> torch.Tensor:
        # timm's RandomResizedCropAndInterpolation: torchvision's resized_crop, the box cut out, then resized.
        return _tensor([tv.resized_crop(img, 5, 7, 20, 25, [size, size], tv.InterpolationMode.BILINEAR)])

    ours = resized_crops(pixels[None], meta, box, torch.tensor([False]), 48)
    assert torch.equal(ours, theirs(48))  # enlarged: PIL's bilinear exactly
    diff = (resized_crops(pixels[None], meta, box, torch.tensor([False]), 12) - theirs(12)).abs()
    assert diff.max() <= 1 and diff.mean() < 0.1  # reduced: antialiased, as PIL, up to fixed-point rounding
    flipped = resized_crops(pixels[None], meta, box, torch.tensor([True]), 48)
    assert torch.equal(flipped, ours.flip(-1))
    # Stored transposed (a portrait image in the landscape box, with padding): the same crop.
    padded = torch.zeros(40, 50, 3, dtype=torch.uint8)
    padded[:, :32] = pixels.transpose(0, 1)
    moved = resized_crops(padded[None], torch.tensor([[32, 40, 1]]), box, torch.tensor([False]), 48)
    assert (moved - ours).abs().max() <= 1


def test_recipe_is_seeded_and_normalised():
    cfg = compose(["train=paper", "data.img_size=32"])
    recipe = TrainRecipe.from_config(to_spec(cfg), torch.tensor([20, 30, 0]).expand(16, 3))
    pixels = torch.randint(0, 256, (16, 20, 30, 3), dtype=torch.uint8)
    batch, index = [pixels, torch.arange(16)], torch.arange(16)
    x, y = recipe(batch, index, torch.Generator().manual_seed(3))
    again, _ = recipe(batch, index, torch.Generator().manual_seed(3))
    other, _ = recipe(batch, index, torch.Generator().manual_seed(4))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and torch.equal(y, torch.arange(16))
    assert torch.equal(x, again) and not torch.equal(x, other)
    plain = TrainRecipe(recipe.img_size, recipe.randaug, 0.0, recipe.meta)
    x, _ = plain(batch, index, torch.Generator().manual_seed(3))
    grey = x * torch.tensor(STD).view(1, 3, 1, 1) * 255 + torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    assert grey.min() > -1e-3 and grey.max() < 255 + 1e-3 and (grey - grey.round()).abs().max() < 1e-3


@pytest.mark.gpu
def test_cuda_recipe_is_the_cpu_recipe():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cfg = compose(["train=paper", "data.img_size=32", "train.reprob=0"])  # erasing's noise is drawn on the device
    recipe = TrainRecipe.from_config(to_spec(cfg), torch.tensor([36, 48, 0]).expand(64, 3))
    pixels, index = torch.randint(0, 256, (64, 36, 48, 3), dtype=torch.uint8), torch.arange(64)
    cpu, _ = recipe([pixels, index], index, torch.Generator().manual_seed(0))
    cuda, _ = recipe([pixels.cuda(), index.cuda()], index, torch.Generator().manual_seed(0))
    # The same draws. The CPU resizes crops with torch's uint8 kernel (fixed-point weights), CUDA in float: a sample
    # may round one grey level the other way, which a later threshold (solarize, posterize) can turn into more.
    grey = (cuda.cpu() - cpu).abs() * 255 * torch.tensor(STD).view(1, 3, 1, 1)
    assert (grey > 1.01).float().mean() < 0.01 and grey.mean() < 0.5
