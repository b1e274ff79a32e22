"""A report folder that only ever replaces its own files.

A report is written into a staging folder inside ``out`` and then moved into place under ``out``'s lock,
so two sweeps ending at once never interleave their files. The manifest (``.ablate-report.json``) holds
the hash of every file the report wrote: a file in ``out`` that is not in it, or that changed since, is
someone else's, and the report refuses to replace it.
"""
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ablate.errors import ReportError
from ablate.run.rundir import locked

MANIFEST = ".ablate-report.json"
WAIT_S = 600.0  # another sweep's report takes seconds; wait for it rather than fail


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A folder to write the report into; on leaving the block its files replace those in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with locked(out, wait_s=WAIT_S, what="report folder"):
        staging = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
        try:
            yield staging
            _publish(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, out: Path) -> None:
    manifest_path = out / MANIFEST
    written = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    names = sorted(p.name for p in staging.iterdir())
    for name in names:  # every check before any file moves
        target = out / name
        if target.exists() and written.get(name) != _digest(target):
            why = "changed since the report wrote it" if name in written else "was not written by ablate's report"
            raise ReportError(f"refusing to overwrite {target}: it {why}; choose another --out or move it aside")
    for name in names:
        written[name] = _digest(staging / name)
        os.replace(staging / name, out / name)
    manifest_path.write_text(json.dumps(written, indent=1, sort_keys=True) + "\n")
