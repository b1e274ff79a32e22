"""A prepared pixel store: a class-folder tree as memory-mappable uint8 arrays, read by ``data.loader=batched``.

    python -m ablate.data.prepare --format pixels --src ROOT --out DIR [--short-side 256 --img-size 224 ...]

Train images are resized (PIL, antialiased bicubic, never upscaled) so that the shorter side is at most
``short_side`` and the longer at most ``long_side``, and stored in one fixed landscape box of short × long pixels
(NHWC, uint8): a portrait image is stored transposed, so no box space goes to orientation. ``train_meta.npy`` holds
each image's true height, width and whether it is transposed. Val images are stored ready for evaluation, exactly as
timm's eval transform makes them before normalisation: shorter side resized to int(img_size / crop_pct) (bicubic),
centre-cropped to img_size².

Files in DIR: ``train.u8``, ``val.u8`` (raw arrays), ``{train,val}_meta.npy``, ``{train,val}_labels.npy`` and
``store.json`` (the manifest: shapes, classes, counts, settings, a BLAKE2b checksum of the arrays), written last:
a store without it is unfinished. Written images are marked in the meta file every few thousand images, so a rerun
resumes; a finished store is kept as it is; the source is only read.
"""
import hashlib
import json
import os
import shutil
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
from ablate.data.listing import SPLITS, class_folders, load_image, preview, scan
from ablate.data.transforms import eval_pil
from ablate.errors import ConfigError
from ablate.specs import RunSpec

MANIFEST = "store.json"  # folder.is_store looks for it
FORMAT = "ablate-pixels-1"
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
    """(HWC landscape pixels, true height, true width, transposed), bounded by short_side × long_side."""
    w, h = img.size
    scale = min(1.0, short_side / min(w, h), long_side / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != img.size:
        img.draft("RGB", size)  # JPEGs decode at a reduced scale still ≥ size
        img = img.convert("RGB").resize(size, Image.BICUBIC)
    pixels = np.asarray(img.convert("RGB"))
    transposed = size[1] > size[0]
    return (pixels.transpose(1, 0, 2) if transposed else pixels), size[1], size[0], transposed


def val_pixels(img: Image.Image, img_size: int, crop_pct: float) -> np.ndarray:
    """timm's eval transform up to the tensor: Resize(int(img_size / crop_pct), bicubic), CenterCrop(img_size)."""
    return np.asarray(eval_pil(img_size, crop_pct)(img.convert("RGB")))


# --- writing ------------------------------------------------------------------------------------------------------

def _open(out: Path, split: str, layout: Layout, mode: str) -> np.memmap:
    return np.memmap(out / f"{split}.u8", np.uint8, mode, shape=layout.shape(split))


_WORKER: dict = {}


def _init_worker(out: Path, layout: Layout) -> None:
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
    classes = class_folders(src, "train", where)
    if class_folders(src, "val", where) != classes:
        raise ConfigError(f"{where}: val/ classes differ from train/'s")
    samples = {split: scan(src, split, classes, where) for split in SPLITS}
    layout = Layout(short_side, long_side, img_size, crop_pct, len(samples["train"]), len(samples["val"]))
    return layout, classes, samples


def write_store(src: Path, out: Path, short_side: int = 256, long_side: int | None = None, img_size: int = 224,
                crop_pct: float = 0.9, workers: int | None = None) -> Counter:
    """Write (or finish) the store of ``src`` in ``out``; counts, the unreadable files under "errors"."""
    long_side = long_side or round(short_side * 4 / 3)
    s, o = src.resolve(), out.resolve()
    if o == s or o.is_relative_to(s) or s.is_relative_to(o):
        raise ConfigError(f"--out {out} and --src {src} overlap; the store must go elsewhere")
    layout, classes, samples = plan_store(src, short_side, long_side, img_size, crop_pct)
    settings = {"format": FORMAT, "layout": layout.__dict__, "classes": classes}
    manifest = out / MANIFEST
    if manifest.exists():
        kept = json.loads(manifest.read_text())
        if {k: kept.get(k) for k in settings} != settings:
            raise ConfigError(f"--out {out} holds a store with other settings or classes; choose another --out")
        return Counter(kept=layout.train_images + layout.val_images, errors=[])
    out.mkdir(parents=True, exist_ok=True)
    progress = out / ".settings.json"  # an unfinished store's settings: a rerun must match them to resume
    if progress.exists() and json.loads(progress.read_text()) != settings:
        raise ConfigError(f"--out {out} holds an unfinished store with other settings; remove it or match them")
    # Blocks already allocated: the arrays are sparse files until written.
    have = sum((out / f"{split}.u8").stat().st_blocks * 512 for split in SPLITS if (out / f"{split}.u8").exists())
    free = shutil.disk_usage(out).free
    if free < layout.total - have:
        raise ConfigError(f"--out {out}: the store needs {gib(layout.total - have)} more, "
                          f"the disk has {gib(free)} free")
    progress.write_text(json.dumps(settings))
    metas = {}
    for split in SPLITS:
        with open(out / f"{split}.u8", "ab") as f:
            f.truncate(layout.nbytes(split))  # sparse until written
        path = out / f"{split}_meta.npy"
        metas[split] = np.load(path) if path.exists() else np.zeros((layout.shape(split)[0], 3), np.int16)
        _save_npy(out / f"{split}_labels.npy", np.array([label for _, label in samples[split]], np.int16))
    jobs = [(split, i, path) for split in SPLITS for i, (path, _) in enumerate(samples[split])
            if metas[split][i, 0] == 0]
    totals, errors = Counter(kept=layout.train_images + layout.val_images - len(jobs)), []
    with Pool(workers or os.cpu_count(), _init_worker, (out, layout)) as pool:
        results = pool.imap_unordered(_write_one, jobs, chunksize=16)
        for n, (split, i, meta, error) in enumerate(tqdm(results, total=len(jobs), desc="store", unit="img"), 1):
            if error:
                errors.append(f"{samples[split][i][0]} ({error})")
            else:
                metas[split][i] = meta
                totals["written"] += 1
            if n % SAVE_EVERY == 0:  # the pixels are in the page cache: marking them done is safe
                for name, meta_array in metas.items():
                    _save_npy(out / f"{name}_meta.npy", meta_array)
    for split in SPLITS:
        _save_npy(out / f"{split}_meta.npy", metas[split])
    totals["errors"] = errors
    if not errors:
        counts = {split: len(samples[split]) for split in SPLITS}
        info = {**settings, "source": str(src.absolute()), "images": counts, "bytes": layout.total,
                "checksum": checksum(out)}
        part = out / f".{MANIFEST}.part"
        part.write_text(json.dumps(info, indent=1))
        os.replace(part, manifest)
        progress.unlink()
    return totals


def checksum(out: Path) -> str:
    """BLAKE2b of every array file, in a fixed order."""
    digest = hashlib.blake2b(digest_size=16)
    for name in ("train.u8", "val.u8", "train_meta.npy", "val_meta.npy", "train_labels.npy", "val_labels.npy"):
        with open(out / name, "rb") as f:
            while block := f.read(2**24):
                digest.update(block)
    return digest.hexdigest()


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


def read_manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


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
    manifest = read_manifest(root)
    if manifest.get("format") != FORMAT:
        raise ConfigError(f"{where}: {MANIFEST} is not an {FORMAT} store manifest")
    layout = Layout(**manifest["layout"])
    stored = manifest["classes"]
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
            "val_images": len(val[0]), "store": {k: manifest[k] for k in ("checksum", "bytes", "source")}}
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

