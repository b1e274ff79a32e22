"""How long the plan takes, and how close its projection comes to the run it projects, side by side in one run.

    python benchmarks/plan_vs_run.py            # → benchmarks/results/plan-vs-run-cpu.txt (~2 min on 2 cores)

1. ``python -m ablate.plan -m +sweep=table5 model=xs train.epochs=15 seed=0,1,2`` (the committed digits report's
   sweep, 54 jobs), timed as a user waits for it (start-up included); the goal is under a minute on 2 CPU cores.
2. The plan of a one-job sweep (the baseline of that sweep), then that sweep run: the plan's projected seconds
   beside the run's record (``wall_s``: training and evaluation, start-up left out, as the plan projects it).
"""
import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

from header import REPO, timed, write_results

RESULTS = REPO / "benchmarks" / "results" / "plan-vs-run-cpu.txt"
TABLE5 = ["+sweep=table5", "model=xs", "train.epochs=15", "seed=0,1,2"]
ONE_JOB = ["model=xs", "train.epochs=15", "seed=0"]
GOAL_S, FACTOR = 60, 1.5  # the plan's goals: under a minute, and within 1.5x of the run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        plan = [sys.executable, "-m", "ablate.plan", "-m"]
        wall = timed([*plan, *TABLE5, "hydra.sweep.dir=table5"], cwd)
        lines.append(f"python -m ablate.plan -m {shlex.join(TABLE5)}: {wall:.1f} s "
                     f"({'under' if wall < GOAL_S else 'OVER'} the {GOAL_S} s goal)")
        timed([*plan, *ONE_JOB, "hydra.sweep.dir=one", "--save"], cwd)
        (job,) = json.loads((cwd / "one/plan.json").read_text())["jobs"]
        timed([sys.executable, "-m", "ablate", "-m", *ONE_JOB, "hydra.sweep.dir=one"], cwd)
        record = json.loads((cwd / "one" / job["run_dir"] / "results.json").read_text())
    ratio = record["wall_s"] / job["projected_s"]
    lines.append(f"one job ({shlex.join(ONE_JOB)}): projected {job['projected_s']:.1f} s, the run's record "
                 f"{record['wall_s']:.1f} s: run / projection {ratio:.2f} "
                 f"({'within' if 1 / FACTOR <= ratio <= FACTOR else 'NOT within'} {FACTOR}x)")
    write_results(args.out, "plan_vs_run.py", argv, lines)


if __name__ == "__main__":
    main()
