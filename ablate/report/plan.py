"""The sweep's plan (plan.json, written by ablate.plan as the sweep started) beside what the sweep took, and the
rows it found to compute the same function in a stage. Reads files only."""
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)
PLAN_JSON = "plan.json"  # ablate.plan.plan.PLAN_JSON; not imported: that module loads the model code
MARK = "≡"


@dataclass
class SweepPlans:
    """Every plan found above the runs, each job's projection by run directory, and the same-function findings
    with the table's labels in place of the plan's row names."""

    projected_s: dict[Path, float] = field(default_factory=dict)
    serial_s: float = 0.0
    equivalences: list[dict] = field(default_factory=list)  # as plan.json's, plus "labels"

    @property
    def found(self) -> bool:
        return bool(self.projected_s or self.equivalences)


def _plan_files(run_dirs: Iterable[Path]) -> list[Path]:
    """plan.json in any folder above a run, each once."""
    found, seen = [], set()
    for run_dir in run_dirs:
        for folder in Path(run_dir).parents:
            if folder in seen:
                break
            seen.add(folder)
            if (folder / PLAN_JSON).is_file():
                found.append(folder / PLAN_JSON)
    return found


def load_plans(runs: pd.DataFrame) -> SweepPlans:
    """The plans of the sweeps ``runs`` (with their table ``entry`` and ``label``) came from; unreadable ones are
    skipped with a warning."""
    result = SweepPlans()
    label_of = dict(zip(runs.run_dir.map(Path), runs.label))
    for path in _plan_files(label_of):
        try:
            plan = json.loads(path.read_text(encoding="utf-8"))
            jobs = plan["jobs"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("skipping %s: %s", path, e)
            continue
        labels: dict[str, set[str]] = {}
        for job in jobs:
            run_dir = (path.parent / job["run_dir"]).resolve()
            if run_dir in label_of:
                labels.setdefault(job["row"], set()).add(label_of[run_dir])
                if job.get("projected_s") is not None:
                    result.projected_s[run_dir] = job["projected_s"]
        result.serial_s += sum(j["projected_s"] for j in jobs if j.get("projected_s") is not None)
        for e in plan.get("equivalences", []):
            shown = [sorted(labels.get(row, {row})) for row in e["rows"]]
            result.equivalences.append({**e, "labels": [label for group in shown for label in group]})
    return result


def marked(text: pd.DataFrame, plans: SweepPlans) -> pd.DataFrame:
    """The table's cells with MARK after every variant the plan found to compute the same function as another."""
    flagged = {label for e in plans.equivalences for label in e["labels"]}
    return text.assign(Variant=[f"{v} {MARK}" if v in flagged else v for v in text.Variant])


def _stages(e: dict) -> str:
    stages = e["stages"]
    return f"stage {stages[0]}" if len(stages) == 1 else f"stages {', '.join(map(str, stages))}"


def _apart(e: dict) -> str:
    return (f"apart from data.img_size={e['apart_from']}" if e.get("apart_from")
            else f"not apart up to data.img_size={e['searched_to']}")


def same_function_note(plans: SweepPlans) -> str:
    """What MARK means, one line per finding; '' without one."""
    if not plans.equivalences:
        return ""
    lines = [f"{MARK} computes the same function as another row in a stage, given the same weights (the sweep's "
             f"plan.json, checked by computation as the sweep started):"]
    lines += [f"- {' = '.join(e['labels'])}: {_stages(e)} at data.img_size={e['img_size']} ({_apart(e)})"
              for e in plans.equivalences]
    return "\n".join(lines)


def ties_by_construction(plans: SweepPlans, table: pd.DataFrame) -> str:
    """For the agreement section: which rows whose Δs tie are equal by construction in some stages; '' if none."""
    delta = dict(zip(table.label, table.delta))
    parts = []
    for e in plans.equivalences:
        values = {round(delta[label], 6) for label in e["labels"] if label in delta and pd.notna(delta[label])}
        if len(values) == 1 and len(e["labels"]) > 1:
            parts.append(f"{' = '.join(e['labels'])} ({_stages(e)})")
    if not parts:
        return ""
    return ("Ties equal by construction in part: " + "; ".join(parts) + ". In those stages the rows are one "
            "network, so their tie says nothing about those stages; only the other stages can tell them apart.")


def _seconds(start: str, end: str) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return None


def plan_section(plans: SweepPlans, runs: pd.DataFrame) -> str:
    """Projected against taken, per completed run (the record's wall_s: training and evaluation) and in all;
    '' when no plan projected a time."""
    done = runs[runs.status.eq("completed") & runs.run_dir.map(lambda d: Path(d) in plans.projected_s)]
    if done.empty:
        return ""
    rows = ["| Run | Projected (s) | Took (s) | Took / projected |", "| --- | --- | --- | --- |"]
    for run in done.sort_values("run_dir").itertuples():
        projected = plans.projected_s[Path(run.run_dir)]
        rows.append(f"| {Path(run.run_dir).parent.name}/{Path(run.run_dir).name} | {projected:.0f} | "
                    f"{run.wall_s:.0f} | {run.wall_s / projected:.2f} |")
    projected, took = sum(plans.projected_s[Path(d)] for d in done.run_dir), done.wall_s.sum()
    span = _seconds(min(runs.started_at), max(runs.updated_at)) if len(done) == len(runs) else None
    span_text = (f" The sweep ran from its first run's start to its last run's end in {span:.0f} s (set-up and "
                 f"waiting included), against {plans.serial_s:.0f} s projected one after another."
                 if span is not None else "")
    return "\n".join(["## Plan beside what the sweep took", "",
                      f"{len(done)} completed run(s): {took:.0f} s of training and evaluation, {projected:.0f} s "
                      f"projected (took / projected = {took / projected:.2f}).{span_text} Projections come from a few "
                      "steps per model measured as the sweep started; a loaded machine makes them noisy.", "",
                      *rows])
