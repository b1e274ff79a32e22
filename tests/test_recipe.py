"""The paper's recipe pinned to timm's own functions, and a run of it resumed exactly.

Expected values come from timm (``create_optimizer_v2``, ``create_scheduler_v2``, ``Mixup``,
``SoftTargetCrossEntropy``, the drop-path rule of its ``poolformer_*`` models) and from closed forms, fed with the
paper's hyperparameters as ../shared/reference/paper-notes.md writes them down (§1b, §2: arXiv 2111.11418 Sec. 4.1
and Appendix A, sail-sg/poolformer train.py), never with values read from ablate's config. Around the recipe:
``train.resume=false`` over a finished run, the keys the fingerprint ignores, and a run stopped after epoch 1 and
resumed equal to an uninterrupted one, with DataLoader workers and under torchrun.
"""
import csv
import json
import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch.utils.data import TensorDataset

from ablate import build_model, compose
from ablate.record import read_val_correct

# The paper's recipe (paper-notes.md §2): lr 1e-3 per 1024 images of the global batch, AdamW with weight decay 0.05,
# 5 warmup epochs from 1e-6, cosine over 300 epochs to 1e-5, then 10 cool-down epochs at 1e-5; label smoothing 0.1;
# MixUp α 0.8, CutMix α 1.0, switch probability 0.5 (mixup-prob 1.0, batch mode).
LR_PER_1024, WEIGHT_DECAY, WARMUP_EPOCHS, WARMUP_LR, MIN_LR = 1e-3, 0.05, 5, 1e-6, 1e-5
EPOCHS = {"paper": (300, 10),  # cosine epochs, cool-down epochs: the authors' timm ran 300 + 10
          "imagenet100": (100, 0)}  # docs/config.md: "`paper` for 100 epochs without cool-down"
SMOOTHING, MIXUP, CUTMIX, SWITCH = 0.1, 0.8, 1.0, 0.5
# Stochastic depth at the last block, by model (paper-notes.md §1b: paper Table 1, PF models/poolformer.py).
DROP_PATH = {"s12": 0.1, "s24": 0.1, "s36": 0.2, "m36": 0.3, "m48": 0.4}
CPU = torch.device("cpu")


# --- the one place these tests reach below ablate's public API -------------------------------------------------------
# compose, build_model, the CLI and a run directory's files are public; setup, the Trainer, train_one_epoch, run and
# the record take the run's typed spec (ablate.config.spec.to_spec): when their signatures change, only the helpers
# below do (and INTERRUPTING patches what tests/conftest.py's interrupt_at_epoch patches).

def _spec(overrides: Sequence[str]):
    from ablate.config.spec import to_spec
    return to_spec(compose(overrides), list(overrides))


def _record(spec):
    """The record a one-process CPU run of ``spec`` starts with."""
    from ablate.record import RunRecord
    return RunRecord.start(spec, sweep=None, device="cpu", world_size=1)


def fingerprint(overrides: Sequence[str]) -> str:
    """The fingerprint a run of ``overrides`` records."""
    return _record(_spec(overrides)).fingerprint


@pytest.fixture
def build_trainer(tmp_path, monkeypatch) -> Callable:
    """``build_trainer(overrides, images=32, size=32)``: the Trainer that one CPU process would train ``overrides``
    with, on ``images`` random ``size`` px images of 10 classes (gathered as they are: no augmentation)."""
    import ablate.run.train
    from ablate.data import DataBundle
    from ablate.run.distributed import Dist

    def build(overrides: Sequence[str], images: int = 32, size: int = 32):
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(images, 3, size, size, generator=g),
                             torch.randint(0, 10, (images,), generator=g))
        monkeypatch.setattr(ablate.run.train, "build_data", lambda cfg: DataBundle(data, data, 10, {}))
        spec = _spec(overrides)
        return ablate.run.train.setup(spec, tmp_path / "run", _record(spec), CPU, Dist())
    return build


def train_epoch(trainer, epoch: int = 0) -> None:
    """One epoch of the training loop, as ``fit`` runs it."""
    from ablate.run.train import train_one_epoch
    train_one_epoch(trainer, epoch)


def train_in_process(overrides: Sequence[str], run_dir: Path) -> str:
    """Train (or resume) ``overrides`` in ``run_dir`` in this process, as ``python -m ablate`` would; its status."""
    from ablate.run.train import run
    return run(_spec(overrides), run_dir).status


# Run by torchrun in each process: Ctrl-C in the evaluation of epoch 2 (as tests/conftest.py's interrupt_at_epoch
# does in-process), so that epoch 1 is checkpointed; then the CLI.
INTERRUPTING = """
import runpy, sys
import ablate.run.train
evaluate, calls = ablate.run.train.evaluate, []
def interrupted(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        raise KeyboardInterrupt
    return evaluate(*args, **kwargs)
ablate.run.train.evaluate = interrupted
sys.argv = ["ablate", *sys.argv[1:]]
runpy.run_module("ablate", run_name="__main__", alter_sys=True)
"""


# --- the learning rate ------------------------------------------------------------------------------------------------

def paper_lr(t: int, peak: float, steps: int, epochs: int) -> float:
    """The recipe's lr after ``t`` optimiser steps, in closed form: linear warmup from WARMUP_LR towards ``peak`` over
    5 epochs, then the cosine from ``peak`` to MIN_LR over ``epochs`` epochs counted from step 0 (timm's warmup
    without warmup_prefix replaces the cosine's first 5 epochs), then MIN_LR through the cool-down."""
    warmup, total = WARMUP_EPOCHS * steps, epochs * steps
    if t < warmup:
        return WARMUP_LR + t * (peak - WARMUP_LR) / warmup
    if t < total:
        return MIN_LR + 0.5 * (peak - MIN_LR) * (1 + math.cos(math.pi * t / total))
    return MIN_LR


def timm_lrs(peak: float, steps: int, epochs: int, cooldown: int, warmup_epochs: int = WARMUP_EPOCHS,
             min_lr: float = MIN_LR) -> tuple[int, list[float]]:
    """timm's own schedule for the recipe: the number of epochs it runs, and the lr after each optimiser step."""
    optimizer = create_optimizer_v2([torch.nn.Parameter(torch.zeros(2))], "adamw", lr=peak, weight_decay=WEIGHT_DECAY)
    scheduler, total = create_scheduler_v2(optimizer, "cosine", num_epochs=epochs, warmup_epochs=warmup_epochs,
                                           warmup_lr=WARMUP_LR, min_lr=min_lr, cooldown_epochs=cooldown,
                                           step_on_epochs=False, updates_per_epoch=steps)
    lrs = []
    for t in range(total * steps + 1):
        scheduler.step_update(t)
        lrs.append(optimizer.param_groups[0]["lr"])
    return total, lrs


@pytest.mark.parametrize("recipe,global_batch,batch_size,images", [
    ("paper", 256, 128, 1024),  # one process accumulating 2 micro-batches per step: 4 steps an epoch
    ("paper", 256, 256, 1024),  # the same global batch in one micro-batch: the same lr at every step
    ("paper", 4096, 1024, 4096),  # the paper's own batch: peak 4e-3, one step an epoch
    ("imagenet100", 1024, 512, 2048),
])
def test_the_lr_at_every_step_is_timms_schedule_scaled_from_the_global_batch(build_trainer, recipe, global_batch,
                                                                              batch_size, images):
    tr = build_trainer(["model=xs", f"train={recipe}", f"train.global_batch={global_batch}",
                        f"train.batch_size={batch_size}"], images=images, size=2)
    steps, (epochs, cooldown) = images // global_batch, EPOCHS[recipe]
    peak = LR_PER_1024 * global_batch / 1024
    assert peak == {256: 2.5e-4, 1024: 1e-3, 4096: 4e-3}[global_batch]
    assert tr.steps_per_epoch == steps and tr.epochs == epochs + cooldown
    assert [g["initial_lr"] for g in tr.optimizer.param_groups] == [peak] * len(tr.optimizer.param_groups)
    total, expected = timm_lrs(peak, steps, epochs, cooldown)
    assert total == tr.epochs
    ours = []
    for t in range(tr.epochs * steps + 1):  # step 0 (before the first) to the last step of the cool-down
        tr.scheduler.step_update(t)
        lrs = {g["lr"] for g in tr.optimizer.param_groups}
        assert len(lrs) == 1, lrs  # one lr for every parameter group
        ours.append(lrs.pop())
    assert ours == expected
    assert ours == pytest.approx([paper_lr(t, peak, steps, epochs) for t in range(len(ours))], rel=1e-12, abs=0)
    assert ours[0] == WARMUP_LR and ours[-1] == MIN_LR


# --- weight decay, drop path, clipping --------------------------------------------------------------------------------

def decay_by_name(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    names = {id(p): name for name, p in model.named_parameters()}
    return {names[id(p)]: group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}


@pytest.mark.parametrize("recipe", ["paper", pytest.param("imagenet100", marks=pytest.mark.slow)])  # S12: seconds
def test_norms_biases_and_layer_scale_skip_weight_decay_as_in_timm(build_trainer, recipe):
    tr = build_trainer(["model=s12", f"train={recipe}", "train.global_batch=null", "train.batch_size=2"], images=2)
    ours = decay_by_name(tr.model, tr.optimizer)
    theirs_model = timm.create_model("poolformer_s12", pretrained=False, num_classes=10)
    theirs = decay_by_name(theirs_model, create_optimizer_v2(theirs_model, "adamw", lr=1e-3,
                                                             weight_decay=WEIGHT_DECAY))
    assert ours == theirs
    assert len(ours) == 132  # every one of timm's 132 tensors (paper-notes.md §3), each in one group
    decayed = sorted(name for name, wd in ours.items() if wd == WEIGHT_DECAY)
    skipped = {name for name, wd in ours.items() if wd == 0}
    assert len(decayed) + len(skipped) == len(ours)
    # Only conv and linear weights decay: the stem, 3 downsampling convs, 2 MLP convs in each of 12 blocks, the head.
    assert decayed == sorted(["stem.conv.weight", *(f"stages.{s}.downsample.conv.weight" for s in (1, 2, 3)),
                              *(f"stages.{s}.blocks.{b}.mlp.fc{i}.weight" for s, depth in enumerate((2, 2, 6, 2))
                                for b in range(depth) for i in (1, 2)), "head.fc.weight"])
    assert {"stages.0.blocks.0.layer_scale1.scale", "stages.3.blocks.1.norm2.weight", "stages.2.blocks.5.mlp.fc1.bias",
            "head.norm.weight", "head.fc.bias"} <= skipped


def drop_path_rates(model: torch.nn.Module) -> list[tuple[float, float]]:
    """Each block's drop-path probability on its two branches (0 where the branch has no DropPath)."""
    return [tuple(getattr(getattr(block, branch), "drop_prob", 0.0) for branch in ("drop_path1", "drop_path2"))
            for stage in model.stages for block in stage.blocks]


@pytest.mark.parametrize("size", ["s12", pytest.param("s24", marks=pytest.mark.slow),
                                  pytest.param("m36", marks=pytest.mark.slow)])
def test_the_drop_path_rate_of_every_block_is_timms(size):
    ours = drop_path_rates(build_model(compose([f"model={size}", "train=paper", "data.img_size=224"]), 10))
    theirs = drop_path_rates(timm.create_model(f"poolformer_{size}", pretrained=False, num_classes=10,
                                               drop_path_rate=DROP_PATH[size]))
    assert ours == theirs
    # The authors' rule (PF models/poolformer.py L212-229): block i of n rises linearly from 0 to the model's rate.
    n = len(ours)
    assert [a for a, b in ours] == [b for a, b in ours] == pytest.approx(
        [DROP_PATH[size] * i / (n - 1) for i in range(n)], rel=1e-6, abs=1e-12)
    assert n == {"s12": 12, "s24": 24, "m36": 36}[size]


def grads_of(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def spy_on_steps(trainer, before_step: Callable[[torch.nn.Module], None] | None = None) -> list[list[torch.Tensor]]:
    """The gradients each of the trainer's optimiser steps applies (after ``before_step(model)``, when given)."""
    applied, step = [], trainer.optimizer.step

    def spy(*args, **kwargs):
        if before_step:
            before_step(trainer.model)
        applied.append(grads_of(trainer.model))
        return step(*args, **kwargs)
    trainer.optimizer.step = spy
    return applied


@pytest.mark.slow  # trains: one optimiser step, twice
def test_a_clipped_step_is_a_step_after_clip_grad_norm(build_trainer):
    clip, raw = 0.05, []
    base = ["model=xs", "train.warmup_epochs=0", "train.batch_size=32"]

    def clip_by_hand(model: torch.nn.Module) -> None:
        raw.append(grads_of(model))
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    manual = build_trainer(base)  # unclipped, with torch's clip_grad_norm_ applied by hand before the step
    by_hand = spy_on_steps(manual, clip_by_hand)
    train_epoch(manual)
    clipped = build_trainer([*base, f"train.grad_clip={clip}"])
    applied = spy_on_steps(clipped)
    train_epoch(clipped)
    assert len(raw) == len(applied) == len(by_hand) == 1
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in raw[0]]))
    assert norm > 2 * clip  # the clip bites
    for ours, theirs, unclipped in zip(applied[0], by_hand[0], raw[0], strict=True):
        assert torch.equal(ours, theirs)
        torch.testing.assert_close(ours, unclipped * clip / norm, rtol=1e-5, atol=0)  # scaled to norm `clip`
    for ours, theirs in zip(params(clipped.model), params(manual.model), strict=True):
        assert torch.equal(ours, theirs)


# --- mixup, cutmix and the loss ---------------------------------------------------------------------------------------

def timm_mixup(num_classes: int) -> Mixup:
    return Mixup(mixup_alpha=MIXUP, cutmix_alpha=CUTMIX, prob=1.0, switch_prob=SWITCH, mode="batch",
                 label_smoothing=SMOOTHING, num_classes=num_classes)


@pytest.mark.parametrize("recipe", ["paper", "imagenet100"])
def test_mixup_and_cutmix_mix_as_timms_with_the_same_seed(build_trainer, recipe):
    tr = build_trainer(["model=xs", f"train={recipe}", "train.global_batch=null", "train.batch_size=2"], images=2)
    reference, kinds = timm_mixup(10), set()
    g = torch.Generator().manual_seed(0)
    for seed in range(12):
        x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
        np.random.seed(seed)
        ours_x, ours_t = tr.mixup(x.clone(), y)
        np.random.seed(seed)
        theirs_x, theirs_t = reference(x.clone(), y)
        assert torch.equal(ours_x, theirs_x) and torch.equal(ours_t, theirs_t)
        # Every target row is a probability with label smoothing in it: no class below 0.1 / 10.
        torch.testing.assert_close(ours_t.sum(1), torch.ones(8))
        assert ours_t.min() >= SMOOTHING / 10 - 1e-7
        kinds.add("cutmix" if (ours_x == x.flip(0)).any() and (ours_x == x).any() else "mixup")
    assert kinds == {"mixup", "cutmix"}  # both branches were compared


@pytest.mark.slow  # trains: one optimiser step
def test_the_loop_trains_on_mixups_targets_with_soft_target_cross_entropy(build_trainer):
    tr = build_trainer(["model=xs", "train=paper", "train.global_batch=null", "train.batch_size=16",
                        "train.warmup_epochs=0"], images=16)
    assert type(tr.criterion) is SoftTargetCrossEntropy
    mixed, losses, mixup, criterion = [], [], tr.mixup, tr.criterion

    def spy_mixup(x, y):
        state = np.random.get_state()
        inputs = (x.clone(), y.clone())
        out = mixup(x, y)
        mixed.append((state, inputs, out[0].clone(), out[1].clone()))
        return out

    def spy_loss(logits, target):
        loss = criterion(logits, target)
        losses.append((logits.detach().clone(), target.clone(), loss.detach().clone()))
        return loss
    tr.mixup, tr.criterion = spy_mixup, spy_loss
    train_epoch(tr)
    (state, (x, y), ours_x, ours_t), = mixed
    np.random.set_state(state)
    theirs_x, theirs_t = timm_mixup(10)(x, y)
    assert torch.equal(ours_x, theirs_x) and torch.equal(ours_t, theirs_t)
    (logits, target, loss), = losses
    assert torch.equal(target, theirs_t)  # the loss sees mixup's targets, smoothing already in them
    by_hand = -(target * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
    torch.testing.assert_close(loss, by_hand)
    # Smoothing applied a second time by the loss would give another value.
    smoothed_twice = torch.nn.functional.cross_entropy(logits, target, label_smoothing=SMOOTHING)
    assert not torch.isclose(loss, smoothed_twice, rtol=1e-4, atol=0)


# --- resume, the fingerprint ------------------------------------------------------------------------------------------

def history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def comparable(run_dir: Path) -> list[tuple[str, ...]]:
    """What an exact resume must reproduce, as written (17 significant digits): every epoch's lr, losses, top-1."""
    return [(r["epoch"], r["lr"], r["train_loss"], r["val_loss"], r["top1"], r["top5"]) for r in history(run_dir)]


@pytest.fixture
def folder_args(photo_tree) -> list[str]:
    """A tiny data=folder run: 2 classes × 8 train and 2 val images of 40 px at 32, 4 steps of 4 images an epoch."""
    root = photo_tree(classes=2, train_per_class=8, val_per_class=2, size=(40, 40))
    return ["model=xs", "data=folder", f"data.root={root}", "data.img_size=32", "train.batch_size=4"]


@pytest.mark.parametrize("key,one,other", [
    ("data.root", "{a}", "{b}"),  # the same images elsewhere
    ("data.verify", "true", "false"),
    ("train.check_every", "20", "1"),
    ("train.resume", "true", "false"),
    ("wandb.enabled", "false", "true"),
    ("wandb.mode", "offline", "disabled"),
    ("wandb.project", "ablate", "elsewhere"),
])
def test_the_fingerprint_ignores_where_the_data_lives_checks_logging_and_resume(image_tree, key, one, other):
    a, b = image_tree(name="a"), image_tree(name="b")
    base = ["model=xs", "data=folder", f"data.root={a}"]
    values = [v.format(a=a, b=b) for v in (one, other)]
    assert fingerprint([*base, f"{key}={values[0]}"]) == fingerprint([*base, f"{key}={values[1]}"])


@pytest.mark.parametrize("change", ["train.lr=3e-3", "seed=1", "data.img_size=64", "train.label_smoothing=0.2",
                                    "train.grad_clip=1.0", "model.drop_path=0.2"])
def test_the_fingerprint_changes_with_what_decides_the_result(image_tree, change):
    base = ["model=xs", "data=folder", f"data.root={image_tree()}"]
    assert fingerprint([*base, change]) != fingerprint(base)


@pytest.mark.slow  # two short CLI runs
def test_resume_false_over_a_completed_run_trains_it_again_from_scratch(tmp_path, folder_args):
    args = [*folder_args, "train.epochs=1", "train.warmup_epochs=0", "hydra.run.dir=run"]
    first = subprocess.run([sys.executable, "-m", "ablate", *args], cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    before = json.loads((tmp_path / "run/results.json").read_text())
    stamp = (tmp_path / "run/checkpoint.pt").stat().st_mtime_ns
    # Keys outside the fingerprint changed too: the directory still holds this run, so it is not refused.
    again = subprocess.run([sys.executable, "-m", "ablate", *args, "train.resume=false", "data.verify=false",
                            "train.check_every=1", "wandb.mode=disabled"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    said = again.stdout + again.stderr
    assert "from scratch" in said and "already completed" not in said and "resuming" not in said, said[-3000:]
    after = json.loads((tmp_path / "run/results.json").read_text())
    assert after["status"] == "completed" and after["fingerprint"] == before["fingerprint"]
    assert [r["epoch"] for r in history(tmp_path / "run")] == ["1"]  # the history restarted, not appended to
    assert (tmp_path / "run/checkpoint.pt").stat().st_mtime_ns > stamp


@pytest.mark.slow  # trains 3 short epochs
def test_a_paper_run_records_timms_lr_after_every_epoch(tmp_path, folder_args):
    # The paper's recipe, short: 1 warmup epoch, 1 of cosine, 1 of cool-down, 4 steps of 4 images an epoch. The lr
    # floor lies below this tiny batch's peak (4 / 1024 × 1e-3), so that the cosine falls.
    args = [*folder_args, "train=paper", "train.global_batch=null", "train.epochs=2", "train.warmup_epochs=1",
            "train.cooldown_epochs=1", "train.min_lr=1e-7", "train.num_workers=0"]
    assert train_in_process(args, tmp_path / "run") == "completed"
    peak, steps = LR_PER_1024 * 4 / 1024, 4
    total, lrs = timm_lrs(peak, steps, epochs=2, cooldown=1, warmup_epochs=1, min_lr=1e-7)
    recorded = [float(row["lr"]) for row in history(tmp_path / "run")]
    assert total == len(recorded) == 3
    assert recorded == [lrs[(epoch + 1) * steps] for epoch in range(total)]  # after each epoch's last step
    assert recorded == pytest.approx([(peak + 1e-7) / 2, 1e-7, 1e-7], rel=1e-12)  # cosine halfway, floor


@pytest.mark.slow  # trains 2 epochs, then 1 interrupted and 1 resumed
def test_a_run_with_dataloader_workers_resumes_exactly(tmp_path, folder_args, interrupt_at_epoch, monkeypatch):
    # The paper's augmentation (RandAugment, random erasing, mixup/cutmix) drawn in 2 worker processes, drop path on.
    args = [*folder_args, "train=paper", "train.global_batch=null", "train.epochs=2", "train.warmup_epochs=1",
            "train.cooldown_epochs=0", "train.num_workers=2", "model.drop_path=0.1"]
    assert train_in_process(args, tmp_path / "whole") == "completed"
    with monkeypatch.context() as m:
        interrupt_at_epoch(2, m)
        with pytest.raises(KeyboardInterrupt):
            train_in_process(args, tmp_path / "split")
    stopped = json.loads((tmp_path / "split/results.json").read_text())
    assert (stopped["status"], stopped["epochs_done"], stopped["data_info"]["loader"]) == ("interrupted", 1, "torch")
    assert train_in_process(args, tmp_path / "split") == "completed"  # the PIL/timm DataLoader, its workers on
    assert comparable(tmp_path / "split") == comparable(tmp_path / "whole")


@pytest.mark.slow  # three torchrun launches of 2 CPU processes
def test_a_run_under_torchrun_resumes_exactly(tmp_path, folder_args, torchrun):
    script = tmp_path / "interrupting.py"
    script.write_text(INTERRUPTING)
    args = [*folder_args, "train.epochs=2", "train.warmup_epochs=1", "train.num_workers=0"]

    def launch(*command: str, where: str) -> subprocess.CompletedProcess:
        return subprocess.run([*torchrun, *command, *args, f"hydra.run.dir={where}"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
    whole = launch("-m", "ablate", where="whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    record = json.loads((tmp_path / "whole/results.json").read_text())
    correct = read_val_correct(tmp_path / "whole")  # both ranks' halves of the val set, gathered
    assert record["world_size"] == 2 and len(correct) == 4 and 100 * correct.mean() == pytest.approx(record["top1"])
    stopped = launch(str(script), where="split")
    assert stopped.returncode != 0
    record = json.loads((tmp_path / "split/results.json").read_text())
    assert (record["status"], record["epochs_done"], record["world_size"]) == ("interrupted", 1, 2), record["error"]
    resumed = launch("-m", "ablate", where="split")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout + resumed.stderr
    assert json.loads((tmp_path / "split/results.json").read_text())["status"] == "completed"
    assert len(comparable(tmp_path / "whole")) == 2
    assert comparable(tmp_path / "split") == comparable(tmp_path / "whole")
    # Rank 1 wrote nothing of its own (no run folder, no Hydra outputs/).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interrupting.py", "photos", "split", "whole"]
