"""File and lock helpers for run directories and reports: atomic writes, fresh names, a folder's lock, and the
user's cache folder.

Writes are atomic (temp file + rename), so an interrupted run never leaves a half-written file.

The lock is a filelock ``SoftFileLease``: a marker file (``.lock``) created exclusively and refreshed by a
heartbeat thread, which works on local disks and on the shared file systems of SLURM clusters, where
``flock`` is unreliable. Its marker names the holder's pid and host. Stale locks: one whose holder's pid is
dead on this host is taken at once; one from another host is taken once its heartbeat has stopped for
``LEASE_S`` seconds (e.g. a requeued SLURM job whose first run was killed on another node), at once when that
was long ago. A wait says whom it waits for and for how long. Only filelock's public API is used.
"""
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from filelock import SoftFileLease, Timeout

from ablate.errors import RunDirError, WriteError

log = logging.getLogger(__name__)
LOCK = ".lock"
LEASE_S = 60.0  # every process that may share a directory must agree on it
TEMP_PATTERN = ".*.tmp"  # atomic_write's temp files
T = TypeVar("T")


def _marker(lock_path: Path) -> dict[str, str]:
    """The fields of a lock's marker (pid=, host=, ...); empty when there is none."""
    try:
        return dict(line.split("=", 1) for line in lock_path.read_text().splitlines() if "=" in line)
    except OSError:
        return {}


def _remove_if_left(path: Path, fs_offset_s: float) -> None:
    """Remove the marker at ``path`` when its last heartbeat is a whole lease old, before filelock looks at it.

    filelock counts a marker's age from when this process first saw it, so a marker left minutes ago would be
    waited on for a whole lease; its mtime, which the heartbeat touches, says how long it has really been left.
    ``fs_offset_s`` turns this host's clock into the file system's, so the hosts' clocks need not agree.
    """
    try:
        seen = path.stat()
    except OSError:
        return
    if _age(seen.st_mtime, fs_offset_s) >= LEASE_S:
        _remove_marker(path, seen)


def _remove_marker(path: Path, seen: os.stat_result) -> None:
    """Remove the marker ``seen`` from ``path``, and only that one.

    Moved aside by a rename, which is atomic also on NFS, then checked: a marker that a holder made or refreshed
    since ``seen`` goes back (a holder's heartbeat bears its marker's absence for that moment).
    """
    aside = path.with_name(f"{path.name}.left.{secrets.token_hex(8)}")
    try:
        os.rename(path, aside)
    except OSError:  # gone already: another contender moved it, or its holder released it
        return
    moved = os.stat(aside)
    if (moved.st_ino, moved.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
        # FileExistsError: a third process made a marker in that moment; filelock's heartbeat tells the holder moved
        # aside that it lost the lock.
        with contextlib.suppress(OSError):
            os.link(aside, path)
    with contextlib.suppress(OSError):
        os.unlink(aside)


def _holder_alive_here(holder: dict[str, str]) -> bool | None:
    """Whether the holder runs on this host (True / False for its pid), or None for another host's."""
    if holder.get("host", "").split("?")[0] != socket.gethostname():
        return None
    try:
        os.kill(int(holder.get("pid", "")), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        pass
    return True


@contextmanager
def locked(folder: Path, wait_s: float = 0.0, what: str = "run directory",
           lock_path: Path | None = None) -> Iterator[None]:
    """Hold ``folder``'s lock (``lock_path``, by default ``folder/.lock``) for the block.

    RunDirError when a live process holds it for longer than ``wait_s``, WriteError when the lock cannot be written.
    """
    path = lock_path or folder / LOCK
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = SoftFileLease(path, lease_duration=LEASE_S)
        fs_offset_s = probe_folder(path.parent)
    except OSError as e:
        raise _cannot_lock(folder, e) from e
    holder, alive = _marker(path), None
    if holder:
        alive = _holder_alive_here(holder)
        # A holder on another host cannot be probed: it counts as live until its lease has run out unrefreshed.
        if alive is None:
            wait_s = max(wait_s, 1.5 * LEASE_S)
    if holder and alive is not False and wait_s > 0:
        heartbeat = _heartbeat_age(path, fs_offset_s)
        if heartbeat is not None and heartbeat < LEASE_S:
            log.warning("%s: this %s is in use by pid %s on host %s (last heartbeat %.0f s ago); waiting up to %.0f s "
                        "for it (a lock whose heartbeat stops for %.0f s is taken)", folder, what,
                        holder.get("pid", "?"), holder.get("host", "?"), heartbeat, wait_s, LEASE_S)
    # In slices of a second, each after a look at the marker's heartbeat: a marker left by a killed holder (even one
    # killed while writing it, which names no pid) is taken once its heartbeat is a lease old, whatever filelock
    # makes of it.
    deadline = time.monotonic() + wait_s
    while True:
        _remove_if_left(path, fs_offset_s)
        try:
            lock.acquire(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            break
        except Timeout:
            if time.monotonic() >= deadline:
                holder = _marker(path)
                raise RunDirError(f"{folder}: this {what} is in use by pid {holder.get('pid', '?')} on host "
                                  f"{holder.get('host', '?')}") from None
        except OSError as e:
            raise _cannot_lock(folder, e) from e
    try:
        yield
    finally:
        lock.release()


def _cannot_lock(folder: Path, e: OSError) -> WriteError:
    return WriteError(e.errno, f"cannot lock {folder}: {(e.strerror or str(e)).lower()}")


def _age(mtime: float, fs_offset_s: float) -> float:
    """Seconds since ``mtime``, a time of the file system's clock."""
    return time.time() + fs_offset_s - mtime


def _heartbeat_age(path: Path, fs_offset_s: float) -> float | None:
    try:
        return _age(path.stat().st_mtime, fs_offset_s)
    except OSError:
        return None


def fresh_path(parent: Path, prefix: str, suffix: str, create: Callable[[Path], None]) -> Path:
    """``parent/<prefix><random><suffix>``, made by ``create``, which must fail with FileExistsError on a taken name.

    Unlike tempfile's mkstemp and mkdtemp, which make files 600 and folders 700, what ``create`` makes follows the
    user's umask: on a shared cluster a labmate can read the runs and reports.
    """
    while True:
        path = Path(parent) / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            create(path)
            return path
        except FileExistsError:
            continue


def _create_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temp file beside ``path`` (TEMP_PATTERN), then rename it over ``path``.

    An OSError (a full disk, a read-only folder) becomes a WriteError naming ``path`` in one line.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = str(fresh_path(path.parent, f".{path.name}.", ".tmp", _create_file))
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
        raise WriteError(e.errno, f"{reason} while writing {path}") from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def probe_folder(folder: Path) -> float:
    """Touch ``folder``, which needs the right to write in it; return the file system's clock minus this host's.

    OSError when ``folder`` cannot be written (permissions, a read-only mount). A touch, not a probe file, which a
    kill could leave behind.
    """
    os.utime(folder)
    return os.stat(folder).st_mtime - time.time()


def ensure_writable(folder: Path) -> None:
    """WriteError, in one line, unless ``folder`` (or, where it does not exist yet, the folder it would be made in)
    takes new files: tried, because permissions alone say nothing of a read-only mount."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        probe_folder(existing)
    except OSError as e:
        raise WriteError(e.errno, f"cannot write to {existing}: {(e.strerror or str(e)).lower()}") from e


def remove_stray_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files that an atomic write killed half-way left in ``folder``; return them."""
    stray = sorted(Path(folder).glob(TEMP_PATTERN))
    for path in stray:
        path.unlink(missing_ok=True)
    return stray


def cache_dir() -> Path:
    """ablate's folder in the user's cache: ``$XDG_CACHE_HOME/ablate``, else ``~/.cache/ablate``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ablate"


def cached(name: str, make: Callable[[], T], read: Callable[[Path], T], write: Callable[[T, Path], None]) -> T:
    """``read(cache_dir() / name)``, or else ``make()``, kept there by ``write(value, path)``: for values that take
    seconds to make and that every start needs.

    ``name`` must change whenever what ``make`` returns would: the file is never checked against its inputs. A file
    that cannot be read back (garbled, or half-written by a version that wrote it otherwise) is made again; a cache
    folder that cannot be written (a read-only home) leaves every start to make the value, as if there were no cache.
    """
    path = cache_dir() / name
    try:
        return read(path)
    except Exception:  # whatever is wrong with a cache file, the answer is to make it again
        pass
    value = make()
    try:
        atomic_write(path, lambda tmp: write(value, Path(tmp)))
    except WriteError:
        pass
    return value
