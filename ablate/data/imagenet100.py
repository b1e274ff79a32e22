"""ImageNet-100: the 100 ImageNet-1K classes in ``ablate/reference/imagenet100_wnids.txt``, with the paper's transforms.

``data.root`` may be a prebuilt ImageNet-100 tree (train/ and val/ holding at least those 100 wnid folders) or an
ImageNet-1K root, filtered to the list; either way every listed class must be in both splits. Labels are the wnids in
sorted order, as ImageFolder would number a tree of exactly these 100 folders. The run record gets the class list's
file name and md5 and the image counts.

Builder: ``python -m ablate.data.imagenet100 --imagenet ROOT --out DIR`` makes DIR/{train,val}/<wnid> symlinks to
ROOT/{train,val}/<wnid>: one link per class folder (200 links, no copies; images added to ROOT later show up in DIR).
Running it again keeps links that already point to the right folder and refuses to replace anything else.
"""
import argparse
import hashlib
import os
import sys
from importlib import resources
from pathlib import Path

from ablate.data import DATASETS, TRAIN_IMAGES, DataBundle
from ablate.data.folder import image_folder_bundle, is_store, root_dir, tree_train_images
from ablate.data.listing import SPLITS, class_folders, preview, scan, split_dir
from ablate.errors import ConfigError
from ablate.specs import RunSpec

CLASS_LIST = "imagenet100_wnids.txt"
LAYOUT = "an ImageNet-100 tree or an ImageNet-1K root (train/<wnid>/ and val/<wnid>/)"


def class_list() -> tuple[list[str], str]:
    """The shipped wnids, sorted (label order), and the list file's md5."""
    data = resources.files("ablate.reference").joinpath(CLASS_LIST).read_bytes()
    return sorted(data.decode().split()), hashlib.md5(data).hexdigest()


def require_classes(root: Path, wnids: list[str], where: str) -> None:
    """Every wnid must be a folder in both train/ and val/."""
    missing = {split: [w for w in wnids if not (split_dir(root, split, where) / w).is_dir()] for split in SPLITS}
    if any(missing.values()):
        found = "; ".join(f"{len(m)} missing from {split}/: {preview(m)}" for split, m in missing.items() if m)
        raise ConfigError(f"{where}: {found} (all {len(wnids)} classes of {CLASS_LIST} are needed)")


# An ImageNet-1K root counts all its classes: an upper bound, which is what the batch check needs.
TRAIN_IMAGES.register("imagenet100")(tree_train_images)


@DATASETS.register("imagenet100")
def imagenet100(cfg: RunSpec) -> DataBundle:
    wnids, md5 = class_list()
    root = root_dir(cfg, LAYOUT)
    where = f"data.root={cfg.data.root}"
    if is_store(root):  # a store of ImageNet-100: its class list is checked against the wnids
        bundle = image_folder_bundle(cfg, root, classes=wnids)
        bundle.info.update(class_list=CLASS_LIST, class_list_md5=md5, source="pixel store")
        return bundle
    require_classes(root, wnids, where)
    bundle = image_folder_bundle(cfg, root, classes=wnids)
    in_train = len(class_folders(root, "train", where))
    bundle.info.update(class_list=CLASS_LIST, class_list_md5=md5,
                       source="ImageNet-100 tree" if in_train == len(wnids) else
                       f"ImageNet-1K root filtered ({in_train} class folders in train/)")
    return bundle


def link_class(target: Path, link: Path) -> bool:
    """Make ``link`` point to ``target``; False when it already did. Anything else already at ``link`` is an error."""
    if link.is_symlink() or link.exists():
        if link.is_symlink() and os.path.realpath(link) == os.path.realpath(target):
            return False
        what = f"a link to {os.readlink(link)}" if link.is_symlink() else "a real file or folder"
        raise ConfigError(f"--out: {link} is {what}, not a link to {target}; remove it or choose another --out")
    link.symlink_to(target, target_is_directory=True)
    return True


def build_tree(imagenet: Path, out: Path) -> dict[str, tuple[int, int]]:
    """Link the 100 classes of ``imagenet`` into ``out``; per split (image count, new links)."""
    wnids, _ = class_list()
    where = f"--imagenet {imagenet}"
    if not imagenet.is_dir():
        raise ConfigError(f"{where}: no such directory")
    require_classes(imagenet, wnids, where)
    counts = {split: len(scan(imagenet, split, wnids, where)) for split in SPLITS}  # all checks before any link
    result = {}
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
        new = sum(link_class(imagenet.absolute() / split / w, out / split / w) for w in wnids)
        result[split] = counts[split], new
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ablate.data.imagenet100", description=(
        f"Build an ImageNet-100 tree ({CLASS_LIST}) of class-folder symlinks into an ImageNet-1K tree; safe to rerun."))
    parser.add_argument("--imagenet", type=Path, required=True,
                        help="ImageNet-1K root holding train/<wnid>/ and val/<wnid>/")
    parser.add_argument("--out", type=Path, required=True,
                        help="where to make OUT/train/<wnid> and OUT/val/<wnid> links (created if absent)")
    args = parser.parse_args(argv)
    try:
        result = build_tree(args.imagenet, args.out)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    wnids, md5 = class_list()
    print(f"ImageNet-100 ({CLASS_LIST}, md5 {md5}) in {args.out}, linked to {args.imagenet.absolute()}")
    for split, (images, new) in result.items():
        print(f"{split}: {len(wnids)} classes, {images} images ({new} new links, {len(wnids) - new} already there)")
    print(f"train with: python -m ablate data=imagenet100 data.root={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
