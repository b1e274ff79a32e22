"""checkpoint.pt: what a run needs to resume. Loaded with ``weights_only=True``, so loading never runs pickled code."""
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ablate.errors import CheckpointError
from ablate.run.record import atomic_write

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    atomic_write(Path(path), lambda tmp: torch.save(dict(state), tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            f"move it aside to start this run afresh, or set train.resume=false") from e
