"""The real-data paths end to end through the CLI: ImageFolder trees and ImageNet-100. (Fashion-MNIST's images and
labels are checked where it is loaded, in test_data.py: the training loop is the one digits' runs test.)"""
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

WNIDS = sorted(resources.files("ablate.reference").joinpath("imagenet100_wnids.txt").read_text().split())
TINY = ["model=xs", "data.img_size=32", "train.epochs=1", "train.batch_size=8", "train.global_batch=null",
        "hydra.run.dir=run"]


def run_cli(cwd: Path, *args: str, module: str = "ablate") -> dict:
    out = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((cwd / "run/results.json").read_text()) if module == "ablate" else {}


@pytest.mark.slow
def test_folder_tree_trains_with_the_paper_recipe(tmp_path, image_tree):
    root = image_tree(["ant", "bee", "cow"], per_class=8)
    record = run_cli(tmp_path, "data=folder", f"data.root={root}", "train=paper", *TINY, "train.num_workers=2")
    assert record["status"] == "completed" and record["recipe"] == "paper"
    assert record["data_info"]["train_images"] == 24 and record["data_info"]["num_classes"] == 3


@pytest.mark.slow
def test_imagenet100_built_from_an_imagenet_tree_trains(tmp_path, image_tree):
    imagenet = image_tree(WNIDS + ["n99999999"], per_class=1, name="imagenet")
    run_cli(tmp_path, "--imagenet", str(imagenet), "--out", str(tmp_path / "in100"), module="ablate.data.imagenet100")
    record = run_cli(tmp_path, "data=imagenet100", f"data.root={tmp_path / 'in100'}", *TINY)
    assert record["status"] == "completed"
    info = record["data_info"]
    assert (info["num_classes"], info["train_images"], info["source"]) == (100, 100, "ImageNet-100 tree")
    assert info["class_list"] == "imagenet100_wnids.txt"
