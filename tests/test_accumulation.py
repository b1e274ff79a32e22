"""A fixed global batch: gradient accumulation, its one-line refusal, and a fingerprint that ignores how the batch
is split into processes and micro-batches."""
import json
import subprocess
import sys
from collections.abc import Callable

import pandas as pd
import pytest
import torch
from sweep_args import NO_PLAN_TIMES
from torch.utils.data import TensorDataset

from ablate import ConfigError, compose
from ablate.config.spec import to_spec
from ablate.data import DataBundle
from ablate.record import RunRecord
from ablate.run.distributed import Dist
from ablate.run.train import run, setup, train_one_epoch

CPU = torch.device("cpu")


def start(cfg, world_size: int = 1) -> RunRecord:
    return RunRecord.start(to_spec(cfg), sweep=None, device="cpu", world_size=world_size)


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.fixture
def one_step(tmp_path, monkeypatch) -> Callable[..., tuple[list[torch.Tensor], ...]]:
    """``one_step(overrides)``: the parameters before the first optimiser step on 32 random images, the gradient
    that step applies, and the parameters after it."""
    import ablate.run.train
    g = torch.Generator().manual_seed(0)
    images = TensorDataset(torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g))
    monkeypatch.setattr(ablate.run.train, "build_data", lambda cfg: DataBundle(images, images, 10, {}))

    def step(overrides: list[str]) -> tuple[list[torch.Tensor], ...]:
        # xs has no BatchNorm (GroupNorm is per image) and no drop path, so the split cannot change the numbers.
        cfg = compose(["model=xs", "train.warmup_epochs=0", *overrides])
        tr = setup(to_spec(cfg), tmp_path / "_".join(overrides), start(cfg), CPU, Dist())
        assert tr.steps_per_epoch == 1
        before, grads, optimizer_step = params(tr.model), [], tr.optimizer.step

        def spy(*args, **kwargs):
            grads.extend(p.grad.clone() for p in tr.model.parameters() if p.grad is not None)
            return optimizer_step(*args, **kwargs)
        tr.optimizer.step = spy
        train_one_epoch(tr, 0)
        return before, grads, params(tr.model)
    return step


@pytest.mark.slow  # trains: an optimiser step through the training loop, twice
def test_two_micro_batches_of_16_step_as_one_batch_of_32(one_step):
    before, whole_grads, whole = one_step(["train.batch_size=32"])
    _, split_grads, split = one_step(["train.batch_size=16", "train.global_batch=32"])
    assert len(split_grads) == len(whole_grads) > 0
    for a, b in zip(whole_grads, split_grads):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)  # the mean over 32 images, summed in another order
    # AdamW's first step is lr × g / |g|: where g is near 0, a difference in its last bits moves a weight by a
    # small fraction of lr (2e-3), so the weights agree to 1e-4, while the step moved them by about lr.
    for a, b in zip(whole, split):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
    assert max((a - b).abs().max().item() for a, b in zip(whole, before)) > 1e-3


@pytest.mark.parametrize("world_size,batch,steps", [(1, 128, 8), (8, 128, 1), (2, 256, 2), (4, 64, 4)])
def test_the_paper_recipe_keeps_its_global_batch_on_any_gpu_count(world_size, batch, steps):
    cfg = compose(["train=paper", f"train.batch_size={batch}"])
    record = start(cfg, world_size)
    assert (record.global_batch, record.batch_size, record.world_size, record.accum_steps) == (
        1024, batch, world_size, steps)
    # One fingerprint for the recipe, whatever the split into processes and micro-batches.
    assert record.fingerprint == start(compose(["train=paper"]), 8).fingerprint
    assert record.config["train"]["global_batch"] == 1024 and "batch_size" not in record.config["train"]


def test_without_a_global_batch_it_follows_the_processes():
    one, two = start(compose(["train.batch_size=32"]), 2), start(compose(["train.global_batch=64"]), 1)
    assert (one.global_batch, one.accum_steps, two.global_batch, two.accum_steps) == (64, 1, 64, 1)
    assert one.fingerprint == two.fingerprint != start(compose([]), 2).fingerprint  # 64 × 2: another recipe


@pytest.mark.parametrize("world_size,batch,message", [
    (3, 128, "train.global_batch=1024 is not a multiple of train.batch_size=128 × 3 process(es) = 384; "
             "run on a number of processes that divides 1024"),
    (1, 96, "train.global_batch=1024 is not a multiple of train.batch_size=96 × 1 process(es) = 96; "
            "e.g. train.batch_size=64"),
    (8, 256, "train.global_batch=1024 is not a multiple of train.batch_size=256 × 8 process(es) = 2048; "
             "e.g. train.batch_size=128"),
])
def test_a_global_batch_that_does_not_divide_is_refused_in_one_line(monkeypatch, world_size, batch, message):
    monkeypatch.setenv("WORLD_SIZE", str(world_size))  # as torchrun sets it: checked before any work
    with pytest.raises(ConfigError) as e:
        compose(["train=paper", f"train.batch_size={batch}"])
    assert str(e.value) == message


@pytest.mark.slow
def test_a_table5_sweep_is_one_recipe_on_one_process_with_accumulation_and_on_two_without(tmp_path, torchrun):
    # The paper's 1024-image global batch on digits (1,437 training images: one step an epoch), as 2 × 512 images
    # in one process and 512 in each of two torchrun processes.
    sweep = ["-m", "ablate", "-m", "+sweep/table5=baseline,identity", "model=xs", "train=paper", "train.epochs=1",
             "train.warmup_epochs=0", "train.cooldown_epochs=0", "train.batch_size=512", NO_PLAN_TIMES]
    for launch, where in (([sys.executable], "one"), (torchrun, "two")):
        out = subprocess.run([*launch, *sweep, f"hydra.sweep.dir={where}"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
    fingerprints = set()
    for row in ("baseline", "identity"):
        dirs = [next((tmp_path / where).glob(f"{row},*/seed=0")) for where in ("one", "two")]
        one, two = (RunRecord.from_dict(json.loads((d / "results.json").read_text())) for d in dirs)
        assert one.status == two.status == "completed"
        assert (one.world_size, one.batch_size, one.accum_steps) == (1, 512, 2)
        assert (two.world_size, two.batch_size, two.accum_steps) == (2, 512, 1)
        assert one.global_batch == two.global_batch == 1024 and one.recipe == two.recipe == "paper"
        assert one.fingerprint == two.fingerprint and one.config == two.config
        # The same lr, from the same global batch, at every step.
        lrs = [pd.read_csv(d / "history.csv").lr.tolist() for d in dirs]
        assert lrs[0] == lrs[1] and len(lrs[0]) == 1
        fingerprints.add(one.fingerprint)
    assert len(fingerprints) == 2  # while the two rows are two configs


@pytest.mark.slow
def test_ddp_with_accumulation_trains_as_one_process_does(tmp_path, torchrun):
    # 2 processes × 32 × 2 micro-batches against 1 × 32 × 4: the same 128 images a step (the sampler interleaves
    # ranks), and nothing random in this recipe, so only float summation order may differ; the all-reduce is
    # skipped on the first micro-batch of each step (no_sync), which must not lose its gradient.
    args = ["model=xs", "train.epochs=1", "train.warmup_epochs=0", "train.batch_size=32", "train.global_batch=128"]
    out = subprocess.run([*torchrun, "-m", "ablate", *args, "hydra.run.dir=two"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    two = RunRecord.from_dict(json.loads((tmp_path / "two/results.json").read_text()))
    one = run(to_spec(compose(args), args), tmp_path / "one")  # in this process
    assert (one.world_size, one.accum_steps, two.world_size, two.accum_steps) == (1, 4, 2, 2)
    assert two.train_loss == pytest.approx(one.train_loss, rel=1e-5)
    assert two.val_loss == pytest.approx(one.val_loss, rel=1e-5)
    assert abs(two.top1 - one.top1) <= 100 / 360  # at most one of the 360 val images
