"""A report folder that is published all at once, and only ever replaces a report.

A report is written into a staging folder beside ``out`` (``.<out>.staging-*``) and swapped in with one atomic
rename, under a lock beside it (``.<out>.lock``): whenever a report is killed, ``out`` holds wholly the old report
or wholly the new one, and two sweeps ending at once never interleave their files. Staging folders that a killed
report left are removed by the next one.

The manifest (``.ablate-report.json``) holds the hash of every file a report wrote. A file in ``out`` that is not
in it, or that changed since, is someone else's: it is carried into the new report, unless the new report has a
file of that name, which refuses the report.
"""
import ctypes
import errno
import glob
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ablate.errors import ReportError, WriteError
from ablate.files import fresh_path, locked

MANIFEST = ".ablate-report.json"
WAIT_S = 600.0  # another sweep's report takes seconds; wait for it rather than fail


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A folder to write the report into; on leaving the block it replaces ``out`` as a whole."""
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out} is a file, not a folder; choose another --out")
    try:
        with locked(out, wait_s=WAIT_S, what="report folder", lock_path=_beside(out, "lock")):
            _clean_up(out)
            staging = fresh_path(out.parent, f".{out.name}.staging-", "", os.mkdir)
            try:
                yield staging
                _publish(staging, out)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (OSError, WriteError) as e:
        raise ReportError(f"cannot write the report to {out}: {e}") from e


def _beside(out: Path, kind: str) -> Path:
    return out.parent / f".{out.name}.{kind}"


def _clean_up(out: Path) -> None:
    """Put back a report that a kill between the two renames of ``_swap`` left aside; remove stale staging."""
    name = glob.escape(out.name)
    aside = sorted(out.parent.glob(f".{name}.old-*"), key=lambda p: p.stat().st_mtime)
    if aside and not out.exists():
        os.rename(aside.pop(), out)
    for stale in [*aside, *out.parent.glob(f".{name}.staging-*")]:
        shutil.rmtree(stale, ignore_errors=True)


def _publish(staging: Path, out: Path) -> None:
    written = {p.name: _digest(p) for p in staging.iterdir()}
    if out.exists():
        _carry_over(staging, out)
    (staging / MANIFEST).write_text(json.dumps(written, indent=1, sort_keys=True) + "\n")
    if out.exists():
        _swap(staging, out)
    else:
        os.rename(staging, out)


def _carry_over(staging: Path, out: Path) -> None:
    """Copy the files in ``out`` that no report wrote into ``staging``; ReportError where the report would
    replace one."""
    manifest = out / MANIFEST
    written = json.loads(manifest.read_text()) if manifest.is_file() else {}
    new = {p.name for p in staging.iterdir()}
    for path in sorted(out.iterdir()):
        name = path.name
        if name == MANIFEST or (path.is_file() and written.get(name) == _digest(path)):
            continue  # the old report's: the new one replaces it, or leaves it out
        if name in new:
            why = "changed since the report wrote it" if name in written else "was not written by ablate's report"
            raise ReportError(f"refusing to overwrite {path}: it {why}; choose another --out or move it aside")
        if path.is_dir():
            shutil.copytree(path, staging / name, symlinks=True)
        else:
            shutil.copy2(path, staging / name, follow_symlinks=False)


def _swap(staging: Path, out: Path) -> None:
    """Put ``staging`` in ``out``'s place in one step, where the file system can (Linux's RENAME_EXCHANGE); else in
    two renames, between which a kill leaves the old report aside for ``_clean_up`` to put back."""
    if _exchange(staging, out):
        return  # staging now holds the old report, which staged() removes
    aside = fresh_path(out.parent, f".{out.name}.old-", "", os.mkdir)
    os.rename(out, aside)  # onto the empty folder just made, which a rename may replace
    os.rename(staging, out)
    shutil.rmtree(aside, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with renameat2(RENAME_EXCHANGE); False where the platform cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2  # linux/fcntl.h, linux/fs.h
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # e.g. NFS, or an old kernel
        return False
    raise OSError(err, os.strerror(err), str(b))
