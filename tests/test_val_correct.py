"""Per-image correctness: what evaluation stores for the report's bootstrap over validation images."""
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ablate import compose
from ablate.config.spec import to_spec
from ablate.record import read_val_correct, write_val_correct
from ablate.run.distributed import Dist, gather_strided
from ablate.run.train import run


@pytest.mark.parametrize("n", [0, 1, 8, 1003])
def test_bits_round_trip(tmp_path, n):
    correct = np.random.default_rng(n).random(n) > 0.3
    write_val_correct(tmp_path, correct)
    assert np.array_equal(read_val_correct(tmp_path), correct)


def test_missing_or_truncated_file_reads_as_none(tmp_path):
    assert read_val_correct(tmp_path) is None
    write_val_correct(tmp_path, np.ones(100, dtype=bool))
    data = (tmp_path / "val_correct.npz").read_bytes()
    (tmp_path / "val_correct.npz").write_bytes(data[: len(data) // 2])
    assert read_val_correct(tmp_path) is None


@pytest.mark.slow
def test_a_run_stores_its_last_epochs_correctness_in_data_set_order(tmp_path):
    record = run(to_spec(compose(["model=xs", "train.epochs=1"])), tmp_path)
    correct = read_val_correct(tmp_path)
    assert len(correct) == 360  # digits' validation split: 20% of 1,797 images
    assert 100 * correct.mean() == pytest.approx(record.top1)


def _gather(rank: int, world_size: int, store: str, total: int) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        # Each rank holds what the val sampler range(rank, total, world_size) gave it.
        mine = torch.arange(rank, total, world_size, dtype=torch.int64)
        gathered = gather_strided(mine, Dist(rank, world_size), total)
        assert torch.equal(gathered, torch.arange(total)), gathered
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gather_puts_every_ranks_slice_back_in_data_set_order(tmp_path):
    # Two ranks over nine images: slices of 5 and 4, so the padding of the shorter one must be dropped.
    mp.spawn(_gather, args=(2, str(tmp_path / "store"), 9), nprocs=2)
