"""Training-step speed side by side in one process: timm's PoolFormer, our baseline with each speed option,
each pooling implementation, and every Table 5 row.

    python benchmarks/throughput.py                     # S12 at 224, batch 128, everything: ~8 min on an H100 (est.)
    python benchmarks/throughput.py --sections rows --no-compile                  # the Table 5 rows only
    python benchmarks/throughput.py --sections step                # ours vs timm, eager and compiled (gpu.sh)
    python benchmarks/throughput.py --img-size 32 --batch 2 --steps 1 --rounds 1 --no-compile \
        --device cpu            # a tiny CPU run, end to end in seconds (tests/test_benchmarks.py)
    python benchmarks/throughput.py --model s12 --img-size 64 --batch 32 --steps 1 --rounds 9 \
        --clock cpu --threads 1                        # a CPU shared with other work: ~8 min on 2 cores

Every case trains AdamW steps (lr 1e-3, wd 0.05, cross-entropy with label smoothing 0.1) on one random batch,
with the model size's drop path (S12: 0.1): the same batch, precision (bf16 autocast on CUDA, fp32 on the CPU),
drop path and optimiser for timm's ``poolformer_<model>`` and ours. Cases take turns over ``--rounds`` rounds of
``--steps`` steps and the median round counts, so drift in clocks or load hits every case alike. A case is
warmed up (compiled) before the first round; every case stays built until the end.

Columns: img/s; the ratio to timm eager and to our baseline as the recipe runs it; peak memory (CUDA: the
case's own parameters, optimiser state and activations); MB/img, the bytes an unfused step moves per image
(counted op by op, see bound.py); and img/s as a % of the memory-traffic bound, bandwidth / (MB/img), with the
bandwidth from bound.BANDWIDTH_TBS for the GPU at hand (or --bandwidth). Compiled cases are held to the bound of
the same step unfused, so fusion can take them past 100%. A case that fails prints its error and the rest go on.
With the rows section, the last line projects Table 5 on ImageNet-100 in GPU-hours at each row's speed, model
only (workload.py: rows from sweeps/table5/, epochs from train=imagenet100).
"""
import argparse
import datetime
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import timm
import torch
from timm.optim import create_optimizer_v2
from torch import nn

from ablate import build_model, compose
from ablate.errors import Interrupted
from ablate.model import fast_norms, set_pooling
from ablate.model.pooling import IMPLEMENTATIONS
from ablate.reference import table5
from ablate.run.distributed import pick_device
from bound import Traffic, bandwidth_tbs, count_traffic
from workload import table5 as table5_workload


@dataclass(frozen=True)
class Setting:
    """One way to train one model; equal settings are measured once."""

    row: str = table5.BASELINE  # a Table 5 row id (ours), or "timm"
    compile: str | None = None  # a torch.compile mode
    fused: bool = False  # fused AdamW
    cudnn_benchmark: bool = False  # cuDNN tries its algorithms for each shape and keeps the fastest
    fast_norm: bool = False  # norms in bf16 under autocast
    channels_last: bool = False
    pooling: str | None = None  # pooling.IMPLEMENTATIONS; None follows pooling.POLICY


SECTIONS = ("step", "options", "pooling", "rows")
POOL_ROWS = {3: table5.BASELINE, 5: "pool5", 7: "pool7", 9: "pool9"}  # pool size → Table 5 row


def recipe_setting(cuda: bool) -> Setting:
    """What train.py does with the recipe's defaults on this device."""
    t = compose().train
    return Setting(compile=t.compile_mode if t.compile else None, fused=t.fused_optimizer,
                   cudnn_benchmark=t.cudnn_benchmark and cuda, fast_norm=t.fast_norm,
                   channels_last=t.channels_last and cuda)


def cases(recipe: Setting, cuda: bool, compiled: bool, sections: list[str], rows: list[str]
          ) -> dict[str, dict[str, Setting]]:
    """Titled sections of labelled settings; ``recipe`` is how ``python -m ablate`` trains here by default."""
    timm_eager, eager, compiled_recipe = Setting("timm"), Setting(), replace(recipe, compile="default")
    step = {"timm, compiled": replace(timm_eager, compile="default"), "recipe + compile": compiled_recipe}
    options = {"timm, compiled": replace(timm_eager, compile="default"),
               "ours, eager (as timm)": eager, "ours + fused AdamW": replace(eager, fused=True),
               "ours + cuDNN autotune": replace(eager, cudnn_benchmark=True),
               "ours + bf16 norms": replace(eager, fast_norm=True),
               "ours + channels_last": replace(eager, channels_last=True),
               "ours + compile": replace(eager, compile="default"), "recipe + compile": compiled_recipe,
               "recipe + compile + bf16 norms": replace(compiled_recipe, fast_norm=True),
               "recipe + compile + channels_last": replace(compiled_recipe, channels_last=True),
               "recipe + compile with CUDA graphs": replace(recipe, compile="reduce-overhead")}
    pooling = {f"pool {k}, {impl}": replace(recipe, row=row, pooling=impl) for k, row in POOL_ROWS.items()
               for impl in IMPLEMENTATIONS}
    pooling |= {f"pool {k}, compiled": replace(recipe, row=POOL_ROWS[k], compile=recipe.compile or "default")
                for k in (3, 9)}
    chosen = {"step": ("ours and timm, compiled", step),
              "options": ("speed options (ours: the baseline row)", options),
              "pooling": ("pool size 3 (baseline), 5, 7 and 9, each pooling implementation, recipe defaults",
                          pooling),
              "rows": ("Table 5 rows, recipe defaults", {row: replace(recipe, row=row) for row in rows})}
    cuda_only = lambda s: s.fast_norm or s.cudnn_benchmark or s.compile == "reduce-overhead"  # noqa: E731
    keep = lambda s: (cuda or not cuda_only(s)) and (compiled or not s.compile)  # noqa: E731
    titled = {"references": {"timm, eager": timm_eager, "ours, recipe defaults": recipe}}
    kept = {title: {label: s for label, s in section.items() if keep(s)}
            for name, (title, section) in chosen.items() if name in sections}
    return titled | {title: section for title, section in kept.items() if section}


def recipe_dtype(cuda: bool) -> torch.dtype:
    """The autocast precision train.py uses: bf16 on CUDA when the recipe asks for it, fp32 on the CPU."""
    return torch.bfloat16 if cuda and compose().train.amp else torch.float32


STOPS = (KeyboardInterrupt, Interrupted)  # Ctrl-C, or SIGTERM (gpu.sh's time limit) once stop_on_sigterm ran


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM raises Interrupted inside, so that a benchmark cut short by a time limit reports what it measured."""
    def stop(signum: int, frame: object) -> None:
        raise Interrupted("SIGTERM")
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Case:
    step: Callable[[], None]
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor


def build(s: Setting, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> Case:
    cfg = compose([f"+sweep/table5={s.row if s.row != 'timm' else table5.BASELINE}", f"model={args.model}",
                   f"data.img_size={args.img_size}"])
    with fast_norms(s.fast_norm):
        model = (timm.create_model(f"poolformer_{args.model}", drop_path_rate=cfg.model.drop_path)
                 if s.row == "timm" else set_pooling(build_model(cfg, 1000), s.pooling))
    fmt = torch.channels_last if s.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, fused=s.fused)
    net = torch.compile(model, mode=s.compile, dynamic=False) if s.compile else model
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    amp = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device).to(memory_format=fmt)
    y = torch.randint(0, 1000, (args.batch,), device=device)

    def step() -> None:  # as ablate.run.train.train_one_epoch
        torch.backends.cudnn.benchmark = s.cudnn_benchmark  # a global flag, read by every convolution
        with amp:
            loss = criterion(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return Case(step, model, x, y)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(s: Setting, args: argparse.Namespace, device: torch.device, dtype: torch.dtype
            ) -> tuple[Case, float | None, Traffic]:
    """Build, run three steps (compiling, if so), and measure the case's peak memory and unfused traffic."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if cuda else 0
    case = build(s, args, device, dtype)
    for _ in range(3):
        case.step()
    sync(device)
    peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20 if cuda else None
    return case, peak, count_traffic(case.model, case.x, case.y, dtype)


def measure(settings: list[Setting], args: argparse.Namespace, device: torch.device, dtype: torch.dtype
            ) -> dict[Setting, dict]:
    """Each setting's img/s (median round), peak memory and traffic. A case's first round runs right after its
    warm-up, the others take turns; Ctrl-C or SIGTERM stops early and keeps what was measured."""
    results, built = {}, {}
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    def one_round(s: Setting) -> None:
        try:
            sync(device)
            tic = clock()
            for _ in range(args.steps):
                built[s].step()
            sync(device)
            results[s]["times"].append(clock() - tic)
        except Exception as e:
            results[s] = _failed(e)
            del built[s]
    try:
        for s in settings:
            try:
                built[s], peak, traffic = warm_up(s, args, device, dtype)
                results[s] = {"peak": peak, "traffic": traffic, "times": []}
            except Exception as e:
                results[s] = _failed(e)
                continue
            one_round(s)
        for _ in range(args.rounds - 1):
            for s in list(built):
                one_round(s)
    except STOPS:
        print("# interrupted: what was measured so far follows", file=sys.stderr, flush=True)
    for s in settings:
        r = results.setdefault(s, {"error": "not measured: interrupted"})
        if r.get("times"):
            r["img_s"] = args.batch * args.steps / statistics.median(r["times"])
        elif "error" not in r:
            results[s] = {"error": "not measured: interrupted"}
    return results


def _failed(e: Exception) -> dict[str, str]:
    # One broken case must not cost the whole (GPU) run: say why, and the others go on.
    traceback.print_exc()
    return {"error": f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:88]}


def report(sections: dict[str, dict[str, Setting]], results: dict[Setting, dict], recipe: Setting,
           tbs: float | None) -> None:
    ref = {name: results.get(s, {}).get("img_s") for name, s in (("timm", Setting("timm")), ("ours", recipe))}
    print(f"{'case':<40} {'img/s':>8} {'× timm':>7} {'× ours':>7} {'peak MiB':>9} {'MB/img':>7} {'% bound':>8}")
    for title, section in sections.items():
        print(f"## {title}")
        for label, s in section.items():
            r = results[s]
            if "error" in r:
                print(f"{label:<40} {r['error']}")
                continue
            ratios = [f"{r['img_s'] / v:>7.2f}" if v else f"{'-':>7}" for v in (ref["timm"], ref["ours"])]
            bound = f"{100 * r['img_s'] / r['traffic'].bound(tbs):>7.0f}%" if tbs else f"{'-':>8}"
            peak = f"{r['peak']:>9.0f}" if r["peak"] is not None else f"{'-':>9}"
            print(f"{label:<40} {r['img_s']:>8.0f} {' '.join(ratios)} {peak} "
                  f"{r['traffic'].bytes_per_image / 1e6:>7.0f} {bound}")
    if recipe in results and "traffic" in results[recipe]:
        t = results[recipe]["traffic"]
        print(f"# bound of our baseline: {t.activations_per_image / 1e6:.2f}M activation elements/img × "
              f"{t.element_bytes} B × {t.passes:.0f} passes = {t.bytes_per_image / 1e6:.0f} MB/img"
              + (f"; at {tbs} TB/s, {t.bound(tbs):.0f} img/s" if tbs else "; no bandwidth known (--bandwidth)"))
    rows = {row: results[s]["img_s"] for row, s in sections.get("Table 5 rows, recipe defaults", {}).items()
            if "img_s" in results[s]}
    goals(results, recipe, rows)
    if table5.BASELINE in rows:
        w = table5_workload()
        print(f"# Table 5 on ImageNet-100, model only: {w.gpu_hours(rows):.1f} hours on this device for "
              f"{w.describe()}, at each row's img/s above ({len(rows)} of {len(w.rows)} rows measured, the "
              "others at the baseline's)")


def goals(results: dict[Setting, dict], recipe: Setting, rows: dict[str, float]) -> None:
    """The step's goals (they stand from earlier issues), as '# goal:' lines, for those measured here."""
    speed = lambda s: results.get(s, {}).get("img_s")  # noqa: E731
    timm_eager = speed(Setting("timm"))
    ours = {label: speed(s) for label, s in (("recipe defaults", recipe),
                                             ("recipe + compile", replace(recipe, compile="default")))}
    ours = {label: v for label, v in ours.items() if v}
    if timm_eager and ours:
        shown = ", ".join(f"{label} {v / timm_eager:.2f}×" for label, v in ours.items())
        print(f"# goal: ours ≥ 2× timm eager (≥ 7k img/s on an H100, ≥ 10k on an H200): {shown}; "
              f"best {max(ours.values()):.0f} img/s")
    if table5.BASELINE in rows and "pool9" in rows:
        print(f"# goal: pool 9 ≥ 0.95× pool 3 (Table 5 rows, recipe defaults): "
              f"{rows['pool9'] / rows[table5.BASELINE]:.2f}×")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="s12", help="a size timm also has: s12 s24 s36 m36 m48")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"any of {', '.join(SECTIONS)}")
    parser.add_argument("--rows", default=",".join(table5.rows()), help="Table 5 row ids, comma-separated")
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled cases")
    parser.add_argument("--bandwidth", type=float, help="device memory bandwidth in TB/s (default: by GPU name)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU time, for a CPU shared with other work (use --threads 1)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    dtype = recipe_dtype(cuda)
    recipe = recipe_setting(cuda)
    sections = cases(recipe, cuda, not args.no_compile, args.sections.split(","), args.rows.split(","))
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    tbs = args.bandwidth or bandwidth_tbs(name)
    print(f"# {args.model} at {args.img_size}px, batch {args.batch}, {dtype}, {args.steps} steps × {args.rounds} "
          f"rounds (median, {args.clock} clock); {name} ({tbs or '?'} TB/s), {torch.get_num_threads()} "
          f"threads; torch {torch.__version__}, timm {timm.__version__}; {datetime.date.today()}")
    tic = time.perf_counter()
    settings = list(dict.fromkeys(s for section in sections.values() for s in section.values()))
    with stop_on_sigterm():
        results = measure(settings, args, device, dtype)
    report(sections, results, recipe, tbs)
    print(f"# {len(settings)} cases in {time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()
