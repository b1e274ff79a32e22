"""``python -m ablate.plan -m ARGS...``: the plan of the sweep ``python -m ablate -m ARGS...`` would run; trains
nothing and writes nothing (``--save`` writes plan.json and plan.txt into the sweep's folder)."""
import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ablate.config import check_overrides
from ablate.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ablate.plan", description=__doc__.split("\n")[0],
                                     epilog="Every other argument is the sweep's own, as given to python -m ablate.")
    parser.add_argument("--speeds", type=Path, help="img/s by row from a results file of another machine "
                        "(lines '<row> <img/s>', e.g. benchmarks/results/throughput-s12-224-h200.txt)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per distinct model (default 3)")
    parser.add_argument("--ddp-devices", type=int, help="devices of the DDP projection (default: parallel jobs)")
    parser.add_argument("--ddp-efficiency", type=float, default=0.9, help="DDP scaling efficiency (default 0.9)")
    parser.add_argument("--save", action="store_true", help="also write plan.json and plan.txt into the sweep folder")
    args, sweep = parser.parse_known_args(argv)
    tic = time.perf_counter()
    try:
        check_overrides([a for a in sweep if not a.startswith("-")])
        from ablate.plan.cost import read_speeds
        from ablate.plan.jobs import sweep_config
        from ablate.plan.plan import Options, make_plan, render, write_plan
        options = Options(measure=args.speeds is None, steps=args.steps, ddp_devices=args.ddp_devices,
                          ddp_efficiency=args.ddp_efficiency,
                          speeds=read_speeds(args.speeds) if args.speeds else None,
                          speeds_from=str(args.speeds) if args.speeds else None)
        config = sweep_config(sweep)
        plan = make_plan(config, " ".join(["python -m ablate.plan", *map(str, argv or sys.argv[1:])]), options)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(render(plan))
    if args.save:
        write_plan(plan, Path(plan.sweep_dir))
    print(f"# planned in {time.perf_counter() - tic:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
