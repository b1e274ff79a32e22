"""Table 5 on one multi-GPU node: one job per GPU (hydra/launcher=parallel) or each run across all GPUs (DDP)?

    python benchmarks/node_plan.py benchmarks/results/throughput-s12-224-h200.txt --gpus 8

Projects wall times from a measured per-row training speed (a benchmarks/throughput.py results file: one line per
Table 5 row, ``<row id> <img/s> ...``), for ``train=imagenet100`` on ImageNet-100 at the paper's 1024-image global
batch. Both ways run micro-batches of 128 per GPU (8 accumulated on one GPU, one on each of 8), the batch the
speeds were measured at. Parallel jobs start in the sweep's order on the first free GPU, as hydra-joblib-launcher
hands them out; DDP trains one row at a time on all GPUs, at best ``gpus`` times as fast (it pays the gradient
all-reduce and waits for the slowest rank), so the script prints the scaling efficiency DDP would need to win.
Evaluation and data loading are left out: both ways pay them alike, given a loader that keeps up.
"""
import argparse
import heapq
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import OmegaConf

from ablate.config import CONF_DIR
from ablate.reference import table5

TRAIN_IMAGES = 126_689  # ImageNet-100's training split (ablate/data/imagenet100.py's class list)


def row_speeds(results: Path) -> dict[str, float]:
    """img/s of each Table 5 row in a throughput results file, by row id."""
    speeds = {}
    for line in results.read_text().splitlines():
        match = re.match(r"(\S+)\s+(\d+(?:\.\d+)?)\s", line)
        if match and match[1] in table5.rows():
            speeds[match[1]] = float(match[2])
    missing = set(table5.rows()) - set(speeds)
    if missing:
        raise SystemExit(f"error: {results} has no speed for rows {', '.join(sorted(missing))}")
    return speeds


def parallel_wall(hours: list[float], gpus: int) -> float:
    """When the last of ``hours`` (jobs in launch order) ends, each starting on the first GPU to come free."""
    free = [0.0] * gpus
    for h in hours:
        heapq.heappush(free, heapq.heappop(free) + h)
    return max(free)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="a benchmarks/throughput.py results file")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    recipe = OmegaConf.load(CONF_DIR / "train" / "imagenet100.yaml")
    epochs = recipe.epochs + recipe.cooldown_epochs
    speeds = row_speeds(args.results)
    # +sweep=table5 globs its row files: jobs launch in file-name order, every seed of a row together.
    hours = {row: epochs * TRAIN_IMAGES / speed / 3600 for row, speed in sorted(speeds.items())}
    jobs = [h for h in hours.values() for _ in range(args.seeds)]
    parallel, one_gpu = parallel_wall(jobs, args.gpus), sum(jobs)
    ddp = one_gpu / args.gpus
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# python benchmarks/node_plan.py {args.results} --gpus {args.gpus} --seeds {args.seeds}")
    print(f"# A projection, not a measurement: speeds from {args.results} (see its head for how and where they "
          f"were measured); computed {datetime.now(timezone.utc):%Y-%m-%d} at commit {commit} on "
          f"{platform.node() or 'this machine'}")
    print(f"# Table 5 on ImageNet-100, train=imagenet100 ({epochs} epochs × {TRAIN_IMAGES:,} images), "
          f"{len(hours)} rows × {args.seeds} seed(s), global batch 1024, on {args.gpus} GPUs")
    print(f"{'row':<14}{'img/s':>8}{'h on 1 GPU':>12}")
    for row, h in hours.items():
        print(f"{row:<14}{speeds[row]:>8.0f}{h:>12.2f}")
    print(f"all runs on one GPU, one after another: {one_gpu:.1f} h")
    print(f"parallel jobs, {args.gpus} at once (hydra/launcher=parallel): {parallel:.1f} h "
          f"(GPUs busy {one_gpu / (args.gpus * parallel):.0%} of it)")
    print(f"DDP on {args.gpus} GPUs, one run at a time, perfect scaling: {ddp:.1f} h; "
          f"DDP is faster only above {ddp / parallel:.0%} scaling efficiency")


if __name__ == "__main__":
    main()
