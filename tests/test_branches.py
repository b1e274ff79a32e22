"""What each branch learned: ``measure_branches`` against the blocks computed by hand, for every block design
(no residual, no channel MLP, no norm, no LayerScale), and branches.csv as a run keeps it, resumed or not."""
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from ablate import compose
from ablate.config.spec import to_spec
from ablate.model import MetaFormer
from ablate.model.branches import COLUMNS, measure_branches
from ablate.record import BRANCHES
from ablate.run.branches import PROBE_IMAGES, BranchProbe
from ablate.run.train import run

DEPTHS, DIMS = [1, 1, 2, 1], [8, 16, 24, 32]


def tiny(**kwargs) -> MetaFormer:
    torch.manual_seed(0)
    return MetaFormer.from_names(depths=DEPTHS, dims=DIMS, num_classes=3, img_size=32, **kwargs)


def stage_inputs(model: MetaFormer, x: torch.Tensor) -> list[torch.Tensor]:
    """What each stage's blocks receive: the stem's map, downsampled."""
    maps, h = [], model.stem(x)
    for stage in model.stages:
        h = stage.downsample(h)
        maps.append(h)
        h = stage.blocks(h)
    return maps


def by_hand(model: MetaFormer, x: torch.Tensor, stage: int) -> tuple[float, float]:
    """The mean over blocks of each branch's update norm (per image, averaged over images), block by block."""
    h, mixer, mlp = stage_inputs(model, x)[stage], [], []
    for block in model.stages[stage].blocks:
        update = block.layer_scale1(block.token_mixer(block.norm1(h)))
        mixer.append(update.flatten(1).norm(dim=1).mean().item())
        h = h + update if block.residual else update
        if block.channel_mlp:
            update = block.layer_scale2(block.mlp(block.norm2(h)))
            mlp.append(update.flatten(1).norm(dim=1).mean().item())
            h = h + update if block.residual else update
    return sum(mixer) / len(mixer), (sum(mlp) / len(mlp) if mlp else math.nan)


@pytest.mark.parametrize("design", [{}, {"residual": False}, {"channel_mlp": False}, {"norm": "none"},
                                    {"layer_scale_init": None}], ids=["baseline", "no_residual", "no_mlp",
                                                                      "no_norm", "no_layer_scale"])
@torch.no_grad()
def test_branch_updates_and_scales_match_the_blocks_computed_by_hand(design: dict) -> None:
    model = tiny(**design).eval()
    for i, block in enumerate(b for stage in model.stages for b in stage.blocks):  # scales that differ
        for name, value in (("layer_scale1", 0.1 * (i + 1)), ("layer_scale2", 0.5)):
            if hasattr(getattr(block, name, None), "scale"):
                getattr(block, name).scale.fill_(value)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model.train()
    rows = measure_branches(model, x)
    assert model.training  # left as it was
    assert [list(r) for r in rows] == [COLUMNS] * 4
    assert [r["grid"] for r in rows] == ["8x8", "4x4", "2x2", "1x1"]
    model.eval()
    for stage, row in enumerate(rows):
        mixer, mlp = by_hand(model, x, stage)
        assert row["mixer_update"] == pytest.approx(mixer, rel=1e-5, abs=1e-12)
        if design.get("channel_mlp") is False:
            assert math.isnan(row["mlp_update"]) and math.isnan(row["mlp_ls"])
            assert row["mixer_share"] == 1.0 or (mixer == 0 and math.isnan(row["mixer_share"]))
        else:
            assert row["mlp_update"] == pytest.approx(mlp, rel=1e-5, abs=1e-12)
            if mixer + mlp > 0:
                assert row["mixer_share"] == pytest.approx(mixer / (mixer + mlp), rel=1e-5)
    if design.get("layer_scale_init", 1) is None:
        assert all(math.isnan(r["mixer_ls"]) and math.isnan(r["mlp_ls"]) for r in rows)
    else:
        # Block i's mixer scale is 0.1 * (i + 1): stage 3 holds blocks 2 and 3.
        assert [r["mixer_ls"] for r in rows] == pytest.approx([0.1, 0.2, 0.35, 0.5])
        if design.get("channel_mlp") is not False:
            assert [r["mlp_ls"] for r in rows] == pytest.approx([0.5] * 4)
    # Pooling on the 1×1 grid of stage 4 is pool(x) - x = 0: nothing for the mixer to add.
    assert rows[3]["mixer_update"] == 0


def test_probe_keeps_one_row_per_epoch_and_stage_and_resumes(tmp_path: Path) -> None:
    model = tiny()
    x = torch.randn(PROBE_IMAGES + 6, 3, 32, 32)
    loader = [(x, torch.zeros(len(x), dtype=torch.long))]
    probe = BranchProbe(model, loader, torch.device("cpu"), tmp_path, epoch=0)
    assert len(probe.x) == PROBE_IMAGES
    for epoch in (1, 2):
        model.stages[0].blocks[0].layer_scale1.scale.data.fill_(epoch)
        probe.record(epoch)
    rows = pd.read_csv(tmp_path / BRANCHES)
    assert list(rows.columns) == ["epoch", *COLUMNS]
    assert list(rows.epoch) == [0] * 4 + [1] * 4 + [2] * 4
    assert list(rows[rows.stage.eq(1)].mixer_ls) == pytest.approx([1e-5, 1, 2])
    # Resumed from epoch 1's checkpoint: epoch 2's rows, written before the interruption, are measured again.
    model.stages[0].blocks[0].layer_scale1.scale.data.fill_(1)
    BranchProbe(model, loader, torch.device("cpu"), tmp_path, epoch=1)
    rows = pd.read_csv(tmp_path / BRANCHES)
    assert list(rows.epoch) == [0] * 4 + [1] * 4 and list(rows[rows.stage.eq(1)].mixer_ls) == pytest.approx([1e-5, 1])


@pytest.mark.slow  # trains
def test_a_run_records_its_branches_every_epoch(tmp_path: Path) -> None:
    run(to_spec(compose(["model=xs", "train.epochs=2"])), tmp_path)
    rows = pd.read_csv(tmp_path / BRANCHES)
    assert list(rows.epoch) == [0] * 4 + [1] * 4 + [2] * 4 and list(rows.stage) == [1, 2, 3, 4] * 3
    at_init = rows[rows.epoch.eq(0)]
    assert at_init.mixer_ls.tolist() == pytest.approx([1e-5] * 4)  # the xs model's LayerScale init
    assert (rows[rows.epoch.eq(2)].mlp_ls > 1e-5).all()  # the MLPs learn from the first epoch
    assert list(rows.grid[:4]) == ["8x8", "4x4", "2x2", "1x1"]  # digits at 32 px
