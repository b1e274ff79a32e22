"""Class-folder image trees: the one loader behind ``data=folder``, ``data=imagenet`` and ``data=imagenet100``.

Layout (torchvision's ImageFolder): ``ROOT/train/<class>/**/<image>`` and ``ROOT/val/<class>/**/<image>``, images
being files with one of torchvision's IMG_EXTENSIONS (any case). Labels are the class names in sorted order, so a
tree gets the same labels here as in ImageFolder. Names starting with "." are skipped at every depth (not classes,
not images: a Mac's ``._x.JPEG``, ``.ipynb_checkpoints/``), and their number goes into the record.

Start-up checks, each a one-line ConfigError naming the key, before any training: data.root set and a directory;
train/ and val/ present and holding class folders; val/ holding the same classes as train/; every class folder holding
at least one image. Files are listed, not decoded: decoding ImageNet's 1.33M files would cost far more than listing
them.

Unreadable images fail with their path; none is ever skipped. An ablation compares variants, so each must see the
same images, and a skip made inside a DataLoader worker could not be counted in the record written at start-up.
With ``data.verify=true`` (the default for data=folder) every image is decoded at start-up and one ConfigError gives
the number of unreadable files and the first paths; otherwise the first load of a broken file raises
UnreadableImageError naming it.
"""
import logging
import os
from collections import Counter
from collections.abc import Callable
from multiprocessing.pool import ThreadPool
from pathlib import Path

from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import pil_loader

from ablate.data import DATASETS, DataBundle
from ablate.data.listing import IMG_EXTENSIONS, hidden, image_files
from ablate.data.transforms import eval_transform, train_transform
from ablate.errors import ConfigError, UnreadableImageError

log = logging.getLogger(__name__)
SPLITS = ("train", "val")
LAYOUT = "a folder with train/<class>/<image> and val/<class>/<image>"


class ImageFolderSplit(Dataset):
    """One split as (path, label) pairs; images are decoded when an item is read."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], transform: Callable) -> None:
        self.samples, self.classes, self.transform = samples, classes, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return self.transform(load_image(path)), label


def load_image(path: str) -> Image.Image:
    try:
        return pil_loader(path)
    except (OSError, SyntaxError) as err:  # what PIL raises for truncated, corrupt and non-image files
        raise UnreadableImageError(f"cannot read image {path}: {err}; remove or replace it (data.verify=true finds "
                                   f"every unreadable image before training)") from err


def preview(names: list[str], k: int = 5) -> str:
    """The first ``k`` names and how many more, for one-line errors."""
    return ", ".join(names[:k]) + (f" (+{len(names) - k} more)" if len(names) > k else "")


def root_dir(cfg: DictConfig, holds: str) -> Path:
    """``data.root`` as an existing directory; ``holds`` describes what it must be, for the error."""
    if cfg.data.root is None:
        raise ConfigError(f"data.root must point to {holds} (data={cfg.data.name})")
    root = Path(cfg.data.root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.root={cfg.data.root}: no such directory; it must point to {holds}")
    return root


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


def is_store(root: Path) -> bool:
    """A pixel store (python -m ablate.data.prepare --format pixels) rather than a tree of images."""
    return (root / "store.json").is_file()


def decode_error(path: str) -> str | None:
    """Why ``path`` cannot be decoded, or None when it can."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (1, 1))  # JPEGs decode at 1/8 scale: much faster, and every byte is still read
            img.load()
    except (OSError, SyntaxError) as err:
        return f"{path} ({err})"
    return None


def verify_images(samples: list[tuple[str, int]], where: str) -> None:
    with ThreadPool() as pool:  # PIL releases the GIL while decoding; chunks keep ImageNet's 1.3M paths cheap
        errors = [e for e in pool.imap(decode_error, (path for path, _ in samples), chunksize=64) if e]
    if errors:
        raise ConfigError(f"{where}: {len(errors)} unreadable image(s): {preview(errors, 3)}; "
                          "remove or replace them (data.verify=false defers this check to loading)")


def image_folder_bundle(cfg: DictConfig, root: Path, classes: list[str] | None = None,
                        expect_classes: int | None = None) -> DataBundle:
    """Train/val sets of the tree at ``root`` with the paper's transforms.

    ``classes`` picks those class folders (others are ignored); by default train/'s class folders are the classes
    and val/ must hold the same ones. ``expect_classes`` checks their number.
    """
    where = f"data.root={cfg.data.root}"
    if is_store(root):
        from ablate.data.store import store_bundle  # the store module builds on this one's scan
        return store_bundle(cfg, root, classes, expect_classes)
    skipped: list[str] = []
    if classes is None:
        classes = class_folders(root, "train", where, skipped)
        val_classes = class_folders(root, "val", where, skipped)
        if val_classes != classes:
            missing, extra = sorted(set(classes) - set(val_classes)), sorted(set(val_classes) - set(classes))
            raise ConfigError(f"{where}: val/ classes differ from train/'s: "
                              f"missing in val/: {preview(missing) or '-'}; only in val/: {preview(extra) or '-'}")
    if expect_classes is not None and len(classes) != expect_classes:
        raise ConfigError(f"{where}: train/ has {len(classes)} class folders, data={cfg.data.name} needs "
                          f"{expect_classes} (data=folder takes any number)")
    train, val = (scan(root, split, classes, where, skipped) for split in SPLITS)
    if skipped:
        log.info("%s: skipped %d hidden files and folders (names starting with \".\"), e.g. %s", where, len(skipped),
                 preview(skipped, 3))
    if cfg.data.verify:
        verify_images(train + val, where)
    info = {"root": str(root), "num_classes": len(classes), "train_images": len(train), "val_images": len(val),
            "verified": bool(cfg.data.verify), "hidden_skipped": len(skipped)}
    return DataBundle(ImageFolderSplit(train, classes, train_transform(cfg)),
                      ImageFolderSplit(val, classes, eval_transform(cfg)), len(classes), info)


@DATASETS.register("folder")
def folder(cfg: DictConfig) -> DataBundle:
    return image_folder_bundle(cfg, root_dir(cfg, LAYOUT))
