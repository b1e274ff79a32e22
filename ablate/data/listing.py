"""Image files of a class-folder tree, listed without decoding and without torch.

Names starting with "." are skipped at every depth: the AppleDouble ``._x.JPEG`` files that copying from a Mac
leaves, ``.ipynb_checkpoints/``, ``.DS_Store``. Each skipped file or folder (not what a folder holds) is counted,
for the run record.
"""
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from ablate.errors import ConfigError, UnreadableImageError

SPLITS = ("train", "val")
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's


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


def preview(names: list[str], k: int = 5) -> str:
    """The first ``k`` names and how many more, for one-line errors."""
    return ", ".join(names[:k]) + (f" (+{len(names) - k} more)" if len(names) > k else "")


def split_dir(root: Path, split: str, where: str) -> Path:
    path = root / split
    if not path.is_dir():
        raise ConfigError(f"{where}: no {split}/ folder (expected {split}/<class>/<image>)")
    return path


def class_folders(root: Path, split: str, where: str, skipped: list[str] | None = None) -> list[str]:
    """The class folders of ``split``; hidden ones are added to ``skipped``."""
    with os.scandir(split_dir(root, split, where)) as entries:
        folders = [e for e in entries if e.is_dir()]
    if skipped is not None:
        skipped += [e.path for e in folders if hidden(e.name)]
    names = sorted(e.name for e in folders if not hidden(e.name))
    if not names:  # e.g. ImageNet's val/ as the tarball ships it: 50,000 files and no class folders
        raise ConfigError(f"{where}: {split}/ has no class folders; images must sit in {split}/<class>/ to be labelled")
    return names


def scan(root: Path, split: str, classes: list[str], where: str,
         skipped: list[str] | None = None) -> list[tuple[str, int]]:
    """(path, label) of every image under ``split/<class>/``, hidden entries passed over (and added to ``skipped``);
    a class without images is an error."""
    folder = split_dir(root, split, where)
    samples = [(path, label) for label, c in sorted(enumerate(classes), key=lambda lc: lc[1])
               for path in image_files(folder / c, skipped)]
    counts = Counter(label for _, label in samples)
    empty = [c for i, c in enumerate(classes) if not counts[i]]
    if empty:
        raise ConfigError(f"{where}: no images ({' '.join(IMG_EXTENSIONS)}) in {split}/ class folders: "
                          f"{preview(empty)}")
    return samples


def load_image(path: str) -> Image.Image:
    try:
        with open(path, "rb") as f:  # as torchvision's pil_loader, without importing torch
            return Image.open(f).convert("RGB")
    except (OSError, SyntaxError) as err:  # what PIL raises for truncated, corrupt and non-image files
        raise UnreadableImageError(f"cannot read image {path}: {err}; remove or replace it (data.verify=true finds "
                                   f"every unreadable image before training)") from err
