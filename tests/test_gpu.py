"""What only CUDA can show: the recipe's precision, compile and fused AdamW on a GPU, CUDA checkpoints, the pooling
kernels, the GPU data paths against their CPU twins, NCCL, and validation without a host sync per batch.

Run them with ``pytest -m gpu`` (``bash benchmarks/gpu.sh OUTDIR`` does); elsewhere they skip, saying so. Where a
test has a CPU twin (the same check on the CPU), the twin runs in the ordinary suite.
"""
import csv
import math
import socket
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ablate import build_model, compose
from ablate.config.spec import to_spec
from ablate.data.loaders import TensorBatches
from ablate.model.build import min_train_bytes
from ablate.model.pooling import IMPLEMENTATIONS, box_pool
from ablate.record import HISTORY
from ablate.run.distributed import Dist
from ablate.run.train import evaluate, run

CUDA = torch.cuda.is_available()
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs CUDA: no CUDA device is visible")]
ON_CUDA = pytest.param("cuda", marks=GPU)
TINY = ["model=xs", "data.img_size=32", "train.batch_size=64", "train.epochs=1", "train.device=cuda"]


def read_history(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / HISTORY, newline="") as f:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(f)]


def _dali():
    return pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed: pip install -e '.[dali]'")


# --- the training step -----------------------------------------------------------------------------------------------

@pytest.mark.slow  # trains an epoch
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("device", [ON_CUDA])
def test_recipe_precision_with_fused_adamw_gives_a_finite_loss(tmp_path, device, compiled):
    """bf16 autocast (train.amp, the paper recipe's precision on CUDA), fused AdamW, and torch.compile on and off."""
    cfg = compose([*TINY, "train.amp=true", "train.fused_optimizer=true", f"train.compile={str(compiled).lower()}"])
    record = run(to_spec(cfg), tmp_path / "run")
    assert record.status == "completed", record.error
    (row,) = read_history(tmp_path / "run")
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"]) and row["top1"] > 0


@pytest.mark.slow  # trains two epochs straight, and again stopped and resumed
@pytest.mark.parametrize("device", [ON_CUDA])
def test_a_cuda_checkpoint_resumes_to_the_same_next_epoch(tmp_path, monkeypatch, request, interrupt_at_epoch, device):
    """Stopped after epoch 1 and resumed from checkpoint.pt, epoch 2's mean loss is the uninterrupted run's within
    1% (relative). Deterministic kernels are asked for (warn_only: an op without one warns) and cuDNN's autotuning
    is off, so what is left is a kernel that is still not bit-reproducible from run to run."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    request.addfinalizer(lambda: torch.use_deterministic_algorithms(False))
    overrides = [*TINY, "train.epochs=2", "train.warmup_epochs=1", "train.cudnn_benchmark=false"]
    run(to_spec(compose(overrides)), tmp_path / "straight")
    with monkeypatch.context() as m:
        interrupt_at_epoch(2, m)
        with pytest.raises(KeyboardInterrupt):
            run(to_spec(compose(overrides)), tmp_path / "resumed")
    assert len(read_history(tmp_path / "resumed")) == 1
    assert run(to_spec(compose(overrides)), tmp_path / "resumed").status == "completed"
    straight, resumed = (read_history(tmp_path / name)[1] for name in ("straight", "resumed"))
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-2)


@pytest.mark.parametrize("device", [ON_CUDA])
def test_the_memory_check_is_a_lower_bound_of_a_bf16_step(device):
    """_check_fits refuses what min_train_bytes says cannot fit: under bf16 autocast the residual stream stays fp32,
    so the bound counts it at 4 bytes; it must stay below what a real step's activations take (at most 4x below)."""
    cfg = compose(["data.img_size=224", "train.batch_size=32"])
    model = build_model(cfg, 1000).cuda()
    x, y = torch.randn(32, 3, 224, 224, device="cuda"), torch.randint(0, 1000, (32,), device="cuda")
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    activations = torch.cuda.max_memory_allocated() - before
    bound = min_train_bytes(to_spec(cfg), 2)
    assert bound <= activations <= 4 * bound, (bound, activations)


# --- pooling ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("pool_size", [3, 5, 7, 9])
@pytest.mark.parametrize("device", [ON_CUDA])
def test_each_pooling_kernel_equals_avg_pool2d_on_cuda(device, pool_size, implementation):
    """Forward and backward in fp32, to 1e-5 (CUDA sums each window in its own order)."""
    torch.manual_seed(pool_size)
    x = torch.randn(4, 64, 56, 56, device=device, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    grad = torch.randn_like(x)
    box_pool(x, pool_size, implementation).backward(grad)
    ref = nn.AvgPool2d(pool_size, 1, pool_size // 2, count_include_pad=False)(x_ref)
    ref.backward(grad)
    torch.testing.assert_close(box_pool(x.detach(), pool_size, implementation), ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)


# --- data paths: the GPU's batches against the CPU's -----------------------------------------------------------------

def _tensor_set(n: int = 40) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))


@pytest.mark.parametrize("off_device", [False, True], ids=["on-device", "host"])
@pytest.mark.parametrize("device", [ON_CUDA])
def test_tensor_batches_on_cuda_are_the_cpu_batches(monkeypatch, device, off_device):
    """Exactly equal for the same sampler: a gather moves bits. A set too large for the GPU stays in host memory and
    each batch is copied over (from pinned memory, on a side stream)."""
    data = _tensor_set()
    cpu = list(TensorBatches(data, range(len(data)), 8, False, torch.device("cpu")))
    if off_device:
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (0, 0))
    batches = TensorBatches(data, range(len(data)), 8, False, torch.device(device))
    assert batches.home.type == ("cpu" if off_device else "cuda")
    for (x, y), (x_cpu, y_cpu) in zip(batches, cpu, strict=True):
        assert x.device.type == y.device.type == "cuda"
        assert torch.equal(x.cpu(), x_cpu) and torch.equal(y.cpu(), y_cpu)


def _dali_val(root: Path, device: torch.device):
    from ablate.data import build_data
    from ablate.data.loaders import build_loaders
    cfg = to_spec(compose(["data=folder", f"data.root={root}", "data.loader=dali", "data.img_size=32",
                           "train.batch_size=2"]))
    return build_loaders(cfg, build_data(cfg), device)[1]


@pytest.mark.parametrize("device", ["cpu", ON_CUDA])
def test_dali_batches_stay_intact_after_dali_moves_on(photo_tree, device):
    """Each batch is copied out of DALI's buffer before DALI reuses it: batches kept until the end of the epoch equal
    copies taken as they came (the CPU twin runs the same check on DALI's CPU pipeline)."""
    _dali()
    val = _dali_val(photo_tree(classes=3, val_per_class=4), torch.device(device))
    kept, copies = [], []
    for x, _ in val:
        kept.append(x)
        copies.append(x.clone())
    assert len(kept) == len(val) > 2 and all(x.device.type == torch.device(device).type for x in kept)
    assert all(torch.equal(x, c) for x, c in zip(kept, copies))


@pytest.mark.parametrize("device", [ON_CUDA])
def test_dali_gpu_val_batches_are_its_cpu_batches_within_decoding_differences(photo_tree, device):
    """Stated difference: nvJPEG on the GPU and libjpeg-turbo on the CPU decode (and resize) with different rounding,
    so val batches (deterministic: resize and centre crop) agree to a mean absolute difference under 0.02 of the
    normalised range, not bit for bit; labels agree exactly. Train batches draw their augmentations from different
    generators on each device, so they are not compared."""
    _dali()
    root = photo_tree(classes=3, val_per_class=4)
    for (x, y), (x_cpu, y_cpu) in zip(_dali_val(root, torch.device("cuda")), _dali_val(root, torch.device("cpu")),
                                      strict=True):
        assert torch.equal(y.cpu(), y_cpu)
        assert (x.cpu() - x_cpu).abs().mean() < 0.02


# --- distributed -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", [ON_CUDA])
def test_nccl_initialises_at_world_size_1(monkeypatch, device):
    """The process group init_distributed joins under torchrun (env://, NCCL on CUDA), at world size 1, and the
    collectives the trainer uses."""
    import torch.distributed as dist
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    dist.init_process_group("nccl", device_id=torch.device("cuda", torch.cuda.current_device()))
    try:
        assert dist.get_backend() == "nccl" and dist.get_world_size() == 1
        t = torch.arange(4.0, device="cuda")
        dist.all_reduce(t)
        parts = [torch.empty_like(t)]
        dist.all_gather(parts, t)
        assert parts[0].tolist() == [0.0, 1.0, 2.0, 3.0]
    finally:
        dist.destroy_process_group()


# --- validation ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", [ON_CUDA])
def test_validation_waits_for_the_gpu_once_per_evaluation_not_per_batch(device):
    """CUDA's sync debug mode warns at every host sync: evaluating 2 and 10 batches gives the same count (after one
    evaluation that warms up cuDNN and the caching allocator)."""
    model = build_model(compose(["model=xs", "data.img_size=32"]), 10).cuda()
    amp = torch.autocast("cuda", dtype=torch.bfloat16)

    def syncs(batches: int) -> int:
        data = TensorDataset(torch.randn(8 * batches, 3, 32, 32), torch.randint(0, 10, (8 * batches,)))
        loader = TensorBatches(data, range(8 * batches), 8, False, torch.device("cuda"))
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                metrics, _ = evaluate(model, loader, torch.device("cuda"), Dist(), amp)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        assert 0 <= metrics["top1"] <= 100
        return sum("synchroniz" in str(w.message) for w in caught)

    syncs(2)
    assert syncs(10) == syncs(2)
