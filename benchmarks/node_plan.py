"""Table 5 on one multi-GPU node: one job per GPU (hydra/launcher=parallel) or each run across all GPUs (DDP)?

    python benchmarks/node_plan.py benchmarks/results/throughput-s12-224-h200.txt --gpus 8 [--seeds 3]

The plan (``python -m ablate.plan``) of Table 5 on ImageNet-100 (``train=imagenet100``: the paper's 1024-image global
batch in micro-batches of 128 per GPU, the batch the speeds were measured at) with ``--gpus`` parallel jobs, at the
per-row speeds of a benchmarks/throughput.py results file. Parallel jobs start in the sweep's order on the first free
GPU, as hydra-joblib-launcher hands them out; DDP trains one row at a time on all GPUs at the stated scaling
efficiency, and the plan prints the efficiency DDP would need to win. Evaluation counts at 3× the training speed;
data loading is left out (both ways pay it alike, given a loader that keeps up). The data need not be here
(``data.root=.`` passes the config check): ImageNet-100's size is known (ablate.plan.cost.KNOWN_SIZES).
"""
import argparse
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from ablate.plan.__main__ import main as plan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="a benchmarks/throughput.py results file")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--ddp-efficiency", type=float, default=0.9)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# python benchmarks/node_plan.py {args.results} --gpus {args.gpus} --seeds {args.seeds}")
    print(f"# A projection, not a measurement: speeds from {args.results} (see its head for how and where they "
          f"were measured); computed {datetime.now(timezone.utc):%Y-%m-%d} at commit {commit} on "
          f"{platform.node() or 'this machine'}")
    return plan(["-m", "+sweep=table5", "train=imagenet100", "data=imagenet100", "data.root=.",
                 "hydra/launcher=parallel", f"hydra.launcher.n_jobs={args.gpus}",
                 f"seed={','.join(map(str, range(args.seeds)))}", "--speeds", str(args.results),
                 "--ddp-efficiency", str(args.ddp_efficiency)])


if __name__ == "__main__":
    raise SystemExit(main())
