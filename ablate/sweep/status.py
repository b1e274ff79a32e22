"""``python -m ablate.status DIR``: every run of a sweep, how far it is, and when the sweep will end.

Reads files only and takes no lock, so it can watch a sweep while it runs, from any machine that shares the
directory (e.g. the login node of a SLURM cluster); a missing file is a run not started yet. Imports no torch.

What the files tell:
- a run that has started: its ``results.json`` (written atomically when it starts and after every epoch) gives
  its status, epochs done of planned, last top-1, img/s and the seconds per epoch so far, hence its ETA;
- a job that has not started: only the sweep's job list, from the ``multirun.yaml`` Hydra writes into the sweep
  directory when the sweep starts (the latest command's, when a sweep was re-run with other overrides); such
  jobs are ``pending``, named as the sweep names job directories, with their epochs and speed unknown;
- a run whose process died without a word (killed, node lost) still says ``running``: it is flagged ``stale?``
  once its record is older than three of its epochs plus ten minutes; its epochs left, like an ``interrupted``
  run's, count as work left.
The sweep's ETA counts each pending run (and each started one without a finished epoch) as the median run so
far (a completed run's time from its start to its end, set-up included), and divides the work left by the
number of runs going now (at least one).
"""
import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import OmegaConf

from ablate.record import RESULTS, RunRecord, read_record
from ablate.sweep.jobs import job_dirname, job_overrides

JOB_LIST = "multirun.yaml"
STALE_EPOCHS, STALE_S = 3, 600
# Statuses whose epochs not yet done are still to be run (an interrupted run resumes when the sweep is re-run).
UNFINISHED = ("pending", "running", "stale?", "interrupted")


@dataclass
class Job:
    """One run of the sweep: its record once it has written one."""

    name: str
    record: RunRecord | None
    listed: bool = False  # in the sweep's job list
    age_s: float = 0.0  # since the record was last written
    elapsed_s: float | None = None  # from the record's start to its last write

    @property
    def epoch_s(self) -> float | None:
        r = self.record
        return r.wall_s / r.epochs_done if r and r.wall_s and r.epochs_done else None

    @property
    def status(self) -> str:
        if self.record is None:
            return "pending"
        if self.record.status == "running" and self.epoch_s and self.age_s > STALE_EPOCHS * self.epoch_s + STALE_S:
            return "stale?"
        return self.record.status

    def total_s(self) -> float | None:
        """How long the whole run takes: as long as it took when completed (set-up included), else its epochs at
        its seconds per epoch so far."""
        r = self.record
        if r and r.status == "completed" and self.elapsed_s:
            return self.elapsed_s
        return self.epoch_s * r.epochs if self.epoch_s and r.epochs else None

    def left_s(self) -> float | None:
        """Seconds of work left, None where unknown; a stale run's epochs count as left, to be run again."""
        status = self.status
        if status not in UNFINISHED:
            return 0.0
        if self.total_s() is None:
            return None
        since = self.age_s if status == "running" else 0.0
        return max(0.0, (self.record.epochs - self.record.epochs_done) * self.epoch_s - since)


def _seconds(start: str | datetime, end: str | datetime) -> float | None:
    """Seconds between two times (ISO strings from a record, or datetimes); None when one is unreadable."""
    try:
        start, end = (t if isinstance(t, datetime) else datetime.fromisoformat(t) for t in (start, end))
        return max(0.0, (end - start).total_seconds())
    except (TypeError, ValueError):
        return None


def _job_list(sweep_dir: Path) -> list[list[str]]:
    """The sweep's jobs (override lists) from its multirun.yaml; none when it is missing or unreadable (said once)."""
    try:
        return job_overrides(OmegaConf.load(sweep_dir / JOB_LIST))
    except FileNotFoundError:  # a sweep being set up
        return []
    except Exception as e:  # garbled, or of another Hydra version: the records still show
        first = (str(e).strip().splitlines() or [""])[0][:160]
        print(f"warning: {sweep_dir / JOB_LIST} is unreadable ({type(e).__name__}: {first}); the jobs that have "
              "not started are not shown", file=sys.stderr)
        return []


def collect(root: Path, now: datetime | None = None) -> list[Job]:
    """Every job under ``root``: the listed jobs of each sweep in order, then runs no job list names."""
    now = now or datetime.now(timezone.utc)
    found = {p.parent: read_record(p.parent) for p in sorted(root.rglob(RESULTS))}
    by_overrides = {tuple(sorted(r.overrides)): d for d, r in found.items() if r is not None}
    jobs, listed = [], set()
    for job_list in sorted(root.rglob(JOB_LIST)):
        for overrides in _job_list(job_list.parent):
            run_dir = by_overrides.get(tuple(sorted(overrides)), job_list.parent / job_dirname(overrides))
            listed.add(run_dir)
            jobs.append(_job(root, run_dir, found.get(run_dir), now, listed=True))
    jobs += [_job(root, d, r, now) for d, r in found.items() if d not in listed]
    return jobs


def _job(root: Path, run_dir: Path, record: RunRecord | None, now: datetime, listed: bool = False) -> Job:
    name = str(run_dir.relative_to(root)) if run_dir != root else run_dir.name
    if record is None:
        return Job(name, None, listed)
    return Job(name, record, listed, _seconds(record.updated_at, now) or 0.0,
               _seconds(record.started_at, record.updated_at))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {s:02d} s" if minutes else f"{s} s"


def summary(jobs: Sequence[Job]) -> str:
    """Counts by status, epochs of the started runs, and the sweep's ETA."""
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    started = [j.record for j in jobs if j.record]
    epochs = f"{sum(r.epochs_done for r in started)}/{sum(r.epochs or 0 for r in started)} epochs of started runs"
    going = max(1, counts.get("running", 0))
    known = [t for t in (j.total_s() for j in jobs) if t]
    typical = statistics.median(known) if known else None
    left = [j.left_s() for j in jobs]
    unknown = sum(s is None for s in left)
    eta = None if unknown and typical is None else (sum(s for s in left if s) + unknown * (typical or 0)) / going
    by_status = ", ".join(f"{k} {s}" for s, k in counts.items())
    if not any(s is None or s > 0 for s in left):
        return f"{len(jobs)} runs: {by_status}; {epochs}; nothing left to run"
    return f"{len(jobs)} runs: {by_status}; {epochs}; ETA {duration(eta)} at {going} run(s) at a time"


def table(jobs: Sequence[Job]) -> str:
    rows = [("run", "status", "epoch", "top-1", "img/s", "ETA")]
    for job in jobs:
        r = job.record
        epochs = f"{r.epochs_done}/{r.epochs if r.epochs else '?'}" if r else "—"
        top1 = f"{r.top1:.2f}" if r and r.top1 is not None else "—"
        speed = f"{r.img_per_s:.0f}" if r and r.img_per_s else "—"
        eta = duration(job.left_s()) if job.status in UNFINISHED else "—"
        rows.append((job.name, job.status, epochs, top1, speed, eta))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    align = ["<", "<", ">", ">", ">", ">"]
    return "\n".join("  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, align, widths)).rstrip() for row in rows)


def job_line(sweep_dir: Path, job_num: int, run_dir: Path, now: datetime | None = None) -> str:
    """The line a sweep's job logs as it starts: which job of how many, and the sweep so far."""
    jobs = collect(Path(sweep_dir), now)
    sweep_dir, run_dir = Path(sweep_dir).resolve(), Path(run_dir).resolve()
    name = run_dir.relative_to(sweep_dir) if run_dir.is_relative_to(sweep_dir) else run_dir
    return f"job {job_num + 1}/{sum(j.listed for j in jobs) or '?'}: {name}; sweep so far: {summary(jobs)}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ablate.status", description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path, metavar="DIR", help="a sweep directory (or any directory of runs)")
    root = parser.parse_args(argv).dir
    if not root.is_dir():
        print(f"error: {root}: no such directory", file=sys.stderr)
        return 1
    jobs = collect(root)
    if not jobs:
        job_list = "no readable" if any(root.rglob(JOB_LIST)) else "no"
        print(f"error: {root}: no {RESULTS} and {job_list} {JOB_LIST} (not a run or sweep directory)",
              file=sys.stderr)
        return 1
    print(f"{root}\n{table(jobs)}\n{summary(jobs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
