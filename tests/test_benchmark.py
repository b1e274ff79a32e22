"""benchmarks/: the memory-traffic count behind the bound, and the throughput script end to end."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ablate import build_model, compose
from ablate.model.metaformer import stage_grids

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from bound import bandwidth_tbs, count_traffic, moved_bytes  # noqa: E402


def test_moved_bytes_counts_reads_and_writes_but_not_views_or_broadcasts():
    x = torch.randn(1000)
    assert moved_bytes(lambda: x.relu()) == 2 * 4000
    assert moved_bytes(lambda: x.view(10, 100).t()) == 0
    assert moved_bytes(lambda: x + torch.ones(()).expand(1000)) == 4000 + 4 + 4000 + 4  # ones() writes 4 B
    assert moved_bytes(lambda: x.to(torch.bfloat16)) == 4000 + 2000


def test_traffic_counts_the_block_inputs_and_one_training_step():
    cfg = compose(["model=xs", "data.img_size=64"])
    grids = stage_grids(64, 4)
    expected = sum(depth * dim * h * w for depth, dim, (h, w) in zip(cfg.model.depths, cfg.model.dims, grids))
    t = count_traffic(build_model(cfg, 10), torch.randn(2, 3, 64, 64), torch.tensor([0, 1]), torch.float32)
    assert t.activations_per_image == expected
    assert 20 < t.passes < 1000 and t.bound(1.0) == pytest.approx(1e12 / t.bytes_per_image)


@pytest.mark.parametrize("name, tbs", [("NVIDIA H100 80GB HBM3", 3.35), ("NVIDIA H100 PCIe", 2.0),
                                       ("NVIDIA H200", 4.8), ("NVIDIA GH200 480GB", 4.0),
                                       ("NVIDIA A100-SXM4-80GB", 2.039), ("Tesla T4", 0.32), ("Some GPU", None)])
def test_bandwidth_by_device_name(name, tbs):
    assert bandwidth_tbs(name) == tbs


@pytest.mark.slow
def test_throughput_script_runs_on_the_cpu():
    out = subprocess.run([sys.executable, str(BENCHMARKS / "throughput.py"), "--img-size", "32", "--batch", "2",
                          "--steps", "1", "--rounds", "1", "--sections", "pooling,rows", "--rows", "baseline,pool9",
                          "--no-compile", "--bandwidth", "1", "--device", "cpu", "--threads", "1"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = {line[:40].strip(): line[40:].split() for line in out.stdout.splitlines() if not line.startswith("#")}
    assert lines["timm, eager"][1] == "1.00" and lines["ours, recipe defaults"][2] == "1.00"
    assert {"pool9, direct", "pool9, separable", "pool9, conv", "pool9"} <= set(lines)
    assert "failed" not in out.stdout and "% bound" in out.stdout
