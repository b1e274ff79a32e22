"""The README's figures for the default run: ``python -m ablate`` as a new user runs it, timed, into a results file.

    python benchmarks/default_run.py                          # → benchmarks/results/default-run-cpu.txt (~2 min)
    python benchmarks/default_run.py --suite                  # and the fast test suite's wall time
    python benchmarks/default_run.py --out F -- model=xs train.epochs=1      # extra overrides (the test's tiny run)

The run goes to a temporary directory (``hydra.run.dir``); the file gets the header (command, commit, machine,
date) and the run's record: val top-1, the trainer's img/s (median epoch), peak memory, the record's wall time and
the command's own wall time (start-up included, as a user waits for it).
"""
import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

from header import REPO, timed, write_results

RESULTS = REPO / "benchmarks" / "results" / "default-run-cpu.txt"


def default_run(overrides: list[str]) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "ablate", f"hydra.run.dir={tmp}", *overrides]
        wall = timed(command, REPO)
        r = json.loads((Path(tmp) / "results.json").read_text())
    shown = shlex.join(["python", "-m", "ablate", *overrides])
    return [f"{shown}: status {r['status']}, {r['epochs']} epochs, {r['data']} ({r['img_size']} px), "
            f"model {r['model']}, device {r['device']}",
            f"val top-1 {r['top1']:.2f}%  (best {r['best_top1']:.2f}%)",
            f"train img/s {r['img_per_s']:.0f}  (median epoch)",
            f"peak memory {r['peak_mem_mb'] / 1024:.2f} GB  (the process's peak RSS)",
            f"wall time {r['wall_s']:.0f} s training (the record's), {wall:.0f} s for the command (start-up included)"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--suite", action="store_true", help='also time python -m pytest -q -m "not slow"')
    parser.add_argument("overrides", nargs="*", help="extra overrides for the run (after --)")
    args = parser.parse_args(argv)
    lines = default_run(args.overrides)
    if args.suite:
        wall = timed([sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"], REPO)
        lines.append(f'python -m pytest -q -m "not slow": {wall:.0f} s')
    write_results(args.out, "default_run.py", argv, lines)


if __name__ == "__main__":
    main()
