"""The DALI path on the CPU (``device_id=None``): timm's transforms, the torch path's files and order, seeding, errors.

Skipped without NVIDIA DALI (``pip install -e ".[dali]"``; .ci/run installs it). GPU decoding is not tested here;
``benchmarks/loader.py`` runs it where a GPU is present.
"""
import csv
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.auto_augment import AugmentOp

pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed: pip install -e '.[dali]'")

from fake_images import photo  # noqa: E402
from nvidia.dali import fn, pipeline_def, types  # noqa: E402

import ablate.run.train  # noqa: E402
from ablate import compose  # noqa: E402
from ablate.config.spec import to_spec
from ablate.data import build_data  # noqa: E402
from ablate.data.dali.transforms import BINS_PER_LEVEL, FILL, RandAugment, timm_rand_augment  # noqa: E402
from ablate.data.loaders import build_loaders  # noqa: E402
from ablate.errors import (
    ConfigError,  # noqa: E402
    UnreadableImageError,  # noqa: E402
)
from ablate.run.checkpoint import CHECKPOINT  # noqa: E402
from ablate.run.distributed import Dist  # noqa: E402
from ablate.run.train import run  # noqa: E402

CPU = torch.device("cpu")
ONE_PROCESS = Dist()
PAPER = "rand-m9-mstd0.5-inc1"


def loaders(root, *overrides: str, world: Dist = ONE_PROCESS):
    cfg = compose(["data=folder", f"data.root={root}", "data.loader=dali", "data.img_size=32", "train.batch_size=4",
                   "train.global_batch=null", *overrides])  # a few images: train=paper's 1024 would not fit
    data = build_data(to_spec(cfg))
    return data, *build_loaders(to_spec(cfg), data, CPU, rank=world.rank, world_size=world.world_size)


def epoch(batches, number: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    batches.sampler.set_epoch(number)
    torch.manual_seed(seed)  # as train.py reseeds before each epoch
    return [(x.clone(), y) for x, y in batches]


def test_val_batches_are_timms_eval_transform_in_the_torch_paths_order(photo_tree):
    data, _, val = loaders(photo_tree(), world=Dist(rank=1, world_size=2))
    batches = list(val)
    order = list(val.sampler)
    assert order == list(range(1, len(data.val), 2)) and len(batches) == len(val) == 1
    x, y = batches[0]
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.tolist() == [data.val.samples[i][1] for i in order]
    expected = torch.stack([data.val[i][0] for i in order])  # timm's bicubic resize by crop_pct, centre crop
    assert (x - expected).abs().mean() < 0.02


@pytest.mark.slow  # decodes and augments two epochs of JPEGs through DALI's CPU pipeline
def test_train_batches_follow_the_sampler_and_the_epoch_seed(photo_tree):
    root = photo_tree()
    data, train, _ = loaders(root, "train=paper", "train.num_workers=2", world=Dist(rank=0, world_size=2))
    first = epoch(train, 0)
    assert len(first) == len(train) == 6 // 4 and first[0][0].shape == (4, 3, 32, 32)
    assert first[0][1].tolist() == [data.train.samples[i][1] for i in list(train.sampler)[:4]]
    # A fresh loader (a resumed run) given the same epoch and seed yields the same batches; another epoch does not.
    _, again, _ = loaders(root, "train=paper", "train.num_workers=1", world=Dist(rank=0, world_size=2))
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(first, epoch(again, 0)))
    assert not torch.equal(first[0][0], epoch(train, 1)[0][0])
    assert not torch.equal(first[0][0], epoch(train, 0, seed=1)[0][0])


def test_an_unreadable_file_fails_with_its_path(photo_tree):
    root = photo_tree()
    broken = root / "val" / "c1" / "0.JPEG"
    broken.write_bytes(b"not a jpeg")
    _, _, val = loaders(root, "data.verify=false")
    with pytest.raises(UnreadableImageError, match=f"cannot read image {broken}"):
        list(val)


def test_randaug_without_a_dali_counterpart_is_one_line():
    with pytest.raises(ConfigError, match="data.loader=dali has no counterpart for timm's Desaturate, GaussianBlur"):
        RandAugment.from_timm("rand-m9-t3a", 32)


def test_each_rand_augment_operation_matches_timms_at_the_papers_magnitude():
    """Every operation of rand-m9-mstd0.5-inc1 at magnitude 9, both signs, against timm's on the same image."""
    size, level = 224, 9.0
    img = np.asarray(photo(0, (size, size)))
    ra, ops = RandAugment.from_timm(PAPER, size), timm_rand_augment(PAPER, size).ops
    bins, b = ra.bins, round(level * BINS_PER_LEVEL)

    @pipeline_def
    def apply(op, signed):
        x = fn.external_source(name="x", layout="HWC", dtype=types.UINT8)
        return op(x, types.Constant(signed, dtype=types.INT32), shape=[size, size], fill_value=FILL)

    for dali_op, timm_op in zip(ra.ops, ops):
        outputs = []
        for sign in (0, 1):
            pipe = apply(dali_op, b + sign * bins, batch_size=1, num_threads=1, device_id=None)
            pipe.build()
            pipe.feed_input("x", [img])
            outputs.append(np.asarray(pipe.run()[0][0], dtype=float))
        fixed = AugmentOp(timm_op.name, prob=1.0, magnitude=level,
                          hparams={**timm_op.hparams, "magnitude_std": 0, "interpolation": Image.BILINEAR})
        gaps = []
        for seed in range(4):  # timm draws its sign from `random`
            random.seed(seed)
            theirs = np.asarray(fixed(Image.fromarray(img)), dtype=float)
            gaps.append(min(np.abs(ours - theirs).mean() for ours in outputs))
        # Pixel operations agree to rounding; geometric ones differ by DALI's one-grey fill (see docs/data.md).
        assert min(gaps) < 4.0, f"{timm_op.name}: mean difference {min(gaps):.2f} of 255"


@pytest.mark.slow
def test_paper_recipe_trains_with_dali_and_resumes_exactly(tmp_path, photo_tree, monkeypatch):
    root = photo_tree(classes=2, train_per_class=4, val_per_class=2)
    cfg = compose(["data=folder", f"data.root={root}", "data.loader=dali", "train=paper", "model=xs",
                   "data.img_size=32", "train.batch_size=4", "train.global_batch=null", "train.epochs=2",
                   "train.warmup_epochs=1", "train.cooldown_epochs=0", "train.num_workers=2"])
    save = ablate.run.train.save_checkpoint
    (tmp_path / "resumed").mkdir()

    def keep_the_first(path: Path, state: dict) -> None:  # what a run stopped during epoch 2 leaves behind
        save(path, state)
        if state["epoch"] == 1:
            save(tmp_path / "resumed" / CHECKPOINT, state)

    monkeypatch.setattr(ablate.run.train, "save_checkpoint", keep_the_first)
    whole = run(to_spec(cfg), tmp_path / "whole")
    monkeypatch.undo()
    assert whole.status == "completed" and whole.data_info["loader"] == "dali"
    assert run(to_spec(cfg), tmp_path / "resumed").status == "completed"
    whole_rows, resumed_rows = (_losses(tmp_path / d / "history.csv") for d in ("whole", "resumed"))
    assert len(whole_rows) == 2 and whole_rows == resumed_rows


def _losses(history: Path) -> list[tuple[str, ...]]:
    with open(history) as f:
        return [(r["epoch"], r["lr"], r["train_loss"], r["val_loss"], r["top1"]) for r in csv.DictReader(f)]
