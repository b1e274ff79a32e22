"""Image files of a class-folder tree, listed without decoding and without torch (the config checks use it).

Names starting with "." are skipped at every depth: the AppleDouble ``._x.JPEG`` files that copying from a Mac
leaves, ``.ipynb_checkpoints/``, ``.DS_Store``. Each skipped file or folder (not what a folder holds) is counted,
for the run record.
"""
import math
import os
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
DIGITS_IMAGES = 1797  # scikit-learn's load_digits
FIXED_TRAIN_IMAGES = {"fashion_mnist": 60_000}


def hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(folder: Path, skipped: list[str] | None) -> Iterator[tuple[str, list[str]]]:
    """(folder, its image names) at every depth under ``folder``, following links, hidden entries left out."""
    for root, dirs, files in os.walk(folder, followlinks=True):
        if skipped is not None:
            skipped += [os.path.join(root, n) for n in (*dirs, *files) if hidden(n)]
        dirs[:] = [d for d in dirs if not hidden(d)]
        yield root, [f for f in files if not hidden(f) and f.lower().endswith(IMG_EXTENSIONS)]


def image_files(folder: Path, skipped: list[str] | None = None) -> list[str]:
    """Every image under ``folder``, in torchvision's make_dataset order (folders, then files, sorted); the hidden
    entries passed over are added to ``skipped``."""
    return [os.path.join(root, name) for root, names in sorted(_walk(folder, skipped)) for name in sorted(names)]


def count_images(folders: list[Path], at_most: int) -> int:
    """The images under ``folders``, counted only until there are ``at_most``."""
    n = 0
    for folder in folders:
        for _, names in _walk(folder, None):
            n += len(names)
            if n >= at_most:
                return n
    return n


def train_images(cfg: DictConfig, at_most: int) -> int | None:
    """How many training images ``cfg.data`` holds (up to ``at_most``), without loading them; None when unknown
    here (the data set's own checks then speak first)."""
    name = cfg.data.name
    if name == "digits":  # train_test_split's test share is rounded up
        return DIGITS_IMAGES - math.ceil(cfg.data.val_fraction * DIGITS_IMAGES)
    if name in FIXED_TRAIN_IMAGES:
        return FIXED_TRAIN_IMAGES[name]
    root = cfg.data.get("root")
    train = Path(root).expanduser() / "train" if isinstance(root, str) else None
    if train is None or not train.is_dir():
        return None
    return count_images([p for p in train.iterdir() if p.is_dir() and not hidden(p.name)], at_most)
