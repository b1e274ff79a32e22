"""A pixel store that checks itself: each file's size and a BLAKE2b sum per chunk, kept in ``store.json``.

Opening a store compares its files' sizes with the manifest (no reading); ``data.verify=true``, and ``prepare`` over
an existing store, read it all and compare every chunk's sum, so damage is named by file and byte range, and
``prepare`` rewrites only the images in a damaged chunk. A store that cannot be used says why in one line, and the
command that rebuilds it. Imports no torch: ``folder.is_store`` asks here.
"""
import hashlib
import json
import os
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

import numpy as np

from ablate.errors import ConfigError

MANIFEST = "store.json"  # written last: a store without it is unfinished
PROGRESS = ".settings.json"  # an unfinished store's settings (and source): a rerun must match them to resume
FORMAT = "ablate-pixels-2"  # 2: sizes and per-chunk sums; a store of format 1 is rebuilt by prepare
FILES = ("train.u8", "val.u8", "train_meta.npy", "val_meta.npy", "train_labels.npy", "val_labels.npy")
CHUNK_BYTES = 2**26  # 64 MiB a sum: damage is located to a few hundred images; hashing runs at disk speed
READ_BYTES = 2**24


def chunk_sums(path: Path, chunk: int, size: int | None = None) -> list[str]:
    """BLAKE2b (8 bytes) of each ``chunk`` bytes of ``path``'s first ``size`` bytes (all by default), read by a few
    threads at once: hashlib releases the GIL on large buffers."""
    size = path.stat().st_size if size is None else min(size, path.stat().st_size)

    def one(start: int) -> str:
        digest = hashlib.blake2b(digest_size=8)
        with open(path, "rb") as f:
            f.seek(start)
            left = min(chunk, size - start)
            while left > 0 and (block := f.read(min(left, READ_BYTES))):
                digest.update(block)
                left -= len(block)
        return digest.hexdigest()
    with ThreadPool(min(8, os.cpu_count() or 1)) as pool:
        return pool.map(one, range(0, size, chunk))


def describe(root: Path, chunk: int | None = None) -> dict[str, Any]:
    """The manifest's ``chunk_bytes``, ``files`` (each file's size and chunk sums) and ``checksum`` (one sum of
    them all, the store's identity in a run record)."""
    chunk = chunk or CHUNK_BYTES
    files = {name: {"bytes": (root / name).stat().st_size, "blake2b": chunk_sums(root / name, chunk)}
             for name in FILES}
    checksum = hashlib.blake2b(json.dumps(files, sort_keys=True).encode(), digest_size=16).hexdigest()
    return {"chunk_bytes": chunk, "files": files, "checksum": checksum}


def rebuild_command(root: Path, source: str | None) -> str:
    return f"python -m ablate.data.prepare --format pixels --src {source or 'SRC'} --out {root}"


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when it is missing, garbled or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_manifest(root: Path, where: str) -> dict[str, Any]:
    """``store.json``, checked to be this version's; ConfigError in one line otherwise, with how to rebuild."""
    manifest = read_json(root / MANIFEST)
    if manifest is None:
        raise ConfigError(f"{where}: {root / MANIFEST} is unreadable (garbled or cut short); rebuild the store: "
                          f"{rebuild_command(root, None)} (it keeps the images it can check)")
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise ConfigError(f"{where}: {root / MANIFEST} is of store format {manifest.get('format')!r}, not {FORMAT} "
                          f"(an older ablate's, without chunk sums); rebuild it: "
                          f"{rebuild_command(root, manifest.get('source'))}")
    return manifest


def read_finished(root: Path, where: str) -> dict[str, Any]:
    """The manifest of a finished store (``read_manifest``); an unfinished one is refused, saying how far its
    prepare got and how to finish it."""
    if (root / MANIFEST).exists():
        return read_manifest(root, where)
    done, total = 0, 0
    for split in ("train", "val"):
        try:
            meta = np.load(root / f"{split}_meta.npy")
            done, total = done + int((meta[:, 0] != 0).sum()), total + len(meta)
        except (OSError, ValueError, EOFError, IndexError):
            continue
    source = (read_json(root / PROGRESS) or {}).get("source")
    raise ConfigError(f"{where}: an unfinished pixel store ({done:,} of {total:,} images written): its prepare stopped "
                      f"early, interrupted or at unreadable images it listed; finish it with "
                      f"{rebuild_command(root, source)}, which resumes (replace unreadable images first)")


def is_store(root: Path) -> bool:
    """A pixel store, finished or not, rather than a tree of images."""
    return (root / MANIFEST).is_file() or (root / PROGRESS).is_file()


def damage(root: Path, manifest: dict[str, Any], full: bool) -> dict[str, tuple[str, list[int]]]:
    """Each damaged file: what is wrong with it, and its damaged chunks (all, for a missing file, or one of another
    size when not ``full``). ``full`` reads every byte and compares each chunk's sum."""
    chunk, found = manifest["chunk_bytes"], {}
    for name, want in manifest["files"].items():
        path, chunks = root / name, len(want["blake2b"])
        if not path.is_file():
            found[name] = ("missing", list(range(chunks)))
            continue
        size = path.stat().st_size
        wrong_size = f"{size:,} bytes, not {want['bytes']:,}" if size != want["bytes"] else ""
        if not full:
            if wrong_size:
                found[name] = (wrong_size, list(range(chunks)))
            continue
        have = chunk_sums(path, chunk, want["bytes"])
        bad = [i for i, s in enumerate(want["blake2b"]) if i >= len(have) or have[i] != s]
        if bad or wrong_size:
            sizes = f"{chunk / 2**20:g} MiB" if chunk >= 2**20 else f"{chunk:,} bytes"
            spans = f"chunk(s) {_preview(bad)} of {sizes} differ from their sums" if bad else ""
            found[name] = ("; ".join(filter(None, (wrong_size, spans))), bad)
    return found


def _preview(numbers: list[int], k: int = 5) -> str:
    return ", ".join(map(str, numbers[:k])) + (f" (+{len(numbers) - k} more)" if len(numbers) > k else "")


def problems(found: dict[str, tuple[str, list[int]]]) -> str:
    return "; ".join(f"{name}: {what}" for name, (what, _) in found.items())


def check_store(root: Path, manifest: dict[str, Any], where: str, full: bool) -> None:
    """ConfigError, in one line with how to rebuild, when a file is missing, of another size, or (``full``) holds
    a chunk whose sum differs."""
    found = damage(root, manifest, full)
    if found:
        raise ConfigError(f"{where}: the pixel store is damaged ({problems(found)}); rebuild it: "
                          f"{rebuild_command(root, manifest.get('source'))} (rewrites only what is damaged)")
