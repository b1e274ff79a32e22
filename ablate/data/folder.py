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
from collections.abc import Callable
from multiprocessing.pool import ThreadPool
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from ablate.data import DATASETS, TRAIN_IMAGES, DataBundle
from ablate.data.listing import SPLITS, class_folders, count_images, load_image, preview, scan, split_dir
from ablate.data.transforms import eval_transform, train_transform
from ablate.errors import ConfigError
from ablate.specs import RunSpec

log = logging.getLogger(__name__)
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


def root_dir(cfg: RunSpec, holds: str) -> Path:
    """``data.root`` as an existing directory; ``holds`` describes what it must be, for the error."""
    if cfg.data.root is None:
        raise ConfigError(f"data.root must point to {holds} (data={cfg.data.name})")
    root = Path(cfg.data.root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.root={cfg.data.root}: no such directory; it must point to {holds}")
    return root


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


def image_folder_bundle(cfg: RunSpec, root: Path, classes: list[str] | None = None,
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


@TRAIN_IMAGES.register("folder")
def tree_train_images(cfg: RunSpec, at_most: int) -> int | None:
    """The images under train/'s class folders, up to ``at_most``; None for a pixel store (its own checks speak).
    A root without train/ or without class folders in it is refused here, before a run writes anything."""
    root = root_dir(cfg, LAYOUT)
    if is_store(root):
        return None
    where = f"data.root={cfg.data.root}"
    train = split_dir(root, "train", where)
    return count_images([train / c for c in class_folders(root, "train", where)], at_most)


@DATASETS.register("folder")
def folder(cfg: RunSpec) -> DataBundle:
    return image_folder_bundle(cfg, root_dir(cfg, LAYOUT))
