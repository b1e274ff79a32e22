"""A run's record, and the files a run leaves: results.json, history.csv, val_correct.npz, branches.csv, error.txt,
.hydra/.

``RunRecord`` owns the record's fields: training fills one, the report, the wandb tracker and the
tests read its attributes, so a renamed field fails where it is read instead of turning into an
empty column. Writes are atomic (temp file + rename), so an interrupted run never leaves a half-written
file. Imports no torch: the report reads records without it.
"""
import contextlib
import csv
import hashlib
import json
import os
import platform
import statistics
import subprocess
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from functools import partial
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_type_hints

import numpy as np
import yaml

from ablate.files import atomic_write
from ablate.specs import RunSpec

RESULTS = "results.json"
HISTORY = "history.csv"
ERROR = "error.txt"
RESERVE = ".reserve"  # space set aside while a run trains, freed to record a failure on a full disk
RESERVE_BYTES = 256 * 1024  # error.txt and results.json, a few KB each, several times over
RUN_CONFIG = ".hydra"
VAL_CORRECT = "val_correct.npz"
BRANCHES = "branches.csv"  # per epoch and stage, what each block branch learned (ablate.run.branches)
STATUSES = ("running", "completed", "diverged", "failed", "interrupted")
PACKAGE = Path(__file__).resolve().parents[1]  # the code that runs: git describes it where it tracks it
# ablate's own version too: where the code is no checkout (an installed copy), it says which code ran.
PACKAGES = ("ablate", "torch", "timm", "hydra-core", "omegaconf")
PROGRESS = {"progress": True}  # a field's metadata: what a run has achieved so far; a restart starts from it


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fingerprint(config: Mapping[str, Any]) -> str:
    """A short hash of a result config (``RunSpec.result_config``), the same whatever the order of its keys."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunRecord:
    """``results.json``: what ran, how it went, and where (accuracies in percent, 0-100)."""

    # What ran: the design's names (ablate.config.design), its overrides, and the settings beside them.
    group: str
    variant: str
    row: str | None = None  # Table 5 row id (ablate/reference/table5.csv), None for a Custom design
    is_baseline: bool = False
    overrides: list[str] = field(default_factory=list)
    free_overrides: list[str] = field(default_factory=list)  # neither design, seed nor sweep row
    sweep: str | None = None
    seed: int = 0
    model: str | None = None
    data: str | None = None
    recipe: str | None = None
    img_size: int | None = None
    epochs: int | None = None  # planned, cool-down included
    global_batch: int | None = None  # images per optimiser step: batch_size × world_size × accum_steps
    batch_size: int | None = None  # per process and micro-batch
    accum_steps: int = 1  # micro-batches per optimiser step
    fingerprint: str | None = None  # of ``config``; a directory holds runs of one fingerprint only
    config: dict[str, Any] = field(default_factory=dict)  # RunSpec.result_config
    # How it went.
    status: str = "running"
    epochs_done: int = field(default=0, metadata=PROGRESS)
    top1: float | None = field(default=None, metadata=PROGRESS)
    top5: float | None = field(default=None, metadata=PROGRESS)
    best_top1: float | None = field(default=None, metadata=PROGRESS)
    best_epoch: int | None = field(default=None, metadata=PROGRESS)
    val_loss: float | None = field(default=None, metadata=PROGRESS)
    train_loss: float | None = field(default=None, metadata=PROGRESS)
    ema_top1: float | None = field(default=None, metadata=PROGRESS)  # the EMA model's (train.ema_decay), None without
    ema_top5: float | None = field(default=None, metadata=PROGRESS)
    ema_best_top1: float | None = field(default=None, metadata=PROGRESS)
    error: str | None = None
    # Cost.
    params_m: float | None = field(default=None, metadata=PROGRESS)
    frozen_params_m: float | None = field(default=None, metadata=PROGRESS)
    macs_g: float | None = field(default=None, metadata=PROGRESS)  # one image's forward at img_size
    img_per_s: float | None = field(default=None, metadata=PROGRESS)  # training images per second, median epoch
    # CUDA peak allocated, or the process's peak RSS on the CPU.
    peak_mem_mb: float | None = field(default=None, metadata=PROGRESS)
    wall_s: float | None = field(default=None, metadata=PROGRESS)
    # Provenance.
    device: str | None = None
    world_size: int = 1
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None  # of the checkout the code ran from; None for an installed copy
    git_dirty: bool | None = None  # the package's files differed from git_commit (edited, added or deleted)
    data_info: dict[str, Any] = field(default_factory=dict, metadata=PROGRESS)
    started_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)

    @classmethod
    def start(cls, spec: RunSpec, *, sweep: str | None, device: str, world_size: int) -> "RunRecord":
        """A new ``running`` record of ``spec``, trained on ``device`` by ``world_size`` processes."""
        t = spec.train
        config = spec.result_config(world_size)
        commit, dirty = git_state()
        return cls(**asdict(spec.name), overrides=list(spec.overrides), free_overrides=list(spec.free_overrides),
                   sweep=sweep, seed=spec.seed, model=spec.model.name, data=spec.data.name, recipe=t.name,
                   img_size=spec.data.img_size, epochs=t.epochs + t.cooldown_epochs,
                   global_batch=t.global_batch_for(world_size), batch_size=t.batch_size,
                   accum_steps=t.accumulation_steps(world_size), fingerprint=fingerprint(config), config=config,
                   device=device, world_size=world_size, versions=versions(), git_commit=commit,
                   git_dirty=dirty)

    def resume_from(self, previous: "RunRecord") -> None:
        """Carry ``previous``'s progress over, so that a restart that fails loses none of it."""
        for name in PROGRESS_FIELDS:
            setattr(self, name, getattr(previous, name))
        self.started_at = previous.started_at

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunRecord":
        """A record from JSON; keys of other versions are ignored, missing ones take their defaults."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def update_from_history(self, history: Sequence[Mapping[str, Any]], peak_mem_mb: float) -> None:
        """Metrics from the per-epoch history: the last epoch's, the best top-1, the median speed."""
        last = history[-1]
        best = max(history, key=lambda r: r["top1"])
        self.epochs_done, self.top1, self.top5 = last["epoch"], last["top1"], last["top5"]
        self.val_loss, self.train_loss, self.wall_s = last["val_loss"], last["train_loss"], last["wall_s"]
        self.best_top1, self.best_epoch = best["top1"], best["epoch"]
        if "ema_top1" in last:
            self.ema_top1, self.ema_top5 = last["ema_top1"], last["ema_top5"]
            self.ema_best_top1 = max(r["ema_top1"] for r in history)
        # The median, so that the first epoch's warm-up (cuDNN autotuning, compilation) does not count.
        self.img_per_s = statistics.median(r["img_per_s"] for r in history)
        self.peak_mem_mb = peak_mem_mb
        self.updated_at = now()


PROGRESS_FIELDS = tuple(f.name for f in fields(RunRecord) if f.metadata.get("progress"))
# The record's field names as attributes (FIELD.top1 == "top1"), for code that names a field as a column or key:
# a renamed field fails there at import instead of leaving an empty column.
FIELD = SimpleNamespace(**{f.name: f.name for f in fields(RunRecord)})


def fields_of_type(kind: type) -> tuple[str, ...]:
    """The names of RunRecord's fields of type ``kind`` or ``kind | None``, in order."""
    hints = get_type_hints(RunRecord)
    return tuple(f.name for f in fields(RunRecord) if hints[f.name] in (kind, kind | None))


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide a run's numbers, read without importing them."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def git_state(package: Path = PACKAGE) -> tuple[str | None, bool | None]:
    """The commit of the checkout that tracks ``package``, and whether the package's files differ from it.

    (None, None) where git does not track the package's ``__init__.py``: an installed copy, also one that lies inside
    another repository (a venv in a project's tree), whose commit would describe other code. ``versions`` then
    holds the installed version.
    """
    if _git(package, "ls-files", "--error-unmatch", "--", "__init__.py") is None:
        return None, None
    commit = _git(package, "rev-parse", "HEAD")
    changes = _git(package, "status", "--porcelain", "--", ".")  # "." is the package's folder (git -C)
    if commit is None or changes is None:
        return None, None
    return commit, bool(changes)


def _git(folder: Path, *args: str) -> str | None:
    """What ``git args`` run in ``folder`` prints, or None when it fails or there is no git."""
    try:
        # No optional locks: the jobs of a sweep start together, and git status would otherwise take the index's
        # lock to refresh it, failing each other.
        out = subprocess.run(["git", "--no-optional-locks", "-C", str(folder), *args], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def reserve_space(run_dir: Path) -> None:
    """Set RESERVE_BYTES aside in ``run_dir``, so that a run that fills the disk can still record why it failed.

    Random bytes, which no file system stores sparse or compressed.
    """
    atomic_write(Path(run_dir) / RESERVE, lambda tmp: Path(tmp).write_bytes(os.urandom(RESERVE_BYTES)))


def release_space(run_dir: Path) -> None:
    """Free what ``reserve_space`` set aside: before the last writes of a run, whatever ended it."""
    with contextlib.suppress(OSError):  # a folder gone read-only: the writes that follow say so
        (Path(run_dir) / RESERVE).unlink(missing_ok=True)


def write_run_config(run_dir: Path, config: Mapping[str, Any], overrides: Sequence[str]) -> None:
    """``.hydra/config.yaml`` and ``.hydra/overrides.yaml``, as Hydra writes them, but only for a run that trains.

    Hydra itself is told not to (``hydra.output_subdir: null``): it would rewrite them at every launch, also
    for a run that is then skipped or refused, and contradict the record.
    """
    folder = Path(run_dir) / RUN_CONFIG
    for name, data in (("config.yaml", dict(config)), ("overrides.yaml", list(overrides))):
        atomic_write(folder / name, partial(_dump_yaml, data))


def _dump_yaml(data: Any, tmp: str) -> None:
    with open(tmp, "w", encoding="utf-8") as f:  # as OmegaConf.save writes it: block style, keys in order
        yaml.safe_dump(data, f, default_flow_style=False, allow_unicode=True, sort_keys=False)


def write_error(run_dir: Path, summary: str, details: str) -> None:
    """``error.txt``: the one-line reason first, then the traceback."""
    def dump(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{summary}\n\n{details}")
    atomic_write(Path(run_dir) / ERROR, dump)


def write_record(run_dir: Path, record: RunRecord) -> None:
    def dump(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(asdict(record), f, indent=2, default=str)
            f.write("\n")
    atomic_write(Path(run_dir) / RESULTS, dump)


def read_record(run_dir: Path) -> RunRecord | None:
    """The run's record, or None when there is none (or it is unreadable, i.e. never finished writing)."""
    try:
        return RunRecord.from_dict(json.loads((Path(run_dir) / RESULTS).read_text(encoding="utf-8")))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def write_history(run_dir: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    write_rows(Path(run_dir) / HISTORY, rows)


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """``rows`` as a CSV with the first row's keys as its header (empty for no rows), written atomically."""
    def dump(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            if rows:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    atomic_write(path, dump)


def write_val_correct(run_dir: Path, correct: np.ndarray, ema_correct: np.ndarray | None = None) -> None:
    """The last evaluated epoch's top-1 correctness of every val image, in data set order, one bit each; the EMA
    model's beside it when the run keeps one."""
    bits = {"bits": correct} if ema_correct is None else {"bits": correct, "ema_bits": ema_correct}

    def dump(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, numpy would append .npz to it
            np.savez(f, n=len(correct), **{k: np.packbits(v.astype(bool)) for k, v in bits.items()})
    atomic_write(Path(run_dir) / VAL_CORRECT, dump)


def read_val_correct(run_dir: Path, metric: str = "raw") -> np.ndarray | None:
    """The bools ``write_val_correct`` stored for the ``raw`` or the ``ema`` model, or None when the run has none
    (one that never finished an epoch, or kept no EMA) or it is unreadable."""
    try:
        with np.load(Path(run_dir) / VAL_CORRECT) as f:
            return np.unpackbits(f["ema_bits" if metric == "ema" else "bits"], count=int(f["n"])).astype(bool)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
