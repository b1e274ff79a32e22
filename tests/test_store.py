"""The pixel store: writing (exact pixels, resumable, the source untouched, refusals), reading, and the batched
loader built on it: auto's choice, seeding per (seed, epoch, rank), and a resumed run continuing exactly."""
import json
import threading
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform
from torch.utils.data import DistributedSampler

import ablate.data.augment
import ablate.data.store
from ablate import ConfigError, compose
from ablate.config.spec import to_spec
from ablate.data import build_data
from ablate.data.augment import TrainRecipe, to_normalised
from ablate.data.loaders import TensorBatches, build_loaders, pick_loader
from ablate.data.prepare import main as prepare_main
from ablate.data.store import MANIFEST, PixelSplit, checksum, write_store
from ablate.run.train import run

CPU = torch.device("cpu")


@pytest.fixture
def tree(photo_tree) -> Path:
    root = photo_tree(classes=2, train_per_class=3, val_per_class=2, size=(60, 45))
    portrait = Image.open(root / "train" / "c1" / "0.JPEG").transpose(Image.Transpose.ROTATE_90)
    portrait.save(root / "train" / "c1" / "tall.JPEG")
    return root


def _listing(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_store_holds_the_images_pixels_exactly(tree, tmp_path):
    before = _listing(tree)
    out = tmp_path / "store"
    totals = write_store(tree, out, short_side=32, img_size=32, crop_pct=0.875, workers=1)
    assert totals["written"] == 11 and not totals["errors"] and _listing(tree) == before
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["images"] == {"train": 7, "val": 4} and manifest["classes"] == ["c0", "c1"]
    assert manifest["checksum"] == checksum(out) and manifest["layout"]["long_side"] == 43
    cfg = compose(["data=folder", f"data.root={out}", "data.img_size=32", "model.crop_pct=0.875", "train=paper"])
    data = build_data(to_spec(cfg))
    (pixels, labels), meta = data.train.tensors, data.train.transform.meta
    assert pixels.shape == (7, 32, 43, 3) and labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    files = sorted((tree / "train").rglob("*.JPEG"))  # the scan's order: class, then name
    for i, path in enumerate(files):
        # PIL's own bicubic resize to a short side of 32: 60 × 45 → 43 × 32 (60 × 32 / 45 = 42.7), a portrait
        # 45 × 60 → 32 × 43, stored transposed to landscape.
        img = Image.open(path).convert("RGB")
        portrait = img.height > img.width
        expected = np.asarray(img.resize((32, 43) if portrait else (43, 32), Image.BICUBIC))
        if portrait:
            expected = expected.transpose(1, 0, 2)
        assert meta[i].tolist() == ([43, 32, 1] if portrait else [32, 43, 0])
        assert torch.equal(pixels[i], torch.from_numpy(expected.copy()))
    assert meta[files.index(tree / "train/c1/tall.JPEG")].tolist() == [43, 32, 1]  # portrait: stored transposed
    # Val: timm's eval transform, exactly.
    timm_eval = create_transform(32, is_training=False, crop_pct=0.875, interpolation="bicubic")
    val = to_normalised(data.val.tensors[0])
    for i, path in enumerate(sorted((tree / "val").rglob("*.JPEG"))):
        assert torch.allclose(val[i], timm_eval(Image.open(path).convert("RGB")), atol=1e-5)
    assert data.info["store"]["checksum"] == manifest["checksum"]


def test_store_is_idempotent_and_resumes(tree, tmp_path):
    out = tmp_path / "store"
    write_store(tree, out, short_side=32, img_size=32, workers=1)
    assert write_store(tree, out, short_side=32, img_size=32, workers=1)["kept"] == 11
    with pytest.raises(ConfigError, match="holds a store with other settings"):
        write_store(tree, out, short_side=40, img_size=32, workers=1)
    whole = (out / "train.u8").read_bytes()
    # A run killed after some images: no manifest, two images not marked as written.
    (out / MANIFEST).unlink()
    meta = np.load(out / "train_meta.npy")
    meta[[1, 4]] = 0
    np.save(out / "train_meta.npy", meta)
    (out / ".settings.json").write_text(json.dumps({"format": "ablate-pixels-1", "layout": {}, "classes": []}))
    with pytest.raises(ConfigError, match="unfinished store with other settings"):
        write_store(tree, out, short_side=32, img_size=32, workers=1)
    (out / ".settings.json").unlink()
    totals = write_store(tree, out, short_side=32, img_size=32, workers=1)
    assert totals["written"] == 2 and totals["kept"] == 9
    assert (out / "train.u8").read_bytes() == whole and (out / MANIFEST).exists()


def test_store_refusals(tree, tmp_path, monkeypatch, capsys):
    (tree / "val" / "c0" / "broken.JPEG").write_bytes(b"not a jpeg")
    out = tmp_path / "store"
    assert prepare_main(["--format", "pixels", "--src", str(tree), "--out", str(out), "--short-side", "32",
                         "--img-size", "32", "--workers", "1"]) == 1
    assert "1 unreadable image(s)" in capsys.readouterr().err and not (out / MANIFEST).exists()
    (tree / "val" / "c0" / "broken.JPEG").unlink()
    with pytest.raises(ConfigError, match="overlap"):
        write_store(tree, tree / "store")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(ablate.data.store.shutil, "disk_usage", lambda _: usage(10**6, 10**6, 1000))
    with pytest.raises(ConfigError, match="the store needs .* more, the disk has"):
        write_store(tree, tmp_path / "other", short_side=32, img_size=32)
    assert not (tmp_path / "other" / "train.u8").exists()


def test_dry_run_sizes_imagenet_without_it(capsys):
    assert prepare_main(["--format", "pixels", "--dry-run", "--train-images", "126689", "--val-images", "5000"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("store: 31.6 GiB (126,689 train images in a 256×341 box") and "peak host RSS" in out


# --- the batched loader -------------------------------------------------------------------------------------------

def test_auto_picks_the_batched_path_for_stores_and_augmenting_recipes(tree, tmp_path, monkeypatch):
    out = tmp_path / "store"
    write_store(tree, out, short_side=32, img_size=32, workers=1)
    store_cfg = compose(["data=folder", f"data.root={out}", "data.img_size=32"])
    store = build_data(to_spec(store_cfg))
    assert pick_loader(to_spec(store_cfg), store, CPU) == "batched"
    torch_loader = to_spec(compose(["data=folder", f"data.root={out}", "data.img_size=32", "data.loader=torch"]))
    with pytest.raises(ConfigError, match="is a pixel store, read by data.loader=batched"):
        pick_loader(torch_loader, store, CPU)
    with pytest.raises(ConfigError, match="prepared for data.img_size=32 and model.crop_pct=0.9, not 64"):
        build_data(to_spec(compose(["data=folder", f"data.root={out}", "data.img_size=64"])))
    folder_cfg = compose(["data=folder", f"data.root={tree}", "data.img_size=32", "data.loader=batched"])
    with pytest.raises(ConfigError, match="reads a pixel store or an in-memory set; make a store"):
        pick_loader(to_spec(folder_cfg), build_data(to_spec(folder_cfg)), CPU)
    digits = build_data(to_spec(compose()))
    assert pick_loader(to_spec(compose()), digits, CPU) == "tensors"  # the default run: unchanged
    assert pick_loader(to_spec(compose(["train=paper"])), digits, CPU) == "batched"
    assert pick_loader(to_spec(compose(["+data.loader=batched"])), digits, CPU) == "batched"


def test_batched_loader_is_seeded_per_seed_epoch_and_rank():
    cfg = compose(["train=paper", "train.batch_size=16"])
    data = build_data(to_spec(cfg))
    train, val = build_loaders(to_spec(cfg), data, CPU)
    assert isinstance(train, TensorBatches) and data.info["loader"] == "batched"
    x, y = next(iter(train))
    assert x.shape == (16, 3, 32, 32) and y.dtype == torch.int64
    vx, _ = next(iter(val))
    assert vx.shape == (32, 3, 32, 32)

    def first(seed: int, epoch: int, rank: int) -> torch.Tensor:
        sampler = DistributedSampler(train.sampler.dataset, num_replicas=2, rank=rank, seed=seed)
        sampler.set_epoch(epoch)
        loader = TensorBatches(PixelSplit(tuple(train.tensors), train.transform), sampler, 16, True, CPU)
        return next(iter(loader))[0]

    a = first(0, 1, 0)
    assert torch.equal(a, first(0, 1, 0))  # a resumed epoch sees the same batch
    assert not any(torch.equal(a, first(*other)) for other in ((1, 1, 0), (0, 2, 0), (0, 1, 1)))


def test_cpu_batches_come_from_one_thread_workers_and_do_not_depend_on_them(monkeypatch):
    pixels = torch.randint(0, 256, (96, 36, 48, 3), dtype=torch.uint8)
    paper = TrainRecipe.from_config(to_spec(compose(["train=paper"])), torch.tensor([36, 48, 0]).expand(96, 3))
    seen = []

    def recipe(batch, index, g):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return paper(batch, index, g)

    split = PixelSplit((pixels, torch.arange(96)), recipe)
    inline = list(TensorBatches(split, range(64), 16, True, CPU, workers=0))
    assert {name for name, _ in seen} == {threading.main_thread().name}
    seen.clear()
    threads = torch.get_num_threads()
    for workers in (1, 2):
        batches = list(TensorBatches(split, range(64), 16, True, CPU, workers=workers))
        assert all(torch.equal(a, b) for (a, _), (b, _) in zip(inline, batches)) and len(batches) == 4
    assert all(name.startswith("batches") and n == 1 for name, n in seen)  # one torch thread per worker
    assert torch.get_num_threads() == threads  # the caller's own count is untouched
    # A consumer that stops early (the trainer's islice) leaves no batch being made.
    first = next(iter(TensorBatches(split, range(64), 16, True, CPU, workers=2)))
    assert torch.equal(first[0], inline[0][0])
    assert not any(t.name.startswith("batches") for t in threading.enumerate())
    # Chunks are for speed only: the recipe's images do not depend on them.
    monkeypatch.setattr(ablate.data.augment, "CPU_CHUNK", 5)
    assert torch.equal(next(iter(TensorBatches(split, range(64), 16, True, CPU)))[0], inline[0][0])


def test_a_batch_given_back_is_made_again_in_full():
    pixels = torch.randint(0, 256, (96, 36, 48, 3), dtype=torch.uint8)
    meta = torch.tensor([36, 48, 0]).expand(96, 3)
    paper = TrainRecipe.from_config(to_spec(compose(["train=paper"])), meta)
    split = PixelSplit((pixels, torch.arange(96)), paper)
    fresh = [x for x, _ in TensorBatches(split, range(96), 16, True, CPU)]
    for workers in (0, 2):
        loader, made, addresses = TensorBatches(split, range(96), 16, True, CPU, workers=workers), [], set()
        for x, _ in loader:
            made.append(x.clone())
            addresses.add(x.data_ptr())
            x.fill_(float("nan"))  # what a consumer leaves behind must not show in a later batch
            loader.give_back(x)
        assert len(made) == 6 and all(torch.equal(a, b) for a, b in zip(fresh, made))
        assert len(addresses) < 6  # the memory was used again


@pytest.mark.slow
def test_resumed_batched_run_continues_exactly(tmp_path, monkeypatch, interrupt_at_epoch):
    cfg = compose(["model=xs", "train=paper", "train.epochs=3", "train.warmup_epochs=1", "train.cooldown_epochs=0",
                   "train.batch_size=64", "train.lr=2e-3"])
    run(to_spec(cfg), tmp_path / "whole")
    with monkeypatch.context() as m:
        interrupt_at_epoch(2, m)
        with pytest.raises(KeyboardInterrupt):
            run(to_spec(cfg), tmp_path / "split")
    record = run(to_spec(cfg), tmp_path / "split")
    assert record.status == "completed" and record.data_info["loader"] == "batched"
    rows = [(tmp_path / name / "history.csv").read_text().splitlines() for name in ("whole", "split")]
    columns = rows[0][0].split(",")
    keep = [columns.index(k) for k in ("epoch", "lr", "train_loss", "val_loss", "top1")]
    assert [[r.split(",")[i] for i in keep] for r in rows[0]] == [[r.split(",")[i] for i in keep] for r in rows[1]]


@pytest.mark.gpu
def test_host_store_batches_equal_device_store_batches(monkeypatch):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cuda = torch.device("cuda")
    cfg = compose(["train=paper", "train.batch_size=32", "train.reprob=0"])
    data = build_data(to_spec(cfg))
    train, _ = data.pixels(cfg)
    sampler = DistributedSampler(train, num_replicas=1, rank=0, seed=0)
    resident = list(TensorBatches(train, sampler, 32, True, cuda))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *_: (0, 0))  # as if it did not fit: pinned host copy
    host = TensorBatches(train, sampler, 32, True, cuda)
    assert host.home == CPU
    for (x, y), (hx, hy) in zip(resident, host):
        assert hx.device.type == "cuda" and torch.equal(x, hx) and torch.equal(y, hy)
