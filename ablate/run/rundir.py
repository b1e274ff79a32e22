"""Who holds a run directory, and what it holds: the lock, and the check that it holds this config's run.

The lock is a filelock ``SoftFileLease``: a marker file (``.lock``) created exclusively and refreshed by a
heartbeat thread, which works on local disks and on the shared file systems of SLURM clusters, where
``flock`` is unreliable. Its marker names the holder's pid and host. Stale locks: one whose holder's pid is
dead on this host is taken at once; one from another host is taken once its heartbeat has stopped for
``LEASE_S`` seconds (e.g. a requeued SLURM job whose first run was killed on another node).
"""
import logging
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import SoftFileLease, Timeout

from ablate.errors import RunDirError
from ablate.run.record import remove_stray_temp_files

log = logging.getLogger(__name__)
LOCK = ".lock"
LEASE_S = 60.0  # every process that may share a directory must agree on it


def _marker(lock_path: Path) -> dict[str, str]:
    """The fields of a lock's marker (pid=, host=, ...); empty when there is none."""
    try:
        return dict(line.split("=", 1) for line in lock_path.read_text().splitlines() if "=" in line)
    except OSError:
        return {}


@contextmanager
def locked(folder: Path, wait_s: float = 0.0, what: str = "run directory") -> Iterator[None]:
    """Hold ``folder``'s lock for the block; RunDirError when a live process holds it for longer than ``wait_s``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    holder = _marker(path)
    # A holder on another host cannot be probed: it counts as live until its lease has run out unrefreshed,
    # which the waiting side must see for itself.
    if holder and holder.get("host", "").split("?")[0] != socket.gethostname():
        wait_s = max(wait_s, 1.5 * LEASE_S)
    lock = SoftFileLease(path, lease_duration=LEASE_S)
    try:
        lock.acquire(timeout=wait_s)
    except Timeout:
        holder = _marker(path)
        raise RunDirError(f"{folder}: this {what} is in use by pid {holder.get('pid', '?')} on host "
                          f"{holder.get('host', '?')}") from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def claimed(run_dir: Path) -> Iterator[None]:
    """The run directory locked for this process, cleared of the temp files of writes killed half-way."""
    with locked(run_dir):
        for path in remove_stray_temp_files(run_dir):
            log.info("removed %s, left by a write that was killed half-way", path)
        yield


def check_same_run(stored: Mapping[str, Any] | None, current: Mapping[str, Any], where: Path) -> None:
    """RunDirError, naming the keys that differ, unless ``stored`` (a result config) is ``current``."""
    if stored == current:
        return
    if not stored:
        raise RunDirError(f"{where} was written by an older ablate, without the config it ran; to start fresh, "
                          f"move it aside or choose another directory (hydra.run.dir=... or the sweep's overrides)")
    diff = diff_configs(stored, current)
    shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
    raise RunDirError(f"{where} holds a run of another config ({shown}); it is left as it is: to start fresh, "
                      f"move it aside or choose another directory (hydra.run.dir=...)")


def diff_configs(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``key: old → new`` for every leaf that differs, dotted keys in sorted order."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            lines += diff_configs(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a} → {b}")
    return lines
