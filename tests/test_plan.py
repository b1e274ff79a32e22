"""The sweep plan (ablate.plan) and the same-function check (ablate.model.equivalence)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ablate.config import compose
from ablate.config.spec import to_spec
from ablate.model import MetaFormer
from ablate.model.build import model_args
from ablate.model.equivalence import same_function, warning_line
from ablate.model.pooling import box_pool
from ablate.plan.plan import parallel_wall
from ablate.record import RunRecord, write_record
from ablate.reference import table5
from ablate.report.build import build_report

XS = {"depths": [1, 1, 3, 1], "dims": [32, 64, 128, 256]}


def designs(rows, img_size, model="xs"):
    out = {}
    for row in rows:
        args = model_args(to_spec(compose([f"+sweep/table5={row}", f"model={model}", f"data.img_size={img_size}"])))
        args.pop("img_size")
        out[row] = args
    return out


def stage_outputs(design: dict, img_size: int, weights: dict | None = None) -> tuple[list[torch.Tensor], dict]:
    """Every stage's output on one fixed input, in float64, with ``weights`` loaded where name and shape match
    (the test's own way: load_state_dict, not the module's shared-by-name draw)."""
    torch.manual_seed(0)
    model = MetaFormer.from_names(**design, img_size=img_size).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_()
    if weights is not None:
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in weights.items() if k in own and own[k].shape == v.shape},
                              strict=False)
    x = torch.randn(2, 3, img_size, img_size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    outs, h = [], model.stem(x)
    with torch.no_grad():
        for stage in model.stages:
            outs.append(stage(h))
            h = outs[-1]
    return outs, model.state_dict()


@pytest.mark.slow  # builds and compares models in float64, and searches the size that tells them apart
def test_rows_flagged_equal_have_identical_stage_outputs_with_shared_weights():
    found = same_function(designs(["baseline", "pool9"], 32), 32)
    assert [(e.rows, e.stages) for e in found] == [(("baseline", "pool9"), (3, 4))]
    base, weights = stage_outputs(designs(["baseline"], 32)["baseline"], 32)
    pool9, _ = stage_outputs(designs(["pool9"], 32)["pool9"], 32, weights)
    # Stages 1-2 differ, so the inputs of stages 3-4 differ too: feed both the baseline's stage-2 output.
    model = MetaFormer.from_names(**designs(["pool9"], 32)["pool9"], img_size=32).double().eval()
    model.load_state_dict(weights)
    with torch.no_grad():
        assert torch.equal(model.stages[2](base[1]), base[2]) and torch.equal(model.stages[3](base[2]), base[3])
    assert not torch.allclose(pool9[0], base[0])  # and stage 1 is not flagged: it differs


def test_the_whole_grid_rule_agrees_with_the_computation():
    # A k×k pool sees the whole g×g grid from every position exactly when k ≥ 2g − 1.
    for g in range(1, 6):
        x = torch.randn(1, 2, g, g, dtype=torch.float64)
        for k in (3, 5, 7, 9):
            whole = torch.allclose(box_pool(x, k, "direct"), x.mean((-2, -1), keepdim=True).expand_as(x))
            assert whole == (k >= 2 * g - 1), (g, k)


@pytest.mark.slow  # four models at 224 px in float64
def test_unflagged_rows_differ_and_224_px_flags_nothing():
    assert same_function(designs(["baseline", "pool9", "identity", "random"], 224), 224) == []
    base, weights = stage_outputs(designs(["baseline"], 224)["baseline"], 224)
    pool9, _ = stage_outputs(designs(["pool9"], 224)["pool9"], 224, weights)
    assert all(not torch.allclose(a, b) for a, b in zip(base, pool9))


@pytest.mark.slow  # four models in float64, and the search
def test_a_1x1_grid_makes_pooling_zero_and_the_random_matrix_the_identity():
    found = same_function(designs(["baseline", "identity", "random", "dwconv"], 32), 32)
    text = warning_line(found, 32)
    assert "identity = random in stage 4 (apart from data.img_size=35)" in text
    assert "dwconv" not in text and text.count(";") == 0  # one line, one finding


@pytest.mark.slow  # every Table 5 row, built and compared at 32 and at 224 px
def test_table5_at_32_px_warns_of_stages_3_and_4_and_at_224_px_not():
    found = {(frozenset(e.rows), e.stages): e.apart_from for e in same_function(designs(list(table5.rows()), 32), 32)}
    assert found == {(frozenset({"pool7", "pool9"}), (2,)): 35,
                     (frozenset({"baseline", "pool5", "pool7", "pool9"}), (3,)): 67,
                     (frozenset({"baseline", "ln", "pool5", "pool7", "pool9"}), (4,)): 131,
                     (frozenset({"identity", "random"}), (4,)): 35}
    assert same_function(designs(list(table5.rows()), 224), 224) == []


def test_parallel_wall_is_the_last_slot_to_finish():
    assert parallel_wall([3, 1, 1, 1], 2) == 3
    assert parallel_wall([1, 1, 1], 1) == 3


def plan_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ablate.plan", "-m", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow  # builds and times two models
def test_plan_lists_jobs_skips_and_resumes_and_warns(tmp_path):
    sweep = tmp_path / "sweep"
    done = sweep / "baseline,model=xs,train.batch_size=8/seed=1"
    write_record(done, RunRecord("Baseline", "PoolFormer-S12", "baseline", status="completed", epochs_done=10))
    (sweep / "pool9,model=xs,train.batch_size=8/seed=0").mkdir(parents=True)
    (sweep / "pool9,model=xs,train.batch_size=8/seed=0/checkpoint.pt").write_bytes(b"")
    out = plan_cli("+sweep/table5=baseline,pool9", "model=xs", "seed=0,1", "train.batch_size=8", "--steps", "1",
                   f"hydra.sweep.dir={sweep}", "--save", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "4 jobs; a run now would start 2, skip 1 (completed) and resume 1 (checkpoint)" in out.stdout
    assert "warning: same function at data.img_size=32" in out.stdout and "baseline = pool9 in stages 3-4" in out.stdout
    plan = json.loads((sweep / "plan.json").read_text())
    assert [j["state"] for j in plan["jobs"]] == ["new", "skip", "resume", "new"]
    assert all(j["projected_s"] > 0 for j in plan["jobs"]) and plan["jobs"][1]["left_s"] == 0
    assert plan["totals"]["serial_s"] == pytest.approx(sum(j["left_s"] for j in plan["jobs"]))


@pytest.mark.slow  # the CLI end to end
def test_plan_reads_speeds_from_a_file_and_rejects_a_bad_one(tmp_path):
    bad = tmp_path / "speeds.txt"
    bad.write_text("nothing here\n")
    out = plan_cli("+sweep/table5=baseline", "--speeds", str(bad), cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.strip().startswith("error: --speeds") and "Traceback" not in out.stderr


def test_the_report_marks_equal_rows_and_sets_the_plan_beside_the_runs(tmp_path):
    sweep = tmp_path / "sweep"
    for row, variant, wall in (("baseline", "PoolFormer-S12", 90.0), ("pool9", "Pooling size 3 → 9", 110.0)):
        write_record(sweep / row / "seed=0", RunRecord(
            table5.row(row).group, variant, row, is_baseline=row == "baseline", status="completed", top1=90.0,
            wall_s=wall, epochs=1, epochs_done=1, started_at="2026-01-01T00:00:00+00:00",
            updated_at="2026-01-01T00:05:00+00:00"))
    equal = {"rows": ["baseline", "pool9"], "stages": [3, 4], "img_size": 32, "apart_from": 131, "searched_to": 131}
    plan = {"jobs": [{"run_dir": f"{row}/seed=0", "row": row, "projected_s": 100.0} for row in ("baseline", "pool9")],
            "equivalences": [equal]}
    (sweep / "plan.json").write_text(json.dumps(plan))
    md = build_report([sweep], tmp_path / "report").read_text()
    assert "| Pooling size 3 → 9 ≡ |" in md
    assert "stages 3, 4 at data.img_size=32 (apart from data.img_size=131)" in md
    assert "Ties equal by construction in part:" in md
    assert "2 completed run(s): 200 s of training and evaluation, 200 s projected (took / projected = 1.00)" in md
    assert "| pool9/seed=0 | 100 | 110 | 1.10 |" in md


def test_a_sweep_start_plan_told_not_to_measure_projects_no_times(tmp_path):
    from ablate.plan.jobs import sweep_config
    from ablate.plan.plan import sweep_start_plan
    config = sweep_config(["-m", "pool_size=3,5", "model=xs", f"hydra.sweep.dir={tmp_path}"])
    plan = sweep_start_plan(config, "python -m ablate -m pool_size=3,5 model=xs", measure=False)
    assert plan.speeds_from == "not measured" and all(m["train_img_s"] is None for m in plan.models.values())
    assert [j["projected_s"] for j in plan.jobs] == [None, None] and plan.totals["serial_s"] is None
    assert "pool_size=3 = pool_size=5 in stages 3-4" in plan.warning  # the same-function check still runs
