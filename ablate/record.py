"""A run's files on disk: results.json, history.csv, checkpoint.pt, error.txt.

Writes are atomic (temp file + rename), so an interrupted run never leaves a half-written
record, and checkpoints load with ``weights_only=True``, so loading never runs pickled code.
"""
import csv
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS = "results.json"
HISTORY = "history.csv"
CHECKPOINT = "checkpoint.pt"
ERROR = "error.txt"
STATUSES = ("running", "completed", "diverged", "failed")


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read; it is left in place for the user to inspect."""


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    def dump(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")
    _atomic(Path(path), dump)


def read_results(run_dir: Path) -> dict[str, Any] | None:
    """The run's record, or None when there is none (or it is unreadable, i.e. never finished writing)."""
    try:
        return json.loads((Path(run_dir) / RESULTS).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_history(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    def dump(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            if rows:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    _atomic(Path(path), dump)


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    _atomic(Path(path), lambda tmp: torch.save(dict(state), tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            f"move it aside to start this run afresh, or set train.resume=false") from e
