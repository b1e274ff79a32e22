"""Image files of a class-folder tree, listed without decoding and without torch, and the one function that decodes
them.

Names starting with "." are skipped at every depth: the AppleDouble ``._x.JPEG`` files that copying from a Mac
leaves, ``.ipynb_checkpoints/``, ``.DS_Store``. Each skipped file or folder (not what a folder holds) is counted,
for the run record.

Directory links are followed where they lead out of the tree (the ImageNet-100 builder's class folders link into
ImageNet), each real folder once. A link that leads back into the tree (a loop such as ``train/c0/x -> ..``, a link
into another class folder or into the data root) or to a folder already listed is not followed: its images would
count twice, or under another class. Such links are named in one warning line and counted for the record.
"""
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ablate.errors import ConfigError, UnreadableImageError

SPLITS = ("train", "val")
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
# PIL modes that convert("RGB") turns into 8-bit RGB without losing a level: 8 bits a channel, a palette, bilevel.
EIGHT_BIT = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
# Greyscale of 16 bits a sample (PIL's "I" holds them too), scaled to 8 bits by their high byte, as torchvision's
# to_dtype(uint16 → uint8, scale=True) does and as PIL itself reads 16-bit RGB(A) PNGs.
SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
log = logging.getLogger(__name__)


def hidden(name: str) -> bool:
    return name.startswith(".")


def _overlap(a: str, b: str) -> bool:
    """Whether real paths ``a`` and ``b`` are the same folder or one holds the other."""
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep) or b.startswith(a.rstrip(os.sep) + os.sep)


@dataclass
class Walk:
    """What listing a tree met: hidden entries skipped, directory links followed and refused (``link → target``).

    ``fence`` holds the real paths that links may not lead into or above (the data root, the class folders);
    ``seen`` every real folder listed, so that none is listed twice.
    """

    skipped: list[str] = field(default_factory=list)
    followed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    fence: list[str] = field(default_factory=list)
    seen: set[tuple[int, int]] = field(default_factory=set)

    def enclose(self, root: Path, folders: Iterable[Path]) -> None:
        """Fence in ``root`` and ``folders`` (class folders, which may be links out of it)."""
        self.fence += [os.path.realpath(p) for p in (root, *folders)]

    def info(self) -> dict[str, int]:
        """The counts for the run record."""
        return {"hidden_skipped": len(self.skipped), "links_followed": len(self.followed),
                "links_refused": len(self.refused)}

    def warn(self, where: str) -> None:
        if self.refused:
            log.warning("%s: %d directory link(s) not followed, as they lead back into the tree or to a folder "
                        "already listed (their images would count twice or under another class): %s", where,
                        len(self.refused), preview(self.refused, 3))

    def _enter(self, path: str, top: bool = False) -> bool:
        """Whether to list the folder ``path``: a class folder (``top``, which may link anywhere) or a folder
        under one, whose link may not lead into the fence; none twice. A refused link is noted."""
        real = os.path.realpath(path)
        try:
            st = os.stat(real)
        except OSError:  # a dangling link: os.walk passes over it too
            return False
        key, link = (st.st_dev, st.st_ino), os.path.islink(path)
        if key in self.seen:
            why = "a folder already listed"
        elif link and not top and any(_overlap(real, f) for f in self.fence):
            why = "back into the tree"
        else:
            self.seen.add(key)
            if link:
                self.followed.append(path)
            return True
        if link:
            self.refused.append(f"{path} → {real} ({why})")
        return False

    def walk(self, folder: Path) -> Iterator[tuple[str, list[str]]]:
        """(folder, its image names) at every depth under the class folder ``folder``, hidden entries left out."""
        if not os.path.isdir(folder) or not self._enter(str(folder), top=True):
            return
        stack = [str(folder)]
        while stack:
            root = stack.pop()
            try:
                with os.scandir(root) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:  # unreadable folders are passed over, as os.walk does
                continue
            dirs, files = [], []
            for e in entries:
                if hidden(e.name):
                    self.skipped.append(e.path)
                elif e.is_dir():
                    dirs.append(e.path)
                elif e.name.lower().endswith(IMG_EXTENSIONS):
                    files.append(e.name)
            yield root, files
            stack += reversed([d for d in dirs if self._enter(d)])


def image_files(folder: Path, walk: Walk | None = None) -> list[str]:
    """Every image under ``folder``, in torchvision's make_dataset order (folders, then files, sorted); what the
    listing met goes into ``walk``."""
    walk = Walk() if walk is None else walk
    return [os.path.join(root, name) for root, names in sorted(walk.walk(folder)) for name in sorted(names)]


def count_images(folders: list[Path], at_most: int, root: Path) -> int:
    """The images under ``folders`` (class folders of the tree at ``root``), listed as ``scan`` lists them, counted
    only until there are ``at_most``."""
    walk, n = Walk(), 0
    walk.enclose(root, folders)
    for folder in folders:
        for _, names in walk.walk(folder):
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


def class_folders(root: Path, split: str, where: str, walk: Walk | None = None) -> list[str]:
    """The class folders of ``split``; hidden ones are added to ``walk.skipped``."""
    with os.scandir(split_dir(root, split, where)) as entries:
        folders = [e for e in entries if e.is_dir()]
    if walk is not None:
        walk.skipped += [e.path for e in folders if hidden(e.name)]
    names = sorted(e.name for e in folders if not hidden(e.name))
    if not names:  # e.g. ImageNet's val/ as the tarball ships it: 50,000 files and no class folders
        raise ConfigError(f"{where}: {split}/ has no class folders; images must sit in {split}/<class>/ to be labelled")
    return names


def tree_classes(root: Path, where: str, walk: Walk | None = None) -> list[str]:
    """train/'s class folders, checked: at least two (one class trains to a meaningless 100%), and val/ holding the
    same ones."""
    classes = class_folders(root, "train", where, walk)
    if len(classes) < 2:
        raise ConfigError(f"{where}: train/ has {len(classes)} class folder ({classes[0]}/); a classifier needs at "
                          "least 2, each in train/<class>/ and val/<class>/")
    val_classes = class_folders(root, "val", where, walk)
    if val_classes != classes:
        missing, extra = sorted(set(classes) - set(val_classes)), sorted(set(val_classes) - set(classes))
        raise ConfigError(f"{where}: val/ classes differ from train/'s: "
                          f"missing in val/: {preview(missing) or '-'}; only in val/: {preview(extra) or '-'}")
    return classes


def scan(root: Path, split: str, classes: list[str], where: str,
         walk: Walk | None = None) -> list[tuple[str, int]]:
    """(path, label) of every image under ``split/<class>/``, hidden entries and links back into the tree passed
    over (noted in ``walk``); a class without images, or two class folders that are one, is an error."""
    folder = split_dir(root, split, where)
    walk = Walk() if walk is None else walk
    walk.enclose(root, [folder / c for c in classes])
    real: dict[str, str] = {}
    for c in classes:
        same = real.setdefault(os.path.realpath(folder / c), c)
        if same != c:
            raise ConfigError(f"{where}: {split}/{c} and {split}/{same} are the same folder (a link); each class "
                              "needs its own images")
    samples = [(path, label) for label, c in sorted(enumerate(classes), key=lambda lc: lc[1])
               for path in image_files(folder / c, walk)]
    counts = Counter(label for _, label in samples)
    empty = [c for i, c in enumerate(classes) if not counts[i]]
    if empty:
        raise ConfigError(f"{where}: no images ({' '.join(IMG_EXTENSIONS)}) in {split}/ class folders: "
                          f"{preview(empty)}")
    return samples


def _within(values: np.ndarray, top: float) -> bool:
    return values.size == 0 or bool(np.isfinite(values).all() and values.min() >= 0 and values.max() <= top)


def to_rgb(img: Image.Image, path: str) -> Image.Image:
    """``img`` as 8-bit RGB, every level kept: the one decoding step of every path (DataLoader, prepare, store).

    16-bit greyscale is scaled by its high byte, and float images (values in 0..1) as torchvision's to_dtype
    scales them, where PIL's convert("RGB") would clip both to white. UnreadableImageError for other modes.
    """
    if img.mode in EIGHT_BIT:
        return img.convert("RGB")
    values = np.asarray(img)
    if img.mode in SIXTEEN_BIT and _within(values, 65535):
        grey = (values.astype(np.uint32) >> 8).astype(np.uint8)
    elif img.mode == "F" and _within(values, 1):
        grey = (values * (256 - 1e-3)).astype(np.uint8)  # torchvision's float → uint8: 1.0 → 255, 0.5 → 127
    else:
        ranges = {**dict.fromkeys(SIXTEEN_BIT, "values outside 0..65535"), "F": "values outside 0..1"}
        raise UnreadableImageError(f"cannot decode image {path} faithfully: PIL mode {img.mode} with "
                                   f"{ranges.get(img.mode, 'no faithful 8-bit RGB form')}; "
                                   "convert it to 8-bit RGB (or greyscale), or remove it")
    return Image.fromarray(grey, "L").convert("RGB")


def load_image(path: str) -> Image.Image:
    try:
        with open(path, "rb") as f:  # as torchvision's pil_loader, without importing torch
            return to_rgb(Image.open(f), path)
    except UnreadableImageError:
        raise
    except (OSError, SyntaxError) as err:  # what PIL raises for truncated, corrupt and non-image files
        raise UnreadableImageError(f"cannot read image {path}: {err}; remove or replace it (data.verify=true finds "
                                   f"every unreadable image before training)") from err
