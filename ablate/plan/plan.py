"""A sweep's plan: its jobs, each distinct model's cost, the projected wall times, the disk, and the rows that
compute the same function in a stage; as text (plan.txt) and JSON (plan.json, which the report reads)."""
import heapq
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ablate.config import compose
from ablate.config.spec import to_spec
from ablate.files import atomic_write
from ablate.model.build import model_args
from ablate.plan.cost import EVAL_SPEEDUP, DataSize, ModelCost, data_size, model_cost
from ablate.plan.jobs import PlannedJob, planned_jobs
from ablate.specs import DataSpec, RunSpec
from ablate.sweep.status import duration

PLAN_JSON, PLAN_TXT = "plan.json", "plan.txt"


@dataclass
class Options:
    """How to plan: measure speeds here (``steps`` per model), or read them (``speeds``: img/s by row); DDP at
    ``ddp_efficiency`` of perfect scaling on ``ddp_devices`` (None: as many as the launcher's parallel jobs)."""

    measure: bool = True
    steps: int = 3
    speeds: dict[str, float] | None = None
    speeds_from: str | None = None
    ddp_devices: int | None = None
    ddp_efficiency: float = 0.9


@dataclass
class Plan:
    command: str
    sweep_dir: str
    img_sizes: list[int]
    slots: int  # jobs at once: the launcher's n_jobs (joblib) or array_parallelism (submitit); 1 for the basic one
    ddp_devices: int
    ddp_efficiency: float
    speeds_from: str
    device: str | None
    device_bytes: int | None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # first row of each distinct model → cost
    jobs: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, float | None] = field(default_factory=dict)
    equivalences: list[dict[str, Any]] = field(default_factory=list)
    warning: str | None = None


def parallel_wall(seconds: Sequence[float], slots: int) -> float:
    """When the last of ``seconds`` (jobs in launch order) ends, each starting on the first slot to come free."""
    free = [0.0] * max(1, slots)
    for s in seconds:
        heapq.heappush(free, heapq.heappop(free) + s)
    return max(free)


def launcher_slots(config: DictConfig) -> int:
    launcher = config.hydra.get("launcher") or {}
    return int(launcher.get("n_jobs") or launcher.get("array_parallelism") or 1)


def _model_key(cfg: RunSpec) -> str:
    """What decides a model's cost: its design and image size, the batch and how the step runs."""
    t = cfg.train
    return json.dumps([model_args(cfg), t.batch_size, t.device, t.amp, t.compile, t.channels_last, t.ema_decay],
                      sort_keys=True, default=list)


def _epochs(cfg: RunSpec) -> int:
    return cfg.train.epochs + cfg.train.cooldown_epochs


def _data_key(cfg: RunSpec) -> DataSpec:
    return cfg.data


def _job_seconds(job: PlannedJob, cfg: RunSpec, data: DataSize, cost: ModelCost
                 ) -> tuple[float | None, float | None]:
    """A run's projected seconds (training and evaluation, set-up left out: as the record's wall_s) and those
    left; None without a speed."""
    if not cost.train_img_s:
        return None, None
    trained = data.train // cfg.train.batch_size * cfg.train.batch_size  # the last partial batch is dropped
    per_epoch = trained / cost.train_img_s + data.val / (cost.eval_img_s or cost.train_img_s * EVAL_SPEEDUP)
    left = 0 if job.state == "skip" else max(0, _epochs(cfg) - job.epochs_done)
    return _epochs(cfg) * per_epoch, left * per_epoch


def _price(plan: Plan, configs: dict[str, RunSpec], options: Options, hidden_bytes: int
           ) -> tuple[dict[DataSpec, DataSize], dict[str, tuple[str, ModelCost]]]:
    """Each data set's size, and each distinct model's cost by model key, with the first row that has it; fills
    ``plan.models``."""
    sizes: dict[DataSpec, DataSize] = {}
    costs: dict[str, tuple[str, ModelCost]] = {}
    for row, cfg in configs.items():
        if _data_key(cfg) not in sizes:
            sizes[_data_key(cfg)] = data_size(cfg)
        data, key = sizes[_data_key(cfg)], _model_key(cfg)
        if key not in costs:
            measure = options.measure and options.speeds is None
            cost = model_cost(cfg, data.num_classes, hidden_bytes, options.steps if measure else None)
            if options.speeds is not None:
                speed = options.speeds.get(row)
                cost.train_img_s, cost.speed_source = speed, options.speeds_from if speed else "not in the file"
            costs[key] = (row, cost)
            plan.models[row] = {**asdict(cost), "rows": [], "train_images": data.train, "val_images": data.val,
                                "run_bytes": cost.checkpoint_bytes + cost.record_bytes(_epochs(cfg), data.val)}
        plan.models[costs[key][0]]["rows"].append(row)
    return sizes, costs


def _find_same_function(plan: Plan, configs: dict[str, RunSpec]) -> None:
    """``plan.equivalences`` and its warning: the distinct models of each image size, checked by computation."""
    from ablate.model.equivalence import same_function, warning_line
    lines = []
    for img_size in plan.img_sizes:
        designs = {}
        for row in plan.models:
            if configs[row].data.img_size == img_size:
                design = model_args(configs[row])
                design.pop("img_size")
                designs.setdefault(json.dumps(design, sort_keys=True), (row, design))
        found = same_function(dict(designs.values()), img_size)
        plan.equivalences += [e.as_dict() for e in found]
        lines.append(warning_line(found, img_size))
    plan.warning = "; ".join(filter(None, lines)) or None


def make_plan(config: DictConfig, command: str, options: Options) -> Plan:
    """The plan of the sweep ``config`` (ablate.plan.jobs.sweep_config)."""
    jobs = planned_jobs(config)
    configs: dict[str, RunSpec] = {}
    for job in jobs:  # seeds share a row's model: one config per row
        if job.row not in configs:
            configs[job.row] = to_spec(compose(job.overrides), job.overrides)
    device = device_bytes = None
    hidden_bytes = 4
    if options.measure:
        from ablate.run.distributed import device_memory, pick_device
        first = next(iter(configs.values())).train
        on = pick_device(first.device)
        device, (device_bytes, hidden_bytes) = str(on), device_memory(on, first.amp)
    slots = launcher_slots(config)
    speeds_from = options.speeds_from or (f"measured here, {options.steps} steps per model" if options.measure
                                          else "not measured")
    plan = Plan(command, str(config.hydra.sweep.dir), sorted({c.data.img_size for c in configs.values()}), slots,
                options.ddp_devices or slots, options.ddp_efficiency, speeds_from, device, device_bytes)
    sizes, costs = _price(plan, configs, options, hidden_bytes)
    for job in jobs:
        cfg = configs[job.row]
        model_row, cost = costs[_model_key(cfg)]
        total, left = _job_seconds(job, cfg, sizes[_data_key(cfg)], cost)
        plan.jobs.append({"run_dir": str(job.run_dir.relative_to(config.hydra.sweep.dir)), "row": job.row,
                          "model": model_row, "seed": job.seed, "state": job.state, "epochs_done": job.epochs_done,
                          "epochs": _epochs(cfg), "projected_s": total, "left_s": left})
    plan.totals = _totals(plan)
    _find_same_function(plan, configs)
    return plan


def _totals(plan: Plan) -> dict[str, float | None]:
    left = [j["left_s"] for j in plan.jobs]
    runs = {j["model"]: plan.models[j["model"]]["run_bytes"] for j in plan.jobs}
    disk = sum(runs[j["model"]] for j in plan.jobs)
    if any(s is None for s in left):
        return {"serial_s": None, "parallel_s": None, "ddp_s": None, "disk_bytes": disk}
    serial = sum(left)
    return {"serial_s": serial, "parallel_s": parallel_wall(left, plan.slots),
            "ddp_s": serial / (plan.ddp_devices * plan.ddp_efficiency), "disk_bytes": disk}


def _bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def render(plan: Plan) -> str:
    """plan.txt: the sweep, each distinct model, each job, the totals and the warning."""
    states = {s: sum(j["state"] == s for j in plan.jobs) for s in ("new", "skip", "resume")}
    lines = [f"# {plan.command}",
             f"sweep {plan.sweep_dir}: {len(plan.jobs)} jobs; a run now would start {states['new']}, skip "
             f"{states['skip']} (completed) and resume {states['resume']} (checkpoint)",
             f"speeds: {plan.speeds_from}; device: {plan.device or 'not queried'}"
             + (f" ({_bytes(plan.device_bytes)})" if plan.device_bytes else ""),
             "", f"{'model (first row)':<20}{'params M':>9}{'MACs G':>9}{'min step memory':>17}{'img/s':>8}"
                 f"{'eval img/s':>11}{'disk/run':>10}  rows"]
    for row, m in plan.models.items():
        memory = _bytes(m["min_train_bytes"]) + (f" ({m['min_train_bytes'] / plan.device_bytes:.0%})"
                                                 if plan.device_bytes else "")
        speed = f"{m['train_img_s']:.0f}" if m["train_img_s"] else "?"
        evaluate = f"{m['eval_img_s']:.0f}" if m["eval_img_s"] else "-"
        lines.append(f"{row:<20}{m['params_m']:>9.3g}{m['macs_g']:>9.3g}{memory:>17}{speed:>8}{evaluate:>11}"
                     f"{_bytes(m['run_bytes']):>10}  {', '.join(m['rows'])}")
    width = max(len(j["run_dir"]) for j in plan.jobs) + 2
    lines += ["", f"{'job':<{width}}{'state':>14}{'projected':>16}{'left':>16}"]
    for j in plan.jobs:
        state = j["state"] if j["state"] == "new" else f"{j['state']} ({j['epochs_done']}/{j['epochs']})"
        lines.append(f"{j['run_dir']:<{width}}{state:>14}{duration(j['projected_s']):>16}{duration(j['left_s']):>16}")
    t = plan.totals
    lines += ["", f"one after another: {duration(t['serial_s'])}; {plan.slots} parallel job(s) "
                  f"(hydra.launcher.n_jobs): {duration(t['parallel_s'])}; DDP on {plan.ddp_devices} device(s) at "
                  f"{plan.ddp_efficiency:.0%} scaling efficiency: {duration(t['ddp_s'])}"]
    if t["serial_s"] and t["parallel_s"] and plan.ddp_devices > 1:
        lines.append(f"DDP is faster than parallel jobs above {t['serial_s'] / plan.ddp_devices / t['parallel_s']:.0%}"
                     " scaling efficiency")
    lines.append(f"disk: {_bytes(t['disk_bytes'])} in all (checkpoint and records per run, as listed above)")
    lines.append(f"warning: {plan.warning}" if plan.warning else "no two rows compute the same function in a stage")
    return "\n".join(lines)


def write_plan(plan: Plan, folder: Path) -> None:
    """plan.json and plan.txt into ``folder`` (the sweep's), atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in ((PLAN_JSON, json.dumps(asdict(plan), indent=1) + "\n"), (PLAN_TXT, render(plan) + "\n")):
        atomic_write(folder / name, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))


def sweep_start_plan(config: DictConfig, command: str, measure: bool = True) -> Plan:
    """The plan a sweep writes as it starts. Speeds are measured (unless not to ``measure``) only when its runs
    train on this machine's CPU,
    where a few steps per model cost seconds of a sweep of minutes; on a GPU the launcher's process must not open a
    CUDA context (it would hold memory on a GPU its jobs need), and a cluster's jobs run elsewhere (submitit), so
    those plans project no times."""
    import torch
    device = compose(planned_jobs(config)[0].overrides).train.device
    here = "submitit" not in str(config.hydra.launcher.get("_target_", ""))
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    return make_plan(config, command, Options(measure=measure and here and on_cpu))
