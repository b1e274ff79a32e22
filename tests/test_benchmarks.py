"""benchmarks/: every script run end to end at a tiny CPU size (so none can rot unnoticed), the memory-traffic count
behind the bound, the workload sizes, the results files' header, and the one GPU command in its CPU mode."""
import contextlib
import io
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch

from ablate import build_model, compose

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import default_run  # noqa: E402
import gpu_setup  # noqa: E402
import loader  # noqa: E402
import throughput  # noqa: E402
from bound import bandwidth_tbs, count_traffic, moved_bytes  # noqa: E402
from header import header  # noqa: E402
from workload import table5  # noqa: E402

TINY = ["--img-size", "32", "--batch", "2", "--steps", "1"]  # what gpu.sh --cpu passes too
HEADER = ("# command: ", "# commit: ", "# GPU: ", "# CPU: ", "# python ", "# date: ")


def stdout_of(main, argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(argv)
    return out.getvalue()


def table(text: str, width: int) -> dict[str, list[str]]:
    """Each row of a benchmark's table by its case label (the first ``width`` characters)."""
    return {line[:width].strip(): line[width:].split() for line in text.splitlines() if not line.startswith("#")}


# --- the scripts, end to end -----------------------------------------------------------------------------------------

@pytest.mark.slow  # trains: timed optimiser steps of timm's S12 and ours, each case warmed up first
def test_throughput_runs_at_a_tiny_size():
    out = stdout_of(throughput.main, [*TINY, "--rounds", "1", "--no-compile", "--device", "cpu", "--threads", "1",
                                      "--sections", "step,rows", "--rows", "baseline,pool9", "--bandwidth", "1"])
    rows = table(out, 40)
    assert rows["timm, eager"][1] == "1.00" and rows["ours, recipe defaults"][2] == "1.00" and "pool9" in rows
    assert "failed" not in out and "% bound" in out
    assert "# goal: pool 9 ≥ 0.95× pool 3" in out and "# goal: ours ≥ 2× timm eager" in out
    assert "# Table 5 on ImageNet-100, model only:" in out and "18 rows (sweeps/table5/)" in out


def test_throughput_times_each_pooling_kernel_at_each_pool_size_and_compiled_only_where_asked():
    recipe = throughput.recipe_setting(cuda=False)
    sections = throughput.cases(recipe, cuda=False, compiled=False, sections=["step", "pooling"], rows=[])
    assert list(sections) == ["references", "pool size 3 (baseline), 5, 7 and 9, each pooling implementation, "
                                            "recipe defaults"]  # step holds compiled cases only
    pooling = sections[list(sections)[1]]
    assert set(pooling) == {f"pool {k}, {impl}" for k in (3, 5, 7, 9) for impl in ("direct", "separable", "conv")}
    compiled = throughput.cases(recipe, cuda=True, compiled=True, sections=["step"],
                                rows=[])["ours and timm, compiled"]
    assert {s.compile for s in compiled.values()} == {"default"} and {s.row for s in compiled.values()} == {
        "timm", "baseline"}


@pytest.mark.parametrize("train", [pytest.param(False, id="loaders-only"), pytest.param(True, marks=pytest.mark.slow)])
def test_loader_measures_each_loader_side_by_side_and_skips_what_cannot_run(monkeypatch, train):
    """Each loader alone (and, slow: the model alone and the trainer end to end); a loader this machine lacks is
    listed as skipped, with its reason (DALI's own paths are left to test_dali.py and gpu.sh, to keep this short)."""
    absent = loader.Loader("absent", "absent", missing=lambda: "not installed here")
    monkeypatch.setattr(loader, "LOADERS", [loader.LOADERS[0], absent])
    out = stdout_of(loader.main, [*TINY, "--images", "20", "--model", "xs", "--workers", "0", "--original-only",
                                  "--cpu", *([] if train else ["--loaders-only"])])
    rows = table(out, 46)
    assert float(rows["loader only: torch DataLoader"][0]) > 0
    assert rows["loader only: absent"] == ["skipped:", "not", "installed", "here"]
    if train:
        assert float(rows["model only"][0]) > 0 and float(rows["end to end: torch DataLoader"][0]) > 0
        assert rows["end to end: absent"] == rows["loader only: absent"]
        assert "# goal: end to end ≥ 0.90 × model only" in out and "# goal: Table 5 on ImageNet-100" in out


def test_a_gpu_loader_is_skipped_without_cuda_and_trained_end_to_end_with_it():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [x.label for x in loader.LOADERS if loader.why_not(x, cpu) == "needs CUDA"] == ["dali on the GPU"]
    store = "batched, pixel store"
    assert [x.label for x in loader.trainer_loaders(cpu)] == ["torch DataLoader", "dali on the CPU", store]
    assert [x.label for x in loader.trainer_loaders(cuda)] == ["torch DataLoader", "dali on the GPU", store]


@pytest.mark.slow
def test_default_run_writes_its_figures_under_a_header(tmp_path):
    out = tmp_path / "default-run.txt"
    with contextlib.redirect_stdout(io.StringIO()):
        default_run.main(["--out", str(out), "model=xs", "data.img_size=32", "train.epochs=1"])
    text = out.read_text()
    assert text.startswith(HEADER[0]) and all(h in text for h in HEADER)
    assert "status completed, 1 epochs, digits (32 px), model xs" in text
    assert "val top-1" in text and "train img/s" in text and "peak memory" in text and "wall time" in text


# --- their parts -----------------------------------------------------------------------------------------------------

def _hours(text: str) -> float:
    """'18 h 37 min' or '52 min 10 s' (ablate.sweep.status.duration) in hours."""
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    return numbers[0] + numbers[1] / 60 if " h " in text else numbers[0] / 60 + numbers[1] / 3600


@pytest.mark.slow  # the plan builds every Table 5 model at 224 px for its params, MACs and same-function check
def test_node_plan_projects_table5_both_ways_from_a_results_file():
    out = subprocess.run([sys.executable, str(BENCHMARKS / "node_plan.py"),
                          str(BENCHMARKS / "results" / "throughput-s12-224-h200.txt"), "--gpus", "8", "--seeds", "3"],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.startswith("# python benchmarks/node_plan.py") and "A projection, not a measurement" in out
    models = out.split("\n\n")[1].splitlines()[1:]
    assert sorted(line.split()[0] for line in models) == sorted(table5().rows)
    assert "54 jobs; a run now would start 54" in out and "no two rows compute the same function" in out
    totals = next(line for line in out.splitlines() if line.startswith("one after another"))
    one, parallel = (_hours(part.split(": ")[1]) for part in totals.split("; ")[:2])
    assert one / 8 <= parallel < one  # 8 at once is at most 8× faster than one after another


@pytest.mark.slow  # trains (four tiny runs)
@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_recipe_paths_compares_both_paths_at_a_tiny_size(tmp_path):
    out = tmp_path / "paths.txt"
    subprocess.run([sys.executable, str(BENCHMARKS / "recipe_paths.py"), "--train", "20", "--val", "20", "--seeds",
                    "2", "--epochs", "1", "--batch", "4", "--out", str(out)], capture_output=True, text=True,
                   check=True, cwd=REPO, timeout=600)
    text = out.read_text()
    assert text.startswith("# command: python benchmarks/recipe_paths.py") and "difference of means" in text
    assert "PIL/timm DataLoader (tree)" in text and "batched (store)" in text


def test_header_names_command_commit_machine_versions_and_date():
    lines = header("python x.py --y").splitlines()
    assert [line[:len(h)] for line, h in zip(lines, HEADER)] == list(HEADER) and len(lines) == len(HEADER)
    assert lines[0] == "# command: python x.py --y" and "torch " in lines[4]


# The 18 rows of the paper's Table 5 (paper-notes.md §1a), by the names of their files in sweeps/table5/.
TABLE5_ROWS = ["baseline", "bn", "dwconv", "identity", "ln", "no_mlp", "no_norm", "no_residual", "pool5", "pool7",
               "pool9", "ppaa", "ppff", "pppa", "pppf", "random", "relu", "silu"]


def test_workload_comes_from_the_row_files_and_the_recipe():
    w = table5()
    assert w.rows == TABLE5_ROWS
    assert w.epochs == 100  # docs/config.md: train=imagenet100 is the paper's recipe for 100 epochs
    # ImageNet-100's 126,689 training images (CMC's class list; paper-notes.md §5): 18 × 100 × 126,689.
    assert w.images == 228_040_200
    assert w.gpu_hours({"baseline": 1000.0}) == pytest.approx(63.3445)  # 228,040,200 / 1,000 img/s / 3,600 s
    # One row (no_mlp) twice as fast: (17 + 1/2) × 100 × 126,689 / 1,000 / 3,600.
    assert w.gpu_hours({"baseline": 1000.0, "no_mlp": 2000.0}) == pytest.approx(61.584931)


def test_moved_bytes_counts_reads_and_writes_but_not_views_or_broadcasts():
    x = torch.randn(1000)
    assert moved_bytes(lambda: x.relu()) == 2 * 4000
    assert moved_bytes(lambda: x.view(10, 100).t()) == 0
    assert moved_bytes(lambda: x + torch.ones(()).expand(1000)) == 4000 + 4 + 4000 + 4  # ones() writes 4 B
    assert moved_bytes(lambda: x.to(torch.bfloat16)) == 4000 + 2000


def test_traffic_counts_the_block_inputs_and_one_training_step():
    cfg = compose(["model=xs", "data.img_size=64"])
    t = count_traffic(build_model(cfg, 10), torch.randn(2, 3, 64, 64), torch.tensor([0, 1]), torch.float32)
    # xs (conf/model/xs.yaml): depths 1, 1, 3, 1 at widths 32, 64, 128, 256; at 64 px the stages see 16², 8², 4²
    # and 2² tokens (strides 4, 8, 16, 32): 1·32·256 + 1·64·64 + 3·128·16 + 1·256·4 values a block takes in.
    assert t.activations_per_image == 8192 + 4096 + 6144 + 1024
    assert 20 < t.passes < 1000 and t.bound(1.0) == pytest.approx(1e12 / t.bytes_per_image)


@pytest.mark.parametrize("name, tbs", [("NVIDIA H100 80GB HBM3", 3.35), ("NVIDIA H100 PCIe", 2.0),
                                       ("NVIDIA H200", 4.8), ("NVIDIA GH200 480GB", 4.0),
                                       ("NVIDIA A100-SXM4-80GB", 2.039), ("Tesla T4", 0.32), ("Some GPU", None)])
def test_bandwidth_by_device_name(name, tbs):
    assert bandwidth_tbs(name) == tbs


# --- the one GPU command ----------------------------------------------------------------

def test_gpu_requirements_hold_pyprojects_ranges_and_their_carried_versions():
    """benchmarks/gpu-requirements.txt, as gpu_setup.py reads it: each dependency of pyproject that the GPU check needs
    at pyproject's range or a narrower one, and each carried wheel's version (wheelhouse.sh) inside its range."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name

    wanted = {canonicalize_name(name): spec for name, spec in gpu_setup.requirements().items()}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # The node's own; the report; tracking; the linter.
    left_out = {"torch", "torchvision", "pandas", "matplotlib", "wandb", "ruff"}
    for line in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name not in left_out:
            assert set(req.specifier) <= set(SpecifierSet(wanted[name])), name
    versions = {re.match(r"[\w.-]+", line)[0]: line.split("# carried: ")[1].split()[0].rstrip(",")
                for line in (BENCHMARKS / "gpu-requirements.txt").read_text().splitlines() if "# carried: " in line}
    assert "hydra-core" in versions and "scipy" not in versions  # what the node lacks; pure Python only
    for name, version in versions.items():
        assert SpecifierSet(wanted[canonicalize_name(name)]).contains(version), name


@pytest.mark.slow
def test_gpu_command_runs_every_part_on_the_cpu(tmp_path):
    """``bash benchmarks/gpu.sh OUTDIR --cpu``: the same parts as on a GPU, at tiny sizes (about 3 minutes on 2 busy
    cores: four interpreters, each importing torch, timm and Hydra), with this test's Python (--python). Without a
    wheelhouse, the set-up only checks that this Python meets benchmarks/gpu-requirements.txt."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = ["bash", str(BENCHMARKS / "gpu.sh"), str(tmp_path / "out"), "--cpu", "--python", sys.executable]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["kernels.txt", "loader.txt", "setup.txt", "step.txt", "summary.txt", "tests.txt"]
    for name in files:
        text = (tmp_path / "out" / name).read_text()
        assert all(h in text for h in HEADER), name
        assert text.startswith("# command: bash benchmarks/gpu.sh" if name in ("setup.txt", "summary.txt")
                               else f"# command: {sys.executable} "), name
    setup = (tmp_path / "out" / "setup.txt").read_text()
    assert re.search(rf"^hydra-core +>=1\.3\.2 +{re.escape(metadata.version('hydra-core'))} .* found$", setup, re.M)
    listed = [line for line in (BENCHMARKS / "gpu-requirements.txt").read_text().splitlines()
              if line.split("#")[0].strip()]
    assert f"# set-up: {len(listed)} found, 0 missing; " in setup  # every requirement met by this Python
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert [line.split()[:2] for line in summary.splitlines() if line.endswith(".txt")] == \
        [["setup", "ok"], ["tests", "ok"], ["step", "ok"], ["kernels", "ok"], ["loader", "ok"]]
    assert "# goal: pool 9 ≥ 0.95× pool 3" in summary and "# goal: end to end ≥ 0.90 × model only" in summary
    assert "skipped" in summary  # the gpu tests, saying so
