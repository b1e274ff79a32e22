"""The prepare command: a bounded-size JPEG copy of a class-folder tree, rerunnable, never touching the source."""
import hashlib
from pathlib import Path

import pytest
from fake_images import photo
from PIL import Image

from ablate import compose
from ablate.config.spec import to_spec
from ablate.data import build_data
from ablate.data.imagenet100 import link_class
from ablate.data.prepare import main as prepare


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def source_tree(root: Path) -> Path:
    """train/ and val/ with a large JPEG, a small one, a PNG and a grey JPEG per class; train/b is a symlink."""
    for split in ("train", "val"):
        for name in ("a", "b"):
            folder = root / ("store" if split == "train" and name == "b" else split) / name
            folder.mkdir(parents=True)
            photo(1, (500, 375)).save(folder / "big.JPEG", quality=90)
            photo(2, (200, 150)).save(folder / "small.jpg", quality=90)
            photo(3, (640, 400)).save(folder / "drawing.png")
            photo(4, (240, 200)).convert("L").save(folder / "grey.jpeg")
    link_class(root / "store" / "b", root / "train" / "b")  # as the ImageNet-100 builder links class folders
    return root


def test_prepare_bounds_the_shorter_side_and_is_rerunnable(tmp_path, capsys):
    src = source_tree(tmp_path / "src")
    before = digest(src)
    out = tmp_path / "fast"
    assert prepare(["--src", str(src), "--out", str(out), "--short-side", "256", "--workers", "2"]) == 0
    assert "8 resized, 4 re-encoded, 4 copied, 0 kept" in capsys.readouterr().out
    sizes = {p.relative_to(out).as_posix(): Image.open(p).size for p in out.rglob("*") if p.is_file()}
    assert sizes["train/b/big.JPEG"] == (341, 256) and sizes["val/a/drawing.png.jpg"] == (410, 256)
    assert sizes["train/a/small.jpg"] == (200, 150) and sizes["val/b/grey.jpeg"] == (240, 200)
    assert len(sizes) == 16 and all(Image.open(p).format == "JPEG" for p in out.rglob("*.*"))
    assert (out / "val/a/small.jpg").read_bytes() == (src / "val/a/small.jpg").read_bytes()  # small JPEGs: copied
    assert Image.open(out / "val/b/grey.jpeg").mode == "RGB"
    assert not list(out.rglob(".*"))  # no .part files left
    copy = digest(out)
    assert prepare(["--src", str(src), "--out", str(out), "--short-side", "256", "--workers", "1"]) == 0
    assert "0 resized, 0 re-encoded, 0 copied, 16 kept" in capsys.readouterr().out
    assert digest(out) == copy and digest(src) == before
    bundle = build_data(to_spec(compose(["data=folder", f"data.root={out}", "data.img_size=32"])))
    assert (bundle.num_classes, len(bundle.train), len(bundle.val)) == (2, 8, 8)


def test_prepare_resumes_a_partial_copy_and_reports_unreadable_files(tmp_path, capsys):
    src = source_tree(tmp_path / "src")
    (src / "val/a/broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "fast"
    (out / "val/a").mkdir(parents=True)
    (out / "val/a/.big.JPEG.part").write_bytes(b"half")  # left by a run that was killed
    (out / "val/a/big.JPEG").write_bytes(b"done")  # written (atomically) by that run: kept as it is
    assert prepare(["--src", str(src), "--out", str(out), "--workers", "2"]) == 1
    captured = capsys.readouterr()
    assert f"1 unreadable image(s) not copied: {src / 'val/a/broken.jpg'}" in captured.err
    assert "1 kept" in captured.out and (out / "val/a/big.JPEG").read_bytes() == b"done"
    assert not (out / "val/a/broken.jpg").exists()


@pytest.mark.parametrize("where", ["inside", "link"])
def test_prepare_refuses_to_write_into_the_source(tmp_path, capsys, where):
    src = source_tree(tmp_path / "src")
    before = digest(src)
    out = src / "copy" if where == "inside" else tmp_path / "links"
    if where == "link":  # an ImageNet-100 link tree as --out would write through its links into ImageNet
        (out / "train").mkdir(parents=True)
        link_class(src / "train" / "a", out / "train" / "a")
    assert prepare(["--src", str(src), "--out", str(out)]) == 2
    assert ("overlap" if where == "inside" else "is a link") in capsys.readouterr().err
    assert digest(src) == before
