"""Training-step speed side by side in one process: timm's PoolFormer, our baseline with each speed option,
each pooling implementation, and every Table 5 row.

    python benchmarks/throughput.py                     # S12 at 224, batch 128, everything: ~8 min on an H100 (est.)
    python benchmarks/throughput.py --sections rows --no-compile                  # the Table 5 rows only
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
"""
import argparse
import datetime
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace

import timm
import torch
from timm.optim import create_optimizer_v2
from torch import nn

from ablate import build_model, compose, table5
from ablate.run.distributed import pick_device
from ablate.model import fast_norms, set_pooling
from ablate.model.pooling import IMPLEMENTATIONS
from bound import Traffic, bandwidth_tbs, count_traffic


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


SECTIONS = ("options", "pooling", "rows")


def cases(recipe: Setting, cuda: bool, compiled: bool, sections: list[str], rows: list[str]
          ) -> dict[str, dict[str, Setting]]:
    """Titled sections of labelled settings; ``recipe`` is how ``python -m ablate`` trains here by default."""
    timm_eager, eager, compiled_recipe = Setting("timm"), Setting(), replace(recipe, compile="default")
    options = {"timm, compiled": replace(timm_eager, compile="default"),
               "ours, eager (as timm)": eager, "ours + fused AdamW": replace(eager, fused=True),
               "ours + cuDNN autotune": replace(eager, cudnn_benchmark=True),
               "ours + bf16 norms": replace(eager, fast_norm=True),
               "ours + channels_last": replace(eager, channels_last=True),
               "ours + compile": replace(eager, compile="default"), "recipe + compile": compiled_recipe,
               "recipe + compile + bf16 norms": replace(compiled_recipe, fast_norm=True),
               "recipe + compile + channels_last": replace(compiled_recipe, channels_last=True),
               "recipe + compile with CUDA graphs": replace(recipe, compile="reduce-overhead")}
    pooling = {f"{row}, {impl}": replace(recipe, row=row, pooling=impl) for row in ("baseline", "pool9")
               for impl in IMPLEMENTATIONS}
    pooling |= {f"{row}, compiled": replace(recipe, row=row, compile=recipe.compile or "default")
                for row in ("baseline", "pool9")}
    chosen = {"options": ("speed options (ours: the baseline row)", options),
              "pooling": ("pool size 3 (baseline) and 9, each pooling implementation, recipe defaults", pooling),
              "rows": ("Table 5 rows, recipe defaults", {row: replace(recipe, row=row) for row in rows})}
    cuda_only = lambda s: s.fast_norm or s.cudnn_benchmark or s.compile == "reduce-overhead"  # noqa: E731
    keep = lambda s: (cuda or not cuda_only(s)) and (compiled or not s.compile)  # noqa: E731
    titled = {"references": {"timm, eager": timm_eager, "ours, recipe defaults": recipe}}
    titled |= {title: {label: s for label, s in section.items() if keep(s)}
               for name, (title, section) in chosen.items() if name in sections}
    return titled


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
    results, built = {}, {}
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for s in settings:
        try:
            built[s], peak, traffic = warm_up(s, args, device, dtype)
            results[s] = {"peak": peak, "traffic": traffic, "times": []}
        except Exception as e:
            results[s] = _failed(e)
    for _ in range(args.rounds):
        for s, case in list(built.items()):
            try:
                sync(device)
                tic = clock()
                for _ in range(args.steps):
                    case.step()
                sync(device)
                results[s]["times"].append(clock() - tic)
            except Exception as e:
                results[s] = _failed(e)
                del built[s]
    for r in results.values():
        if "times" in r:
            r["img_s"] = args.batch * args.steps / statistics.median(r["times"])
    return results


def _failed(e: Exception) -> dict[str, str]:
    # One broken case must not cost the whole (GPU) run: say why, and the others go on.
    traceback.print_exc()
    return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:80]}


def report(sections: dict[str, dict[str, Setting]], results: dict[Setting, dict], recipe: Setting,
           tbs: float | None) -> None:
    ref = {name: results.get(s, {}).get("img_s") for name, s in (("timm", Setting("timm")), ("ours", recipe))}
    print(f"{'case':<40} {'img/s':>8} {'× timm':>7} {'× ours':>7} {'peak MiB':>9} {'MB/img':>7} {'% bound':>8}")
    for title, section in sections.items():
        print(f"## {title}")
        for label, s in section.items():
            r = results[s]
            if "error" in r:
                print(f"{label:<40} failed: {r['error']}")
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


def main() -> None:
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
    args = parser.parse_args()
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    t = compose().train
    dtype = torch.bfloat16 if cuda and t.amp else torch.float32
    # What train.py does with the recipe's defaults on this device.
    recipe = Setting(compile=t.compile_mode if t.compile else None, fused=t.fused_optimizer,
                     cudnn_benchmark=t.cudnn_benchmark and cuda, fast_norm=t.fast_norm,
                     channels_last=t.channels_last and cuda)
    sections = cases(recipe, cuda, not args.no_compile, args.sections.split(","), args.rows.split(","))
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    tbs = args.bandwidth or bandwidth_tbs(name)
    print(f"# {args.model} at {args.img_size}px, batch {args.batch}, {dtype}, {args.steps} steps × {args.rounds} "
          f"rounds (median, {args.clock} clock); {name} ({tbs or '?'} TB/s), {torch.get_num_threads()} "
          f"threads; torch {torch.__version__}, timm {timm.__version__}; {datetime.date.today()}")
    tic = time.perf_counter()
    settings = list(dict.fromkeys(s for section in sections.values() for s in section.values()))
    results = measure(settings, args, device, dtype)
    report(sections, results, recipe, tbs)
    print(f"# {len(settings)} cases in {time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()
