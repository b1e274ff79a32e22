"""A new mixer is one class and one YAML: one defined here reaches run names, stats and the report."""
import shutil

import pytest
import torch
from torch import nn

import ablate.config.checks
from ablate import build_model, compose, model_stats
from ablate.config.design import name_run
from ablate.config.spec import to_spec
from ablate.model import MIXERS
from ablate.model.mixers import TokenMixer
from ablate.report.build import build_report
from ablate.run.train import run


class Shift(nn.Module, TokenMixer):
    """Rolls the map by pool_size // 2 columns and scales it by a fixed per-channel gain."""

    uses_pool_size = True
    frozen = True

    def __init__(self, dim: int, pool_size: int = 3) -> None:
        super().__init__()
        self.shift = pool_size // 2
        self.gain = nn.Parameter(torch.rand(dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, self.shift, dims=-1) * self.gain


@pytest.fixture
def shift(tmp_path, monkeypatch) -> type[Shift]:
    """``mixer=shift``: the class registered, and its YAML in a copy of conf/ (the repo's stays untouched)."""
    conf = tmp_path / "conf"
    shutil.copytree(ablate.config.checks.CONF_DIR, conf)
    (conf / "mixer" / "shift.yaml").write_text("name: shift\n")
    monkeypatch.setattr(ablate.config.checks, "CONF_DIR", conf)
    monkeypatch.setitem(MIXERS._items, "shift", Shift)
    return Shift


def test_traits_reach_the_name_and_the_stats(shift, monkeypatch):
    cfg = compose(["model=xs", "mixer=shift", "pool_size=5"])
    assert (name_run(cfg).group, name_run(cfg).variant) == ("Custom", "mixer=shift, pool_size=5")
    model = build_model(cfg, 10)
    assert model.stages[0].blocks[0].token_mixer.shift == 2
    assert model_stats(model, 32)["frozen_params_m"] == pytest.approx(sum((1, 1, 3, 1)[i] * d for i, d in
                                                                          enumerate((32, 64, 128, 256))) / 1e6)
    monkeypatch.setattr(Shift, "uses_pool_size", False)
    assert name_run(cfg).variant == "mixer=shift"  # a pool size the mixer ignores is no part of its design


@pytest.mark.slow
def test_a_new_mixer_trains_and_reaches_the_report(shift, tmp_path):
    overrides = ["mixer=shift", "pool_size=5"]
    record = run(to_spec(compose(["model=xs", "train.epochs=1", *overrides]), overrides), tmp_path / "run")
    assert record.status == "completed" and record.variant == "mixer=shift, pool_size=5"
    assert record.frozen_params_m > 0
    table = build_report([tmp_path / "run"], tmp_path / "report").read_text()
    assert "| Custom | mixer=shift, pool_size=5 |" in table
