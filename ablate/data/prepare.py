"""A faster copy of a class-folder tree: ``python -m ablate.data.prepare --src ROOT --out DIR``.

Every image under ``ROOT/{train,val}/<class>/`` (listed by the loaders' own scan, so symlinked class folders such as
the ImageNet-100 builder's are followed) is written to the same place under ``DIR`` as an RGB JPEG whose shorter side
is at most ``--short-side`` pixels (320 by default; aspect ratio kept, never upscaled), as FFCV's max-resolution
setting bounds its copies. Decoding cost grows with pixels, and ImageNet's photos average about 400×350 with a long
tail of multi-megapixel ones. JPEGs already small enough and RGB are copied byte for byte; other formats are
re-encoded and get ``.jpg`` appended to their name. EXIF orientation is not applied, as neither loader applies it.

Safe to stop and rerun: each file is written to a hidden ``.part`` file and renamed into place, so a file that
exists is complete and is skipped. The source is only read: ``DIR`` may not lie inside ``ROOT`` (or hold it), and a
class folder in ``DIR`` that is a symlink (e.g. ``DIR`` being an ImageNet-100 link tree) is refused. Unreadable
source images are listed at the end (exit status 1); everything else is still written.
"""
import argparse
import os
import shutil
import sys
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ablate.data.folder import SPLITS, class_folders, preview, scan
from ablate.errors import ConfigError

JPEG_SUFFIXES = (".jpg", ".jpeg")


def target(src: Path, out: Path, split: str, path: str) -> Path:
    """Where ``path`` (an image under ``src/split``) goes in the copy."""
    rel = Path(os.path.relpath(path, src / split))
    return out / split / (rel if rel.suffix.lower() in JPEG_SUFFIXES else rel.with_name(rel.name + ".jpg"))


def bounded(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """``size`` scaled so that its shorter side is at most ``short_side``; never larger."""
    w, h = size
    scale = short_side / min(w, h)
    return size if scale >= 1 else (max(1, round(w * scale)), max(1, round(h * scale)))


def convert(job: tuple[str, Path, int, int]) -> tuple[str, int, int, str | None]:
    """Write one image; (outcome, bytes read, bytes written, error)."""
    path, dest, short_side, quality = job
    if dest.exists():
        return "kept", 0, 0, None
    part = dest.with_name(f".{dest.name}.part")
    try:
        with Image.open(path) as img:
            size = bounded(img.size, short_side)
            if img.format == "JPEG" and img.mode == "RGB" and size == img.size:
                shutil.copyfile(path, part)
                outcome = "copied"
            else:
                outcome = "resized" if size != img.size else "re-encoded"
                img.draft("RGB", size)  # JPEGs decode at a reduced scale still ≥ size: much faster
                img.convert("RGB").resize(size, Image.LANCZOS).save(part, "JPEG", quality=quality)
    except (OSError, SyntaxError) as err:
        part.unlink(missing_ok=True)
        return "unreadable", 0, 0, f"{path} ({err})"
    os.replace(part, dest)
    return outcome, os.path.getsize(path), os.path.getsize(dest), None


def plan(src: Path, out: Path, short_side: int, quality: int) -> list[tuple[str, Path, int, int]]:
    """Every image's job, after the checks that keep the source untouched."""
    where = f"--src {src}"
    if not src.is_dir():
        raise ConfigError(f"{where}: no such directory")
    s, o = src.resolve(), out.resolve()
    if o == s or o.is_relative_to(s) or s.is_relative_to(o):
        raise ConfigError(f"--out {out} and --src {src} overlap; the copy must go elsewhere")
    jobs = []
    for split in SPLITS:
        classes = class_folders(src, split, where)
        for name in classes:
            folder = out / split / name
            if folder.is_symlink() or (folder.exists() and folder.resolve() != o / split / name):
                raise ConfigError(f"--out: {folder} is a link; writing into it would write into its target")
        jobs += [(path, target(src, out, split, path), short_side, quality)
                 for path, _ in scan(src, split, classes, where)]
    return jobs


def prepare(src: Path, out: Path, short_side: int = 320, quality: int = 90, workers: int | None = None) -> Counter:
    """Write the copy; counts of outcomes and bytes, and the unreadable files' errors under "errors"."""
    jobs = plan(src, out, short_side, quality)
    for folder in {dest.parent for _, dest, _, _ in jobs}:
        folder.mkdir(parents=True, exist_ok=True)
    totals, errors = Counter(), []
    with Pool(workers or os.cpu_count()) as pool:
        for outcome, read, written, error in tqdm(pool.imap_unordered(convert, jobs, chunksize=32), total=len(jobs),
                                                  desc="prepare", unit="img"):
            totals.update({outcome: 1, "bytes_in": read, "bytes_out": written})
            if error:
                errors.append(error)
    totals["errors"] = errors
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ablate.data.prepare", description=(
        "Copy a class-folder tree (train/<class>/*, val/<class>/*) as JPEGs with a bounded shorter side, "
        "for faster loading; safe to stop and rerun."))
    parser.add_argument("--src", type=Path, required=True, help="tree holding train/ and val/ (symlinks followed)")
    parser.add_argument("--out", type=Path, required=True, help="where the copy goes (created if absent)")
    parser.add_argument("--short-side", type=int, default=320, help="bound on the shorter side in pixels (320)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of re-encoded images (90)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    args = parser.parse_args(argv)
    if args.short_side < 1 or not 1 <= args.quality <= 100:
        parser.error("--short-side must be positive and --quality within 1-100")
    try:
        totals = prepare(args.src, args.out, args.short_side, args.quality, args.workers)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    errors = totals.pop("errors")
    done = ", ".join(f"{totals[k]} {k}" for k in ("resized", "re-encoded", "copied", "kept"))
    print(f"{args.out}: {done}; {totals['bytes_in'] / 2**20:.0f} MiB read, {totals['bytes_out'] / 2**20:.0f} MiB "
          f"written (shorter side ≤ {args.short_side} px)")
    if errors:
        print(f"error: {len(errors)} unreadable image(s) not copied: {preview(errors, 3)}", file=sys.stderr)
        return 1
    print(f"train with: python -m ablate data=folder data.root={args.out}  (or data=imagenet100 / imagenet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
