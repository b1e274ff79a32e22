"""Bad values stop before any work, with one line naming the key and the allowed values."""
import json
import re
import subprocess
import sys

import pytest

from ablate import ConfigError, compose


@pytest.mark.parametrize("overrides,message", [
    (["mixer=foo"], "mixer='foo' is not one of: attention, avgpool, dwconv, identity, pooling"),
    (["norm=layernorm"], "norm='layernorm' is not one of: bn, ln, mln, none"),
    (["act=tanh"], "act='tanh' is not one of"),
    (["model=s13"], "model='s13' is not one of"),
    (["pool_size=4"], "pool_size=4 must be an odd positive integer"),
    (["pool_size=0"], "pool_size=0 must be an odd positive integer"),
    (["pool_size=-3"], "pool_size=-3 must be an odd positive integer"),
    (["pool_size=three"], "pool_size='three' must be an odd positive integer"),
    (["residual=maybe"], "residual='maybe' must be true or false"),
    (["channel_mlp=1"], "channel_mlp=1 must be true or false"),
    (["stage_mixers=[pooling,attention]"], "stage_mixers=.* must be null or a list of 4 mixer names"),
    (["stage_mixers=[pooling,pooling,pooling,foo]"], "mixer='foo' is not one of"),
    (["train.epochs=0"], "train.epochs=0 must be a positive integer"),
    (["data.img_size=16"], "data.img_size=16 must be an integer"),
    (["data=imagenet100"], r"data=imagenet100 needs data.root=PATH \(see conf/data/imagenet100.yaml\)"),
    (["data=folder", "data.root=/no/such/dir"], "data.root=/no/such/dir: no such directory"),
])
def test_compose_rejects(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(overrides)


def test_defaults_are_the_paper_baseline():
    cfg = compose()
    assert (cfg.model.name, cfg.mixer.name, cfg.pool_size, cfg.norm.name, cfg.act.name) == ("s12", "pooling", 3,
                                                                                           "mln", "gelu")
    assert cfg.residual and cfg.channel_mlp and cfg.stage_mixers is None
    assert cfg.data.name == "digits" and not cfg.wandb.enabled


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ablate", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args,message", [
    (["mixer=foo"], "error: mixer='foo' is not one of: attention, avgpool"),
    (["-m", "mixer=pooling,foo"], "error: mixer='foo' is not one of"),
    (["pool_size=4"], "error: pool_size=4 must be an odd positive integer"),
    (["residual=maybe"], "error: residual='maybe' must be true or false"),
    (["-m", "pool_size=3,4"], "pool_size=4 must be an odd positive integer"),
])
def test_cli_stops_before_training(tmp_path, args, message):
    out = _cli(*args, "hydra.run.dir=run", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert out.returncode != 0
    assert message in out.stderr
    assert "epoch" not in out.stdout + out.stderr  # nothing trained
    assert not list(tmp_path.rglob("results.json"))


@pytest.mark.slow
@pytest.mark.parametrize("root,message", [
    ("/no/such/dir", "data.root=/no/such/dir: no such directory"),
    ("EMPTY", "no train/ folder"),  # an empty data root: refused, not a `failed` run
])
def test_a_run_refused_before_any_work_leaves_nothing_on_disk(tmp_path, root, message):
    work, empty = tmp_path / "work", tmp_path / "empty"
    work.mkdir()
    empty.mkdir()
    out = _cli("data=folder", f"data.root={empty if root == 'EMPTY' else root}", cwd=work)
    assert out.returncode != 0 and message in out.stderr, out.stderr[-2000:]
    assert not list(work.iterdir()) and not list(empty.iterdir())  # no outputs/<date>/<time>/, no ablate.log


@pytest.mark.slow
def test_a_runs_last_line_is_bare_with_status_top1_time_and_relative_record_path(tmp_path):
    out = _cli("model=xs", "train.epochs=1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"completed: top-1 (\d+\.\d\d)% in \d+ s; record: (outputs/[^ ]+/results\.json)", last)
    assert match, last
    record = json.loads((tmp_path / match[2]).read_text())
    assert f"{record['top1']:.2f}" == match[1] and record["status"] == "completed"


def test_row_designs_are_kept_in_the_cache_and_composed_again_when_an_input_changes(tmp_path, monkeypatch):
    """A run names itself from the Table 5 rows' designs; a start reads them from the cache folder instead of
    composing 18 configs, and only while every config file is as it was."""
    import shutil

    from ablate.config import design
    from ablate.config.checks import CONF_DIR
    from ablate.reference import table5

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    design._row_designs.cache_clear()
    composed = design._row_designs()
    assert [r for r, _ in composed] == list(table5.rows())
    assert dict(composed)["pool5"] == design.design(compose(["+sweep/table5=pool5"]))
    (kept,) = (tmp_path / "cache/ablate").glob("table5-designs-*.json")
    for text in (None, "{garbled"):  # read back as composed; a garbled file is composed again
        if text is not None:
            kept.write_text(text)
        design._row_designs.cache_clear()
        assert design._row_designs() == composed
    assert json.loads(kept.read_text()) == [[r, d] for r, d in composed]

    key = design._inputs_key()
    conf = shutil.copytree(CONF_DIR, tmp_path / "conf")
    monkeypatch.setattr(design, "CONF_DIR", conf)
    assert design._inputs_key() == key  # the same files, elsewhere
    (conf / "sweep/table5/pool5.yaml").write_text("# @package _global_\npool_size: 7\n")
    assert design._inputs_key() != key
    design._row_designs.cache_clear()
