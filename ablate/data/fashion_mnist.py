"""Fashion-MNIST (Zalando; 60,000 train and 10,000 test images, 28×28 grey, 10 classes) from its IDX files.

Debian's ``dataset-fashion-mnist`` package installs them gzipped in /usr/share/datasets/fashion-mnist (the default
``data.root``); any folder holding the four files, gzipped or not, works too. Like digits, the whole set stays in
memory as tensors: upscaled to ``data.img_size``, normalised with the train set's mean/std and shown to the model as
RGB (a broadcast view of one channel, so it costs no extra memory). The official test set is the val split. With
``data.loader=batched`` (auto's choice when the recipe augments images) the 28×28 pixels themselves go through the
paper's recipe, batched on the device (ablate/data/augment.py).
"""
import gzip
from math import prod
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from ablate.data import DATASETS, TRAIN_IMAGES, DataBundle
from ablate.data.folder import root_dir
from ablate.data.store import in_memory_pixels
from ablate.errors import ConfigError
from ablate.specs import RunSpec

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
HOLDS = ("a folder with the Fashion-MNIST IDX files " + ", ".join(f"{n}[.gz]" for pair in FILES.values() for n in pair)
         + " (`apt-get install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist)")
NUM_CLASSES = 10
TRAIN_SIZE = 60_000  # the official train split
# IDX type codes (http://yann.lecun.com/exdb/mnist/): the data are big-endian.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """The array in an IDX file (gzipped when the name ends in .gz): magic 0 0 type ndim, ndim uint32 sizes, data."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    offset = 4 + 4 * raw[3]
    if len(raw) < offset:
        raise ValueError(f"{path}: IDX header cut short")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", raw[3], 4))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    size = prod(shape) * dtype.itemsize
    if len(raw) - offset != size:
        raise ValueError(f"{path}: {len(raw) - offset} data bytes, but shape {shape} needs {size}")
    return np.frombuffer(raw, dtype, offset=offset).astype(dtype.newbyteorder("=")).reshape(shape)


def find_file(root: Path, name: str) -> Path | None:
    return next((p for p in (root / name, root / f"{name}.gz") if p.is_file()), None)


def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images N×28×28, int64 labels N) of one split."""
    where = f"data.root={root}"
    paths = [find_file(root, name) for name in FILES[split]]
    if None in paths:
        missing = [name for name, p in zip(FILES[split], paths) if p is None]
        raise ConfigError(f"{where}: missing {', '.join(missing)} (or .gz); data.root must point to {HOLDS}")
    try:
        images, labels = (read_idx(p) for p in paths)
    except (OSError, ValueError) as err:  # OSError: a broken gzip stream
        raise ConfigError(f"{where}: {err}") from err
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ConfigError(f"{where}: {split} images {images.shape} do not match labels {labels.shape}")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ConfigError(f"{where}: {split} labels outside 0-{NUM_CLASSES - 1}")
    return torch.from_numpy(images), torch.from_numpy(labels).long()


@TRAIN_IMAGES.register("fashion_mnist")
def train_images(cfg: RunSpec, at_most: int) -> int:
    return TRAIN_SIZE


@DATASETS.register("fashion_mnist")
def fashion_mnist(cfg: RunSpec) -> DataBundle:
    root = root_dir(cfg, HOLDS)
    (train_x, train_y), (val_x, val_y) = (load_split(root, split) for split in FILES)
    size = cfg.data.img_size

    def as_pixels(cfg: RunSpec):
        return in_memory_pixels(cfg, (train_x, train_y), (val_x, val_y))

    def prepare(images: torch.Tensor) -> torch.Tensor:
        x = images.unsqueeze(1).float().div_(255)
        return x if x.shape[-1] == size else F.interpolate(x, size=size, mode="bilinear", antialias=True)

    train_t, val_t = prepare(train_x), prepare(val_x)
    mean, std = train_t.mean(), train_t.std()
    train_t, val_t = ((x.sub_(mean).div_(std)).expand(-1, 3, -1, -1) for x in (train_t, val_t))
    return DataBundle(TensorDataset(train_t, train_y), TensorDataset(val_t, val_y), NUM_CLASSES,
                      {"root": str(root), "train_images": len(train_y), "val_images": len(val_y)}, as_pixels)
