"""A faster copy of a class-folder tree: ``python -m ablate.data.prepare --src ROOT --out DIR``; with
``--format pixels``, a memory-mappable pixel store instead (ablate/data/store.py; ``--dry-run`` sizes it).

Every image under ``ROOT/{train,val}/<class>/`` (listed by the loaders' own scan, so symlinked class folders such as
the ImageNet-100 builder's are followed) is written to the same place under ``DIR`` as an RGB JPEG whose shorter side
is at most ``--short-side`` pixels (320 by default; aspect ratio kept, never upscaled), as FFCV's max-resolution
setting bounds its copies. Decoding cost grows with pixels, and ImageNet's photos average about 400×350 with a long
tail of multi-megapixel ones. JPEGs already small enough and RGB are copied byte for byte; other formats are
re-encoded and get ``.jpg`` appended to their name. EXIF orientation is not applied, as neither loader applies it.

Safe to stop and rerun: each file is written to a hidden ``.part`` file and renamed into place, so a file that
exists is complete and is skipped. Ctrl-C or SIGTERM (to the process or its whole group) stops it with one line and
exit status 130 / 143; the pool's workers leave the signals to it. The source is only read: ``DIR`` may not lie
inside ``ROOT`` (or hold it), and a
class folder in ``DIR`` that is a symlink (e.g. ``DIR`` being an ImageNet-100 link tree) is refused. Unreadable
source images are listed at the end (exit status 1); everything else is still written.
"""
import argparse
import os
import shutil
import signal
import sys
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ablate.data.listing import SPLITS, Walk, preview, scan, to_rgb, tree_classes
from ablate.data.store import CHUNK, Layout, chunk_size, gib, plan_store, quiet_worker, write_store
from ablate.errors import ConfigError, Interrupted

JPEG_SUFFIXES = (".jpg", ".jpeg")
LISTED = 200  # bytes of host memory per listed image: its path and label in Python, its size and label arrays


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
                to_rgb(img, path).resize(size, Image.LANCZOS).save(part, "JPEG", quality=quality)
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
    jobs, walk = [], Walk()
    classes = tree_classes(src, where, walk)
    for split in SPLITS:
        for name in classes:
            folder = out / split / name
            if folder.is_symlink() or (folder.exists() and folder.resolve() != o / split / name):
                raise ConfigError(f"--out: {folder} is a link; writing into it would write into its target")
        jobs += [(path, target(src, out, split, path), short_side, quality)
                 for path, _ in scan(src, split, classes, where, walk)]
    walk.warn(where)
    return jobs


def prepare(src: Path, out: Path, short_side: int = 320, quality: int = 90, workers: int | None = None) -> Counter:
    """Write the copy; counts of outcomes and bytes, and the unreadable files' errors under "errors"."""
    jobs = plan(src, out, short_side, quality)
    for folder in {dest.parent for _, dest, _, _ in jobs}:
        folder.mkdir(parents=True, exist_ok=True)
    totals, errors, workers = Counter(), [], workers or os.cpu_count() or 1
    pool = Pool(workers, quiet_worker)
    try:
        results = pool.imap_unordered(convert, jobs, chunksize=chunk_size(len(jobs), workers, 32))
        for outcome, read, written, error in tqdm(results, total=len(jobs), desc="prepare", unit="img"):
            totals.update({outcome: 1, "bytes_in": read, "bytes_out": written})
            if error:
                errors.append(error)
        # Done: the workers exit on their own. Pool's own exit (terminate) can hang while it is still starting
        # workers, as a rerun that finds every image kept is done at once (CI hung on that for 600 s).
        pool.close()
    except BaseException:
        pool.terminate()  # interrupted: stop the workers at once
        raise
    finally:
        pool.join()
    totals["errors"] = errors
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ablate.data.prepare", description=(
        "Copy a class-folder tree (train/<class>/*, val/<class>/*) as JPEGs with a bounded shorter side "
        "(--format jpeg), or write it as a memory-mappable uint8 pixel store for data.loader=batched "
        "(--format pixels); safe to stop and rerun."))
    parser.add_argument("--src", type=Path, help="tree holding train/ and val/ (symlinks followed)")
    parser.add_argument("--out", type=Path, help="where the copy or store goes (created if absent)")
    parser.add_argument("--format", choices=("jpeg", "pixels"), default="jpeg", help="jpeg (default) or pixels")
    parser.add_argument("--short-side", type=int, default=None,
                        help="bound on the shorter side in pixels (jpeg: 320, pixels: 256)")
    parser.add_argument("--long-side", type=int, default=None, help="pixels: bound on the longer side (4/3 × short)")
    parser.add_argument("--img-size", type=int, default=224, help="pixels: the val crop (data.img_size, 224)")
    parser.add_argument("--crop-pct", type=float, default=0.9, help="pixels: the val resize (model.crop_pct, 0.9)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of re-encoded images (90)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument("--dry-run", action="store_true", help="pixels: print the store's size and memory; write "
                        "nothing (without --src, from --train-images and --val-images)")
    parser.add_argument("--train-images", type=int, help="dry run without --src: training images")
    parser.add_argument("--val-images", type=int, help="dry run without --src: val images")
    args = parser.parse_args(argv)
    short = args.short_side or (256 if args.format == "pixels" else 320)
    if short < 1 or not 1 <= args.quality <= 100:
        parser.error("--short-side must be positive and --quality within 1-100")
    if args.dry_run and args.format != "pixels":
        parser.error("--dry-run sizes a pixel store: add --format pixels")
    if not args.dry_run and (args.src is None or args.out is None):
        parser.error("--src and --out are required")
    signal.signal(signal.SIGTERM, Interrupted.on_signal)  # as Ctrl-C: the pool stops, and the line below says so
    try:
        if args.format == "pixels":
            return pixels(args, short)
        totals = prepare(args.src, args.out, short, args.quality, args.workers)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted) as err:
        name = "SIGINT" if isinstance(err, KeyboardInterrupt) else str(err)
        print(f"interrupted ({name}): what was written is kept; the same command resumes", file=sys.stderr)
        return 130 if isinstance(err, KeyboardInterrupt) else 143
    errors = totals.pop("errors")
    done = ", ".join(f"{totals[k]} {k}" for k in ("resized", "re-encoded", "copied", "kept"))
    print(f"{args.out}: {done}; {totals['bytes_in'] / 2**20:.0f} MiB read, {totals['bytes_out'] / 2**20:.0f} MiB "
          f"written (shorter side ≤ {short} px)")
    if errors:
        print(f"error: {len(errors)} unreadable image(s) not copied: {preview(errors, 3)}", file=sys.stderr)
        return 1
    print(f"train with: python -m ablate data=folder data.root={args.out}  (or data=imagenet100 / imagenet)")
    return 0


def pixels(args: argparse.Namespace, short: int) -> int:
    """``--format pixels``: the store's size first (all of it with --dry-run), then the store."""
    long = args.long_side or round(short * 4 / 3)
    if args.src is not None:
        layout = plan_store(args.src, short, long, args.img_size, args.crop_pct)[0]
    elif args.dry_run and args.train_images and args.val_images:
        layout = Layout(short, long, args.img_size, args.crop_pct, args.train_images, args.val_images)
    else:
        raise ConfigError("--dry-run needs --src, or --train-images and --val-images")
    print(store_size(layout, args.workers or os.cpu_count() or 1, verbose=args.dry_run))
    if args.dry_run:
        return 0
    totals = write_store(args.src, args.out, short, long, args.img_size, args.crop_pct, args.workers)
    errors = totals.pop("errors")
    for damage in totals.pop("damaged"):
        print(f"{args.out}: damaged: {damage}; its images were written again", file=sys.stderr)
    print(f"{args.out}: {totals['written']} written, {totals['kept']} kept")
    if errors:
        print(f"error: {len(errors)} unreadable image(s); the store stays unfinished until they are replaced and "
              f"this is rerun: {preview(errors, 3)}", file=sys.stderr)
        return 1
    print(f"train with: python -m ablate data=folder data.root={args.out} data.img_size={args.img_size} "
          "(or data=imagenet100 / imagenet; data.loader=auto picks the batched path)")
    return 0


def store_size(layout: Layout, workers: int, verbose: bool) -> str:
    """The store's size and, with ``verbose``, the memory that writing it and training from it take."""
    train, val, total = layout.nbytes("train"), layout.nbytes("val"), layout.total
    lines = [f"store: {gib(total)} ({layout.train_images:,} train images in a {layout.short_side}×"
             f"{layout.long_side} box: {gib(train)}; {layout.val_images:,} val images at {layout.img_size}²: "
             f"{gib(val)})"]
    if verbose:
        image = layout.short_side * layout.long_side * 3
        lines += [
            f"writing it: peak host RSS about {workers} workers × (one decoded image, a few MiB) + "
            f"{gib(LISTED * (layout.train_images + layout.val_images))} for the file list, sizes and labels (about "
            f"{LISTED} bytes per image); the arrays are written through the page cache",
            f"training on CUDA, store in GPU memory (when free GPU memory > 2 × {gib(total)}): {gib(total)} of GPU "
            f"memory; host RSS: one {gib(CHUNK)} copy chunk beyond the mapped file's pages",
            f"otherwise, and on the CPU: the file is memory-mapped (read through the page cache: {gib(total)} of RAM "
            f"keeps it all cached) and each batch gathered from it (128 train images: {128 * image / 2**20:.0f} MiB, "
            "pinned on CUDA and copied on a side stream); host RSS beyond the cache: a few batches"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
