"""checkpoint.pt: what a run needs to resume. Loaded with ``weights_only=True``, so loading never runs pickled code."""
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch

from ablate.errors import CheckpointError
from ablate.files import atomic_write

CHECKPOINT = "checkpoint.pt"


class _Writer:
    """The file torch.save writes to, keeping the OSError of a failed write: torch's writer reports it as a
    RuntimeError (``enforce fail at inline_container.cc``) that no longer says why, e.g. a full disk."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.error = file, None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.file.flush()


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    def dump(tmp: str) -> None:
        with open(tmp, "wb") as f:
            writer = _Writer(f)
            try:
                torch.save(dict(state), writer)
            except RuntimeError:
                if writer.error is not None:
                    raise writer.error from None
                raise
    atomic_write(Path(path), dump)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is unreadable ({_reason(e)}): it is corrupt, or not a checkpoint "
                              f"of ablate's and untrusted (nothing in it was run); move it aside to start this run "
                              f"afresh") from e


def _reason(e: Exception) -> str:
    """The first line of torch's message, unless it is the weights-only loader's, whose advice (load it with
    ``weights_only=False``) would run whatever code the file holds."""
    first = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:160]  # torch's first sentence
    if "weights" in first.lower():
        return f"{type(e).__name__}: it holds objects other than tensors"
    return f"{type(e).__name__}: {first}"
