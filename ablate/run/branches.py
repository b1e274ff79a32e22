"""Records what each block branch learned (``ablate.model.branches``) on a fixed validation batch, once before
training (epoch 0) and after every epoch, in the run directory's branches.csv."""
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ablate.model.branches import measure_branches
from ablate.record import BRANCHES, write_rows

PROBE_IMAGES = 64  # enough images for a stable mean norm; one forward pass, far below an epoch's cost


class BranchProbe:
    """The first ``PROBE_IMAGES`` of the validation set, kept on the device, measured at every ``record``.

    Built at the epoch the run starts from: a resumed run keeps the rows of the epochs before it."""

    def __init__(self, model: nn.Module, val_loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 device: torch.device, run_dir: Path, epoch: int) -> None:
        self.model, self.path = model, Path(run_dir) / BRANCHES
        x, _ = next(iter(val_loader))
        self.x = x[:PROBE_IMAGES].to(device).clone()  # a batched loader may reuse the batch's memory
        self.rows = []
        if epoch and self.path.is_file() and self.path.stat().st_size:
            self.rows = pd.read_csv(self.path).query("epoch < @epoch").to_dict("records")
        self.record(epoch)

    def record(self, epoch: int) -> None:
        """Measure the model as it is after ``epoch`` epochs (0: as initialised) and rewrite branches.csv."""
        self.rows += [{"epoch": epoch, **row} for row in measure_branches(self.model, self.x)]
        write_rows(self.path, self.rows)
