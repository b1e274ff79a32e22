"""Is training data-bound? Loaders, the model alone and the whole training loop, side by side in one run.

    python benchmarks/loader.py                      # a GPU machine: S12 at 224, batch 128, the paper recipe
    python benchmarks/loader.py --images 20 --model xs --img-size 32 --batch 2 --workers 0 --steps 1 \
        --original-only --cpu                        # a tiny CPU run, end to end in seconds (tests/test_benchmarks.py)

Generates a tree of ImageNet-like JPEGs (500×375, quality 90, ~100 KB) in a temporary folder, a copy of it
prepared with ``python -m ablate.data.prepare`` (shorter side 320) and a pixel store of it (``--format pixels``),
then measures, each over a warm epoch: loader-only img/s of every loader in ``LOADERS`` on each of its inputs (a
loader that cannot run here is listed as skipped, with the reason); the model alone (random batches, as
benchmarks/throughput.py with the recipe's settings); and end to end, ``ablate.run.train.run`` with ``train=paper``
and each loader (the trainer's own img/s of its second epoch).
It prints the fraction of time the GPU waits for data (1 - end to end / model only) and the hours a Table 5 sweep
on ImageNet-100 would take at each speed (workload.py: rows from sweeps/table5/, epochs from train=imagenet100).
"""
import argparse
import csv
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from ablate import compose
from ablate.config.spec import to_spec
from ablate.data import build_data
from ablate.data.dali import dali_installed
from ablate.data.loaders import build_loaders
from ablate.data.prepare import prepare
from ablate.data.store import write_store
from ablate.run.distributed import pick_device
from ablate.run.train import run
from ablate.specs import RunSpec
from throughput import STOPS, build, recipe_dtype, recipe_setting, stop_on_sigterm, sync
from workload import table5

# The generated JPEG trees are a test fixture: tests/fake_images.py.
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_images import write_jpeg_tree  # noqa: E402

CLASSES = 10


def _no_dali() -> str | None:
    return None if dali_installed() else "NVIDIA DALI is not installed (pip install -e '.[dali]')"


@dataclass(frozen=True)
class Loader:
    """One way from a class-folder tree to training batches (a ``data.loader`` value, and where it runs)."""

    label: str
    name: str  # data.loader
    on_gpu: bool = False  # makes its batches on the GPU, so it needs CUDA
    missing: Callable[[], str | None] = lambda: None  # why it cannot run on this machine, or None
    reads: str = "jpeg"  # its input, a key of make_inputs: "jpeg" (the JPEG trees) or "store" (the pixel store)


# Measured side by side, in this order; a new data path is one more entry.
LOADERS = [Loader("torch DataLoader", "torch"), Loader("dali on the CPU", "dali", missing=_no_dali),
           Loader("dali on the GPU", "dali", on_gpu=True, missing=_no_dali),
           Loader("batched, pixel store", "batched", reads="store")]


def why_not(loader: Loader, device: torch.device) -> str | None:
    """Why ``loader`` cannot run with training on ``device``, or None."""
    if loader.on_gpu and device.type != "cuda":
        return "needs CUDA"
    return loader.missing()


def trainer_loaders(device: torch.device) -> list[Loader]:
    """The loaders the trainer builds on ``device``: one per ``data.loader`` value, its GPU variant on CUDA."""
    picked: dict[str, Loader] = {}
    for loader in LOADERS:
        if loader.name not in picked or loader.on_gpu == (device.type == "cuda"):
            picked[loader.name] = loader
    return list(picked.values())


def config(root: Path, args: argparse.Namespace, loader: str, *extra: str) -> RunSpec:
    return to_spec(compose(["data=folder", f"data.root={root}", f"data.loader={loader}", "data.verify=false",
                    f"data.img_size={args.img_size}", f"model={args.model}", "train=paper",
                    f"train.batch_size={args.batch}", "train.global_batch=null",  # a step per batch, as measured
                    f"train.num_workers={args.workers}", *extra]))


def loader_only(root: Path, args: argparse.Namespace, loader: Loader, device: torch.device) -> float:
    """img/s of the training batches alone, moved to ``device``, over the second of two epochs; built as the
    trainer builds them (DataLoader: pinned on CUDA), or on the CPU for a loader the trainer would not use."""
    cfg = config(root, args, loader.name)
    on = device if loader in trainer_loaders(device) else torch.device("cpu")
    train, _ = build_loaders(cfg, build_data(cfg), on)
    for epoch in range(2):
        train.sampler.set_epoch(epoch)
        torch.manual_seed(epoch)
        tic, seen = time.perf_counter(), 0
        for batch, _ in train:
            x = batch.to(device, non_blocking=True)
            seen += len(x)
            train.give_back(batch)  # as the trainer does
        sync(device)
    return seen / (time.perf_counter() - tic)


def model_only(args: argparse.Namespace, device: torch.device) -> float:
    """img/s of training steps on one random batch held on the device, as the recipe trains: the ceiling."""
    cuda = device.type == "cuda"
    step = build(recipe_setting(cuda), args, device, recipe_dtype(cuda)).step
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


def end_to_end(root: Path, args: argparse.Namespace, loader: Loader, device: torch.device) -> float:
    """The trainer's img/s over its second epoch with the paper recipe (mixup, cutmix, RandAugment, erasing)."""
    cfg = config(root, args, loader.name, "train.epochs=2", "train.warmup_epochs=1", "train.cooldown_epochs=0",
                 f"train.device={device}")
    with tempfile.TemporaryDirectory() as run_dir:
        record = run(cfg, Path(run_dir))
        assert record.status == "completed" and record.data_info["loader"] == loader.name, record.error
        with open(Path(run_dir) / "history.csv") as f:
            return float(list(csv.DictReader(f))[-1]["img_per_s"])  # the first epoch warms up


def measure(cases: list[tuple[str, Callable[[], float] | str]]) -> dict[str, float | str]:
    """Each case's img/s, or why it has none: a case given as a string is skipped for that reason, one that fails
    is reported and the others still run (GPU time is scarce), and Ctrl-C or SIGTERM leaves the rest
    unmeasured but keeps what was measured."""
    results: dict[str, float | str] = {}
    for name, fn in cases:
        if isinstance(fn, str):
            results[name] = f"skipped: {fn}"
        else:
            # What the case before left for the garbage collector slowed the next one by up to a quarter
            # (the batched path after DALI's: 1,259 against 1,585 img/s on 2 CPU cores): each starts collected.
            gc.collect()
            try:
                results[name] = fn()
            except STOPS:
                break
            except Exception as err:  # noqa: BLE001 - reported, and the benchmark goes on
                results[name] = f"failed: {type(err).__name__}: {(str(err).splitlines() or [''])[-1][:200]}"
        shown = results[name] if isinstance(results[name], str) else f"{results[name]:.0f} img/s"
        print(f"  {name:<52} {shown}", file=sys.stderr, flush=True)
    return {name: results.get(name, "not measured: interrupted") for name, _ in cases}


def make_inputs(tmp: Path, args: argparse.Namespace) -> dict[str, list[tuple[str, Path]]]:
    """Each kind of input (``Loader.reads``), labelled for the table: the generated JPEG tree and (unless
    ``--original-only``) its prepared copy; the same images as a pixel store (prepare --format pixels' default)."""
    tic = time.perf_counter()
    per_class = max(args.batch * 2 // CLASSES + 1, args.images // CLASSES)
    # Processes only where they pay: forking a process that already runs torch's threads (a test) can hang.
    workers = min(os.cpu_count() or 1, CLASSES * per_class // 256 + 1)
    original = write_jpeg_tree(tmp / "original", CLASSES, per_class, max(1, per_class // 10), workers=workers)
    kb = sum(p.stat().st_size for p in (original / "train").rglob("*.JPEG")) / (CLASSES * per_class) / 1024
    print(f"  {CLASSES * per_class} training JPEGs, 500×375, {kb:.0f} KB on average, made in "
          f"{time.perf_counter() - tic:.0f} s", file=sys.stderr)
    store = write_store(original, tmp / "store", 256, img_size=args.img_size,
                        crop_pct=compose([f"model={args.model}"]).model.crop_pct, workers=workers)
    assert not store["errors"], store["errors"]
    print(f"  and their pixel store (256×341 box), in {time.perf_counter() - tic:.0f} s", file=sys.stderr)
    inputs = {"jpeg": [("", original)], "store": [("", tmp / "store")]}
    if not args.original_only:
        prepare(original, tmp / "prepared", short_side=320, workers=workers)
        print(f"  and their prepared copy (427×320), in {time.perf_counter() - tic:.0f} s", file=sys.stderr)
        inputs["jpeg"].append((", prepared copy", tmp / "prepared"))
    return inputs


def cases(inputs: dict[str, list[tuple[str, Path]]], args: argparse.Namespace, device: torch.device,
          loaders_only: bool) -> list[tuple[str, Callable[[], float] | str]]:
    """Every loader on each of its inputs alone, then the model alone and each loader the trainer can use end to
    end."""
    found = [(loader, why_not(loader, device)) for loader in LOADERS]
    chosen = [(f"loader only: {loader.label}{label}", reason or partial(loader_only, tree, args, loader, device))
              for loader, reason in found for label, tree in inputs[loader.reads]]
    if loaders_only:
        return chosen
    chosen += [("model only", partial(model_only, args, device))]
    chosen += [(f"end to end: {loader.label}{label}", why_not(loader, device) or
                partial(end_to_end, tree, args, loader, device))
               for loader in trainer_loaders(device) for label, tree in inputs[loader.reads]]
    return chosen


def report(results: dict[str, float | str], args: argparse.Namespace, device: torch.device) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# {args.model} at {args.img_size}px, batch {args.batch}, train=paper, {os.cpu_count()} CPUs, "
          f"{args.workers} loader workers/threads, {name}")
    print(f"{'case':<46} {'img/s':>8} {'per thread':>11} {'× model':>8} {'GPU waits':>10} {'Table 5 h':>10}")
    model = results.get("model only")
    workload = table5()
    for case, speed in results.items():
        if isinstance(speed, str):
            print(f"{case:<46} {speed}")
            continue
        cpu_loader = case.startswith("loader only") and "GPU" not in case
        per_thread = f"{speed / max(1, args.workers):.0f}" if cpu_loader else ""
        ratio = speed / model if isinstance(model, float) else float("nan")
        waits = f"{max(0.0, 1 - ratio):.0%}" if case.startswith("end to end") else ""
        hours = f"{workload.gpu_hours({'baseline': speed}):.1f}" if not case.startswith("loader only") else ""
        print(f"{case:<46} {speed:>8.0f} {per_thread:>11} {ratio:>8.2f} {waits:>10} {hours:>10}")
    print(f"# Table 5 on ImageNet-100: {workload.describe()}; hours on this device at each speed")
    trained = {case: v for case, v in results.items() if case.startswith("end to end") and isinstance(v, float)}
    if trained and isinstance(model, float):
        best = max(trained, key=trained.get)
        print(f"# goal: end to end ≥ 0.90 × model only (the paper recipe): {trained[best] / model:.2f}× "
              f"({best.removeprefix('end to end: ')})")
        print(f"# goal: Table 5 on ImageNet-100 ≤ 10 GPU-hours, projected at that speed: "
              f"{workload.gpu_hours({'baseline': trained[best]}):.1f} hours on this device")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8192, help="generated training images (val: a tenth)")
    parser.add_argument("--model", default="s12")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 4),
                        help="DataLoader workers and DALI CPU threads (default: CPUs - 4)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round of the model-only case")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even where CUDA is present")
    parser.add_argument("--original-only", action="store_true", help="leave out the prepared copy")
    parser.add_argument("--loaders-only", action="store_true", help="skip the model-only and end-to-end cases")
    args = parser.parse_args(argv)
    device = pick_device("cpu" if args.cpu else "auto")
    with tempfile.TemporaryDirectory() as tmp, stop_on_sigterm():
        results = measure(cases(make_inputs(Path(tmp), args), args, device, args.loaders_only))
    report(results, args, device)


if __name__ == "__main__":
    main()
