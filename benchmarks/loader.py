"""Is training data-bound? Loaders, the model alone and the whole training loop, side by side in one run.

    python benchmarks/loader.py                      # a GPU machine: S12 at 224, batch 128, the paper recipe
    python benchmarks/loader.py --images 512 --model xs --batch 32 --workers 2 --cpu    # a small CPU check

Generates a tree of ImageNet-like JPEGs (500×375, quality 90, ~100 KB) in a temporary folder, and a copy of it
prepared with ``python -m ablate.data.prepare`` (shorter side 320), then measures, each over a warm epoch:
loader-only img/s of the torch DataLoader (PIL/timm) and of DALI on the CPU and, with CUDA, on the GPU, and of the
batched path (``data.loader=batched``) on a pixel store of the same images (prepare --format pixels); the model
alone (random batches, as benchmarks/throughput.py); and end to end, ``ablate.train.run`` with ``train=paper`` and
each loader (the trainer's own img/s of its last epoch). It prints the fraction of time the GPU waits for data
(1 - end to end / model only) and the GPU-hours a Table 5 sweep on ImageNet-100 would take at each speed.
"""
import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import torch

from ablate import compose
from ablate.config.checks import dali_installed
from ablate.data import build_data
from ablate.data.fake import write_jpeg_tree
from ablate.data.prepare import prepare
from ablate.data.store import write_store
from ablate.run.distributed import Dist, pick_device
from ablate.data.loaders import build_loaders
from ablate.run.train import run

TABLE5_IMAGES = 18 * 100 * 126_689  # rows × epochs (train=imagenet100) × ImageNet-100's training images
CLASSES = 10


def sync(device: torch.device) -> None:
    # Here until benchmarks/throughput.py, which has it, imports again (issue 15).
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def config(root: Path, args: argparse.Namespace, loader: str, *extra: str):
    return compose(["data=folder", f"data.root={root}", f"data.loader={loader}", "data.verify=false",
                    f"data.img_size={args.img_size}", f"model={args.model}", "train=paper",
                    f"train.batch_size={args.batch}", "train.global_batch=null",  # a step per batch, as measured
                    f"train.num_workers={args.workers}", *extra])


def loader_only(root: Path, args: argparse.Namespace, loader: str, device: torch.device) -> float:
    """img/s of the training batches alone, on ``device``, over the second of two epochs."""
    cfg = config(root, args, loader)
    train, _ = build_loaders(cfg, build_data(cfg), Dist(), device)
    for epoch in range(2):
        train.sampler.set_epoch(epoch)
        torch.manual_seed(epoch)
        tic, seen = time.perf_counter(), 0
        for x, _ in train:
            x = x.to(device, non_blocking=True)
            seen += len(x)
        sync(device)
    return seen / (time.perf_counter() - tic)


def model_only(args: argparse.Namespace, device: torch.device) -> float:
    """img/s of training steps on one random batch held on the device: the ceiling for end to end."""
    from throughput import make_step  # throughput.py does not import at this commit: the case reports its failure
    step, _ = make_step(["+sweep/table5=baseline"], args, device, amp=device.type == "cuda", channels_last=False)
    for _ in range(3):
        step()
    times = []
    for _ in range(3):
        sync(device)
        tic = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync(device)
        times.append(time.perf_counter() - tic)
    return args.batch * args.steps / statistics.median(times)


def end_to_end(root: Path, args: argparse.Namespace, loader: str, device: torch.device) -> float:
    """The trainer's img/s over its second epoch with the paper recipe (mixup, cutmix, RandAugment, erasing)."""
    cfg = config(root, args, loader, "train.epochs=2", "train.warmup_epochs=1", "train.cooldown_epochs=0",
                 f"train.device={device}")
    with tempfile.TemporaryDirectory() as run_dir:
        record = run(cfg, Path(run_dir))
        assert record.status == "completed" and record.data_info["loader"] == loader, record.error
        with open(Path(run_dir) / "history.csv") as f:
            return float(list(csv.DictReader(f))[-1]["img_per_s"])  # the first epoch warms up


def measure(cases: Iterable[tuple[str, Callable[[], float]]]) -> dict[str, float]:
    """Each case's img/s; a case that fails is reported (nan) and the others still run: GPU time is scarce."""
    results = {}
    for name, fn in cases:
        try:
            results[name] = fn()
        except Exception as err:  # noqa: BLE001 - reported, and the benchmark goes on
            results[name] = float("nan")
            reason = (str(err).splitlines() or [""])[-1][:300]
            print(f"  {name}: failed: {type(err).__name__}: {reason}", file=sys.stderr)
        print(f"  {name:<52} {results[name]:>9.0f} img/s", file=sys.stderr, flush=True)
    return results


def make_trees(tmp: Path, args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The generated JPEG tree and its prepared copy, labelled for the table."""
    tic = time.perf_counter()
    per_class = max(args.batch * 2 // CLASSES, args.images // CLASSES)
    original = write_jpeg_tree(tmp / "original", CLASSES, per_class, max(1, per_class // 10),
                               workers=os.cpu_count() or 1)
    prepared = tmp / "prepared"
    prepare(original, prepared, short_side=320, workers=os.cpu_count())
    kb = sum(p.stat().st_size for p in (original / "train").rglob("*.JPEG")) / (CLASSES * per_class) / 1024
    print(f"  {CLASSES * per_class} training JPEGs, 500×375, {kb:.0f} KB on average, and the prepared copy "
          f"(427×320), made in {time.perf_counter() - tic:.0f} s", file=sys.stderr)
    return [("", original), (", prepared copy", prepared)]


def make_store(tmp: Path, original: Path, args: argparse.Namespace) -> Path:
    """The generated tree as a pixel store (shorter side 256, as prepare --format pixels writes by default)."""
    tic = time.perf_counter()
    crop_pct = compose([f"model={args.model}"]).model.crop_pct
    store = write_store(original, tmp / "store", 256, img_size=args.img_size, crop_pct=crop_pct,
                        workers=os.cpu_count())
    assert not store["errors"], store["errors"]
    print(f"  and its pixel store (256×341 box), made in {time.perf_counter() - tic:.0f} s", file=sys.stderr)
    return tmp / "store"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8192, help="generated training images (val: a tenth)")
    parser.add_argument("--model", default="s12")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 4),
                        help="DataLoader workers and DALI CPU threads (default: CPUs - 4)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round of the model-only case")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even where CUDA is present")
    parser.add_argument("--loaders-only", action="store_true", help="skip the model-only and end-to-end cases")
    args = parser.parse_args()
    device = pick_device("cpu" if args.cpu else "auto")
    cuda, dali = device.type == "cuda", dali_installed()
    with tempfile.TemporaryDirectory() as tmp:
        trees = make_trees(Path(tmp), args)
        store = make_store(Path(tmp), trees[0][1], args)
        loaders = [("torch DataLoader", "torch", device)]
        if dali:
            loaders += [("dali on the CPU", "dali", torch.device("cpu"))]
            loaders += [("dali on the GPU", "dali", device)] if cuda else []
        cases = [(f"loader only: {name}{label}", partial(loader_only, tree, args, loader, on))
                 for name, loader, on in loaders for label, tree in trees]
        cases += [("loader only: batched, pixel store", partial(loader_only, store, args, "batched", device))]
        if not args.loaders_only:
            cases += [("model only", partial(model_only, args, device))]
            cases += [(f"end to end: {name}{label}", partial(end_to_end, tree, args, loader, device))
                      for name, loader in (("torch DataLoader", "torch"), ("dali", "dali"))[:1 + dali]
                      for label, tree in trees]
            cases += [("end to end: batched, pixel store", partial(end_to_end, store, args, "batched", device))]
        results = measure(cases)
    report(results, args, device)


def report(results: dict[str, float], args: argparse.Namespace, device: torch.device) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    try:
        from nvidia.dali import __version__ as dali_version
    except ImportError:
        dali_version = "not installed"
    print(f"# {args.model} at {args.img_size}px, batch {args.batch}, train=paper, {os.cpu_count()} CPUs, "
          f"{args.workers} loader workers/threads, {name}, torch {torch.__version__}, DALI {dali_version}")
    print(f"{'case':<46} {'img/s':>8} {'per thread':>11} {'× model':>8} {'GPU waits':>10} {'Table 5 GPU-h':>14}")
    model = results.get("model only", float("nan"))
    for case, speed in results.items():
        per_thread = f"{speed / args.workers:.0f}" if case.startswith("loader only") and "GPU" not in case else ""
        ratio = speed / model
        waits = f"{max(0.0, 1 - ratio):.0%}" if case.startswith("end to end") else ""
        hours = f"{TABLE5_IMAGES / speed / 3600:.1f}" if not case.startswith("loader only") else ""
        print(f"{case:<46} {speed:>8.0f} {per_thread:>11} {ratio:>8.2f} {waits:>10} {hours:>14}")
    print(f"# Table 5 on ImageNet-100: 18 rows × 100 epochs × 126,689 images = {TABLE5_IMAGES / 1e6:.0f}M images. "
          "Goals (16-core H100/H200, S12 at 224): end to end ≥ 0.90 × model only; "
          "dali loader alone ≥ 10,000 img/s.")


if __name__ == "__main__":
    main()
