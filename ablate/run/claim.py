"""Who holds a run directory, and what it holds: this process's claim, and the check that it holds this config's
run."""
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ablate.errors import RunDirError
from ablate.files import locked, remove_stray_temp_files

log = logging.getLogger(__name__)


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
    diff = diff_configs(stored or {}, current)
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
