"""A prepared pixel store: a class-folder tree as memory-mappable uint8 arrays, read by ``data.loader=batched``.

    python -m ablate.data.prepare --format pixels --src ROOT --out DIR [--short-side 256 --img-size 224 ...]

Train images are resized (PIL, antialiased bicubic, never upscaled) so that the shorter side is at most
``short_side`` and the longer at most ``long_side``, and stored in one fixed landscape box of short × long pixels
(NHWC, uint8): a portrait image is stored transposed, so no box space goes to orientation. ``train_meta.npy`` holds
each image's true height, width and whether it is transposed. Val images are stored ready for evaluation, exactly as
timm's eval transform makes them before normalisation: shorter side resized to int(img_size / crop_pct) (bicubic),
centre-cropped to img_size².

Files in DIR: ``train.u8``, ``val.u8`` (raw arrays), ``{train,val}_meta.npy``, ``{train,val}_labels.npy`` and
``store.json`` (the manifest: shapes, classes, counts, settings, each file's size and BLAKE2b sums per 64 MiB chunk;
ablate/data/storecheck.py), written last: a store without it is unfinished, and refused as such. Written images are
marked in the meta file every few thousand images and when the writing stops, so a rerun resumes. A rerun over a
finished store checks every chunk: a whole store is kept as it is, and the images of damaged chunks (or missing
files) are written again. The source is only read.
"""
import json
import os
import shutil
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from ablate.data import DataBundle
from ablate.data.listing import SPLITS, Walk, load_image, preview, scan, tree_classes
from ablate.data.storecheck import (
    FILES,
    FORMAT,
    MANIFEST,
    PROGRESS,
    check_store,
    damage,
    describe,
    read_finished,
    read_json,
)
from ablate.data.transforms import eval_pil
from ablate.errors import ConfigError
from ablate.specs import RunSpec

SAVE_EVERY = 4096  # images between progress saves: what a killed run may redo
CHUNK = 2**28  # bytes per copy when moving a store to the GPU


@dataclass(frozen=True)
class Layout:
    """What a store holds: the train box, the val crop, and how many images."""

    short_side: int
    long_side: int
    img_size: int
    crop_pct: float
    train_images: int
    val_images: int

    def shape(self, split: str) -> tuple[int, int, int, int]:
        if split == "train":
            return self.train_images, self.short_side, self.long_side, 3
        return self.val_images, self.img_size, self.img_size, 3

    def nbytes(self, split: str) -> int:
        return int(np.prod(self.shape(split)))

    @property
    def total(self) -> int:
        return sum(self.nbytes(s) for s in SPLITS)


# --- turning one image into stored pixels -------------------------------------------------------------------------

def train_pixels(img: Image.Image, short_side: int, long_side: int) -> tuple[np.ndarray, int, int, bool]:
    """(HWC landscape pixels, true height, true width, transposed) of an RGB image (``load_image``'s), bounded by
    short_side × long_side."""
    w, h = img.size
    scale = min(1.0, short_side / min(w, h), long_side / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != img.size:
        img = img.resize(size, Image.BICUBIC)
    pixels = np.asarray(img)
    transposed = size[1] > size[0]
    return (pixels.transpose(1, 0, 2) if transposed else pixels), size[1], size[0], transposed


def val_pixels(img: Image.Image, img_size: int, crop_pct: float) -> np.ndarray:
    """timm's eval transform of an RGB image up to the tensor: Resize(int(img_size / crop_pct), bicubic),
    CenterCrop(img_size)."""
    return np.asarray(eval_pil(img_size, crop_pct)(img))


# --- writing ------------------------------------------------------------------------------------------------------

def _open(out: Path, split: str, layout: Layout, mode: str) -> np.memmap:
    return np.memmap(out / f"{split}.u8", np.uint8, mode, shape=layout.shape(split))


_WORKER: dict = {}


def quiet_worker() -> None:
    """A pool worker leaves SIGINT to its parent, which stops the pool and says so in one line, and ends quietly on
    SIGTERM (the parent's pool stopping, or a signal to the whole group) by SystemExit, which releases the pool's
    queue locks on the way out: a worker killed holding one would hang the pool's shutdown."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_quietly)


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _init_worker(out: Path, layout: Layout) -> None:
    quiet_worker()
    _WORKER.update(out=out, layout=layout, arrays={s: _open(out, s, layout, "r+") for s in SPLITS})


def _write_one(job: tuple[str, int, str]) -> tuple[str, int, tuple[int, int, int], str | None]:
    """Decode, resize and write one image into its slot; (split, index, meta, error)."""
    split, i, path = job
    layout = _WORKER["layout"]
    try:
        img = load_image(path)
        if split == "train":
            pixels, h, w, transposed = train_pixels(img, layout.short_side, layout.long_side)
            meta = (h, w, int(transposed))
        else:
            pixels, meta = val_pixels(img, layout.img_size, layout.crop_pct), (layout.img_size, layout.img_size, 0)
    except OSError as err:
        return split, i, (0, 0, 0), str(err)
    _WORKER["arrays"][split][i, :pixels.shape[0], :pixels.shape[1]] = pixels
    return split, i, meta, None


def _save_npy(path: Path, array: np.ndarray) -> None:
    part = path.with_name(f".{path.name}.part")
    with open(part, "wb") as f:
        np.save(f, array)
    os.replace(part, path)


def plan_store(src: Path, short_side: int, long_side: int, img_size: int, crop_pct: float
               ) -> tuple[Layout, list[str], dict[str, list[tuple[str, int]]]]:
    """The layout, classes and (path, label) lists of ``src``: files listed, none decoded."""
    where = f"--src {src}"
    if not src.is_dir():
        raise ConfigError(f"{where}: no such directory")
    walk = Walk()
    classes = tree_classes(src, where, walk)
    samples = {split: scan(src, split, classes, where, walk) for split in SPLITS}
    walk.warn(where)
    layout = Layout(short_side, long_side, img_size, crop_pct, len(samples["train"]), len(samples["val"]))
    return layout, classes, samples


def write_store(src: Path, out: Path, short_side: int = 256, long_side: int | None = None, img_size: int = 224,
                crop_pct: float = 0.9, workers: int | None = None) -> Counter:
    """Write, finish or repair the store of ``src`` in ``out``; counts, the unreadable files under "errors" and
    what was found damaged under "damaged" (its images are written again)."""
    long_side = long_side or round(short_side * 4 / 3)
    s, o = src.resolve(), out.resolve()
    if o == s or o.is_relative_to(s) or s.is_relative_to(o):
        raise ConfigError(f"--out {out} and --src {src} overlap; the store must go elsewhere")
    layout, classes, samples = plan_store(src, short_side, long_side, img_size, crop_pct)
    settings = {"format": FORMAT, "layout": layout.__dict__, "classes": classes}
    damaged = _check_finished(out, settings, layout)
    if damaged is None:
        return Counter(kept=layout.train_images + layout.val_images, errors=[], damaged=[])
    out.mkdir(parents=True, exist_ok=True)
    progress = out / PROGRESS
    unfinished = read_json(progress)
    if progress.exists() and {k: (unfinished or {}).get(k) for k in settings} != settings:
        raise ConfigError(f"--out {out} holds an unfinished store with other settings; remove it or match them")
    # Blocks already allocated: the arrays are sparse files until written.
    have = sum((out / f"{split}.u8").stat().st_blocks * 512 for split in SPLITS if (out / f"{split}.u8").exists())
    free = shutil.disk_usage(out).free
    if free < layout.total - have:
        raise ConfigError(f"--out {out}: the store needs {gib(layout.total - have)} more, "
                          f"the disk has {gib(free)} free")
    progress.write_text(json.dumps({**settings, "source": str(src.absolute())}))
    metas = {}
    for split in SPLITS:
        with open(out / f"{split}.u8", "ab") as f:
            f.truncate(layout.nbytes(split))  # sparse until written
        metas[split] = _load_meta(out / f"{split}_meta.npy", layout.shape(split)[0])
        _save_npy(out / f"{split}_labels.npy", np.array([label for _, label in samples[split]], np.int16))
    jobs = [(split, i, path) for split in SPLITS for i, (path, _) in enumerate(samples[split])
            if metas[split][i, 0] == 0]
    totals = Counter(kept=layout.train_images + layout.val_images - len(jobs))
    totals["errors"] = _write_images(out, layout, jobs, metas, samples, workers, totals)
    totals["damaged"] = damaged
    if not totals["errors"]:
        counts = {split: len(samples[split]) for split in SPLITS}
        info = {**settings, "source": str(src.absolute()), "images": counts, "bytes": layout.total, **describe(out)}
        part = out / f".{MANIFEST}.part"
        part.write_text(json.dumps(info, indent=1))
        os.replace(part, out / MANIFEST)
        progress.unlink()
    return totals


def _write_images(out: Path, layout: Layout, jobs: list[tuple[str, int, str]], metas: dict[str, np.ndarray],
                  samples: dict[str, list[tuple[str, int]]], workers: int | None, totals: Counter) -> list[str]:
    """Write ``jobs``' images by a pool of processes, marking each in ``metas``, saved every SAVE_EVERY images and
    however this ends (an interrupt too: a rerun resumes); the unreadable files' errors."""
    errors, workers = [], workers or os.cpu_count() or 1
    try:
        with Pool(workers, _init_worker, (out, layout)) as pool:
            results = pool.imap_unordered(_write_one, jobs, chunksize=chunk_size(len(jobs), workers, 16))
            for n, (split, i, meta, error) in enumerate(tqdm(results, total=len(jobs), desc="store", unit="img"), 1):
                if error:
                    errors.append(f"{samples[split][i][0]} ({error})")
                else:
                    metas[split][i] = meta
                    totals["written"] += 1
                if n % SAVE_EVERY == 0:  # the pixels are in the page cache: marking them done is safe
                    _save_metas(out, metas)
    finally:
        _save_metas(out, metas)
    return errors


def chunk_size(jobs: int, workers: int, most: int) -> int:
    """Jobs a pool worker takes at a time: ``most``, fewer for a short list (a quarter of each worker's share, as
    Pool.map picks), so that every worker has work and results come back (to be marked, or kept when stopped)."""
    return max(1, min(most, jobs // (4 * workers)))


def _save_metas(out: Path, metas: dict[str, np.ndarray]) -> None:
    for split, meta in metas.items():
        _save_npy(out / f"{split}_meta.npy", meta)


def _load_meta(path: Path, n: int) -> np.ndarray:
    """Which images a split holds (height, width, transposed; 0 where not yet written); none when the file is
    missing or unreadable."""
    try:
        meta = np.load(path)
    except (OSError, ValueError, EOFError):
        meta = None
    return meta if meta is not None and meta.shape == (n, 3) else np.zeros((n, 3), np.int16)


def _check_finished(out: Path, settings: dict, layout: Layout) -> list[str] | None:
    """None when ``out`` holds this finished store, whole (every chunk's sum checked); else what is damaged ([]
    for none: no store yet, or an unfinished one), its images' marks cleared so they are written again, and the
    store marked unfinished."""
    manifest = out / MANIFEST
    if not manifest.exists():
        return []
    kept = read_json(manifest) or {}
    if any(kept.get(k, settings[k]) != settings[k] for k in ("layout", "classes")):
        raise ConfigError(f"--out {out} holds a store with other settings or classes; choose another --out")
    if kept.get("format") == FORMAT and isinstance(kept.get("files"), dict):
        found = damage(out, kept, full=True)
        if not found:
            return None
        said = [f"{name}: {what}" for name, (what, _) in found.items()]
    else:  # garbled, or an older format: nothing to check the pixels against
        found = {name: ("", None) for name in FILES}
        said = [f"{MANIFEST} is unreadable or of an older format ({kept.get('format')!r}): every image is written "
                "again"]
    for split in SPLITS:
        _clear_marks(out, split, layout, found, kept.get("chunk_bytes"))
    manifest.unlink()  # after the marks: a kill in between leaves a store that the next check finds damaged again
    return said


def _clear_marks(out: Path, split: str, layout: Layout, found: dict[str, tuple[str, list[int] | None]],
                 chunk: int | None) -> None:
    """Mark ``split``'s images in damaged chunks as not written, their slots zeros again (as a new store's, whose
    boxes hold zeros beyond each image); all of them, by emptying the file, when its meta file is damaged."""
    meta = _load_meta(out / f"{split}_meta.npy", layout.shape(split)[0])
    pixels, marks, path = found.get(f"{split}.u8"), found.get(f"{split}_meta.npy"), out / f"{split}.u8"
    if marks is not None or (pixels is not None and pixels[1] is None):
        meta[:] = 0
        if path.exists():
            os.truncate(path, 0)  # write_store extends it again: a sparse file of zeros
    elif pixels is not None and path.exists():
        os.truncate(path, layout.nbytes(split))  # a cut file is extended with zeros, a longer one cut back
        slots = _open(out, split, layout, "r+")
        per_image = max(1, layout.nbytes(split) // max(1, len(meta)))
        for c in pixels[1]:
            images = slice(c * chunk // per_image, -(-(c + 1) * chunk // per_image))
            meta[images], slots[images] = 0, 0
        slots.flush()
    elif pixels is not None:  # missing: write_store makes it anew
        meta[:] = 0
    _save_npy(out / f"{split}_meta.npy", meta)


def gib(n: float) -> str:
    """A size in GiB, or MiB below one GiB."""
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


# --- reading ------------------------------------------------------------------------------------------------------

class PixelSplit:
    """One split as tensors of the same length (pixels NHWC uint8 first, labels last), gathered a batch at a time by
    ``TensorBatches`` and turned into the model's input by ``transform(batch, index, generator) → (x, y)``, where
    ``index`` (CPU) says which images the batch holds. The transform reads the batch's pixels and returns new tensors:
    on the CPU the next batch's pixels are gathered into the same memory."""

    def __init__(self, tensors: tuple[Tensor, ...], transform: Callable) -> None:
        self.tensors, self.transform = tensors, transform

    def __len__(self) -> int:
        return len(self.tensors[0])


def open_split(root: Path, split: str, manifest: dict) -> tuple[Tensor, Tensor, Tensor]:
    """Pixels (memory-mapped, copy-on-write: never written), meta and labels of one split."""
    layout = Layout(**manifest["layout"])
    pixels = torch.from_numpy(_open(root, split, layout, "c"))
    meta = torch.from_numpy(np.load(root / f"{split}_meta.npy").astype(np.int32))
    labels = torch.from_numpy(np.load(root / f"{split}_labels.npy").astype(np.int64))
    return pixels, meta, labels


def store_bundle(cfg: RunSpec, root: Path, classes: list[str] | None, expect_classes: int | None) -> DataBundle:
    """A store's train and val splits, checked against the config: the classes asked for, and the val crop."""
    from ablate.data.augment import TrainRecipe
    where = f"data.root={cfg.data.root}"
    manifest = read_finished(root, where)
    check_store(root, manifest, where, full=bool(cfg.data.verify))
    layout = Layout(**manifest["layout"])
    stored = manifest["classes"]
    if len(stored) < 2:
        raise ConfigError(f"{where}: the store holds {len(stored)} class; a classifier needs at least 2")
    if classes is not None and stored != classes:
        raise ConfigError(f"{where}: the store's {len(stored)} classes are not data={cfg.data.name}'s "
                          f"{len(classes)}; missing: {preview(sorted(set(classes) - set(stored))) or '-'}")
    if expect_classes is not None and len(stored) != expect_classes:
        raise ConfigError(f"{where}: the store has {len(stored)} classes, data={cfg.data.name} needs {expect_classes}")
    if (layout.img_size, layout.crop_pct) != (cfg.data.img_size, cfg.model.crop_pct):
        raise ConfigError(f"{where}: its val split was prepared for data.img_size={layout.img_size} and "
                          f"model.crop_pct={layout.crop_pct}, not {cfg.data.img_size} and {cfg.model.crop_pct}; "
                          "prepare a store for these (python -m ablate.data.prepare --format pixels)")
    train, val = (open_split(root, split, manifest) for split in SPLITS)
    info = {"root": str(root), "num_classes": len(stored), "train_images": len(train[0]),
            "val_images": len(val[0]), "store": {**{k: manifest[k] for k in ("checksum", "bytes", "source")},
                                                 "verified": bool(cfg.data.verify)}}
    (pixels, meta, labels), (ready, _, val_labels) = train, val
    return DataBundle(PixelSplit((pixels, labels), TrainRecipe.from_config(cfg, meta)),
                      PixelSplit((ready, val_labels), eval_batch), len(stored), info)


def eval_batch(batch: list[Tensor], *_) -> tuple[Tensor, Tensor]:
    """Ready val pixels → the model's input: only normalisation is left."""
    from ablate.data.augment import to_normalised
    pixels, labels = batch
    return to_normalised(pixels), labels


def in_memory_pixels(cfg: RunSpec, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor]
                     ) -> tuple[PixelSplit, PixelSplit]:
    """An in-memory set (uint8 images N×H×W grey or N×H×W×3, labels) as store splits: train as they are, val made
    ready by the eval transform, as a store's is."""
    from ablate.data.augment import TrainRecipe
    (train_x, train_y), (val_x, val_y) = train, val
    rgb = [x if x.dim() == 4 else x[..., None].expand(*x.shape, 3) for x in (train_x, val_x)]
    n, h, w = rgb[0].shape[:3]
    meta = torch.tensor([h, w, 0], dtype=torch.int32).expand(n, 3)
    prepare = eval_pil(cfg.data.img_size, cfg.model.crop_pct)
    ready = torch.from_numpy(np.stack([np.asarray(prepare(Image.fromarray(img.numpy()))) for img in rgb[1]]))
    return PixelSplit((rgb[0], train_y), TrainRecipe.from_config(cfg, meta)), PixelSplit((ready, val_y), eval_batch)


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """``t`` on ``device``, copied in chunks, so host memory holds one chunk at a time beyond the mapped file."""
    if t.device == device:
        return t
    out = torch.empty(t.shape, dtype=t.dtype, device=device)
    rows = max(1, CHUNK // max(1, t[0].numel() * t.element_size()))
    for i in range(0, len(t), rows):
        out[i:i + rows].copy_(t[i:i + rows])
    return out

