"""Does the batched recipe train as well as timm's PIL one? The same images through both paths, several seeds each.

    nice python benchmarks/recipe_paths.py --out benchmarks/results/recipe-paths-fashion-mnist-cpu.txt

A class-balanced subset of Fashion-MNIST (``--train``/``--val`` images of its train and test sets, 28×28 grey) is
written as a class-folder tree of JPEGs, and that tree as a pixel store (python -m ablate.data.prepare --format
pixels), so both paths start from the same decoded pixels. Then ``train=paper`` (RandAugment rand-m9-mstd0.5-inc1,
random erasing 0.25, mixup 0.8 / cutmix 1.0, label smoothing) trains the xs model at 32 px through the PIL/timm
DataLoader (``data.loader=torch`` on the tree) and through the batched path (``data.loader=batched`` on the store),
for each seed. It writes the per-seed val top-1 of each path, their mean ± std, and the difference of the means.
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from ablate import compose
from ablate.config.spec import to_spec
from ablate.data.fashion_mnist import load_split
from ablate.data.store import write_store
from ablate.run.train import run

ROOT = Path("/usr/share/datasets/fashion-mnist")


def write_tree(out: Path, n_train: int, n_val: int) -> Path:
    """The first n/10 images of each class of each split, as RGB JPEGs (quality 95)."""
    for split, n in (("train", n_train), ("val", n_val)):
        images, labels = load_split(ROOT, split)
        for c in range(10):
            folder = out / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in np.flatnonzero(labels.numpy() == c)[:n // 10]:
                Image.fromarray(images[i].numpy()).convert("RGB").save(folder / f"{i}.jpg", quality=95)
    return out


def overrides(root: Path, loader: str, args: argparse.Namespace, seed: int) -> list[str]:
    return ["data=folder", f"data.root={root}", f"data.loader={loader}", "data.verify=false",
            f"data.img_size={args.img_size}", f"model={args.model}", "train=paper", f"train.epochs={args.epochs}",
            # One optimiser step per batch, as when the committed results were measured (train=paper's 1024-image
            # global batch would accumulate a few thousand images into two steps an epoch).
            "train.warmup_epochs=1", "train.cooldown_epochs=0", f"train.batch_size={args.batch}",
            "train.global_batch=null",
            f"train.lr={args.lr}", f"train.num_workers={args.workers}", "train.device=cpu", f"seed={seed}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=2000, help="training images (a tenth per class)")
    parser.add_argument("--val", type=int, default=1000, help="val images (a tenth per class)")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--model", default="xs")
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the PIL path")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    tic = time.perf_counter()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()  # at the start: the code that runs
    top1: dict[str, list[float]] = {"torch": [], "batched": []}
    with tempfile.TemporaryDirectory() as tmp:
        tree = write_tree(Path(tmp) / "tree", args.train, args.val)
        crop_pct = compose([f"model={args.model}"]).model.crop_pct
        store = Path(tmp) / "store"
        write_store(tree, store, short_side=28, img_size=args.img_size, crop_pct=crop_pct, workers=1)
        for seed in range(args.seeds):
            for loader, root in (("torch", tree), ("batched", store)):
                record = run(to_spec(compose(overrides(root, loader, args, seed))), Path(tmp) / f"{loader}-{seed}")
                assert record.status == "completed" and record.data_info["loader"] == loader, record.error
                top1[loader].append(record.top1)
                print(f"seed {seed} {loader}: {record.top1:.2f}", file=sys.stderr, flush=True)
    mean = {k: statistics.mean(v) for k, v in top1.items()}
    std = {k: statistics.stdev(v) for k, v in top1.items()}
    lines = [
        f"# command: python benchmarks/recipe_paths.py {' '.join(sys.argv[1:])}",
        f"# commit {commit}; machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared), "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
        f"date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {time.perf_counter() - tic:.0f} s",
        f"# Fashion-MNIST subset as a JPEG tree ({args.train} train / {args.val} val, 28×28) and as a pixel store; "
        f"train=paper, model={args.model}, {args.img_size} px, batch {args.batch}, lr {args.lr}, {args.epochs} epochs",
        f"{'path':<30} {'val top-1 per seed':<36} mean ± std",
    ]
    for loader, name in (("torch", "PIL/timm DataLoader (tree)"), ("batched", "batched (store)")):
        lines.append(f"{name:<30} {', '.join(f'{v:.1f}' for v in top1[loader]):<36} "
                     f"{mean[loader]:.1f} ± {std[loader]:.1f}")
    lines.append(f"difference of means (batched - PIL): {mean['batched'] - mean['torch']:+.1f} points; "
                 f"seed std {std['torch']:.1f} (PIL), {std['batched']:.1f} (batched)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
