"""A plain (not editable) install works from any folder: the wheel carries conf/ and sweeps/, and the CLI finds them."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sweep_args import NO_PLAN_TIMES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # From a clean copy: pip builds in the source tree (build/, *.egg-info), where two builds at once (pytest -n)
    # would trip over each other, and a stale build/ could slip deleted files into the wheel.
    source = shutil.copytree(REPO, out / "source", symlinks=True,
                             ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__"))
    # No build isolation: the build backend (setuptools) is already installed, and nothing is fetched.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True, timeout=300)
    return next(out.glob("ablate-*.whl"))


def test_the_wheel_holds_every_config_and_row_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for tree, prefix in ((REPO / "conf", "ablate/conf"), (REPO / "sweeps", "ablate/conf/sweep")):
        for path in tree.rglob("*.yaml"):
            if "sweep" not in path.relative_to(tree).parts[:1]:  # conf/sweep is the link to sweeps/
                assert f"{prefix}/{path.relative_to(tree).as_posix()}" in names
    assert {"ablate/reference/table5.csv", "ablate/reference/imagenet100_wnids.txt"} <= names


@pytest.mark.slow
def test_an_installed_copy_trains_and_sweeps_from_another_folder(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip install puts into site-packages
    env = {**os.environ, "PYTHONPATH": str(site)}
    work = tmp_path / "elsewhere"
    work.mkdir()

    def ablate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ablate", *args, "model=xs", "train.epochs=1"], cwd=work,
                              env=env, capture_output=True, text=True, timeout=600)

    one = ablate("hydra.run.dir=one")
    assert one.returncode == 0, one.stderr[-2000:]
    record = json.loads((work / "one" / "results.json").read_text())
    assert record["status"] == "completed" and record["top1"] > 0
    assert f"completed: top-1 {record['top1']:.2f}%" in one.stdout and "record: one/results.json" in one.stdout
    sweep = ablate("-m", "+sweep=table5", "+sweep/table5=identity", "hydra.sweep.dir=sweep", NO_PLAN_TIMES)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    assert (work / "sweep" / "report" / "table.md").is_file()
    # The installed copy ran, not the checkout.
    probe = subprocess.run([sys.executable, "-c", "import ablate; print(ablate.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip().startswith(str(site))
