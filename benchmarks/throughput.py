"""Training throughput and peak memory of every Table 5 row, measured side by side in one process.

    python benchmarks/throughput.py                       # S12 at 224 on the GPU (or the CPU)
    python benchmarks/throughput.py --model xs --img-size 32 --batch 64 --rows baseline,identity

Each row trains a few AdamW steps on random data; rows take turns over several rounds and the median
round counts, so drift in clocks or load hits every row alike. Prints img/s, peak memory and the ratio to
the baseline row; on CUDA also the baseline with bf16 autocast off and with channels_last on.
"""
import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from ablate import build_model, compose
from ablate.config import CONF_DIR
from ablate.distributed import pick_device

ROWS = sorted(p.stem for p in (CONF_DIR / "sweep" / "table5").glob("*.yaml"))


def make_step(overrides: list[str], args: argparse.Namespace, device: torch.device, amp: bool,
              channels_last: bool) -> tuple[Callable[[], None], nn.Module]:
    cfg = compose([*overrides, f"model={args.model}", f"data.img_size={args.img_size}"])
    model = build_model(cfg, 1000).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device).to(memory_format=fmt)
    y = torch.randint(0, 1000, (args.batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step, model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="s12")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows of sweeps/table5/")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    # As the recipes run on CUDA: bf16 autocast on, channels_last off.
    cases = {row: ([f"+sweep/table5={row}"], cuda, False) for row in args.rows.split(",")}
    if cuda:
        cases["baseline, fp32 (no autocast)"] = (["+sweep/table5=baseline"], False, False)
        cases["baseline, channels_last"] = (["+sweep/table5=baseline"], True, True)

    times: dict[str, list[float]] = {name: [] for name in cases}
    memory: dict[str, float] = {}
    for name, (overrides, amp, channels_last) in cases.items():  # warm up and measure memory one case at a time
        step, model = make_step(overrides, args, device, amp, channels_last)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(3):
            step()
        sync(device)
        memory[name] = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else float("nan")
        del step, model
    for _ in range(args.rounds):
        for name, (overrides, amp, channels_last) in cases.items():
            step, _model = make_step(overrides, args, device, amp, channels_last)
            step()
            sync(device)
            tic = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync(device)
            times[name].append(time.perf_counter() - tic)

    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    print(f"# {args.model} at {args.img_size}px, batch {args.batch}, {args.steps} steps × {args.rounds} rounds "
          f"(median), {name}, torch {torch.__version__}")
    print(f"{'case':<42} {'img/s':>9} {'× baseline':>11} {'peak MiB':>9}")
    speed = {n: args.batch * args.steps / statistics.median(t) for n, t in times.items()}
    base = speed.get("baseline", next(iter(speed.values())))
    for n, s in speed.items():
        print(f"{n:<42} {s:>9.0f} {s / base:>11.2f} {memory[n]:>9.0f}")


if __name__ == "__main__":
    main()
