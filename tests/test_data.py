"""The data package: loaders on tiny generated trees, the ImageNet-100 builder, the paper's transforms, errors."""
import gzip
import hashlib
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader

from ablate import compose
from ablate.config import CONF_DIR
from ablate.config.spec import to_spec
from ablate.data import build_data
from ablate.data.fashion_mnist import FILES, read_idx
from ablate.data.imagenet100 import class_list
from ablate.data.imagenet100 import main as build_imagenet100
from ablate.data.transforms import eval_transform, train_transform
from ablate.errors import ConfigError, UnreadableImageError

CLASS_LIST = "imagenet100_wnids.txt"
WNIDS = sorted(resources.files("ablate.reference").joinpath(CLASS_LIST).read_text().split())
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def data_cfg(name: str, root: Path | None, *overrides: str):
    return compose([f"data={name}", f"data.root={root if root is not None else 'null'}", "data.img_size=32",
                    *overrides])


# --- transforms ---------------------------------------------------------------------------------------------------

def test_paper_train_transform_honours_randaug_and_reprob():
    cfg = compose(["train.randaug=rand-m9-mstd0.5-inc1", "train.reprob=0.25", "train.color_jitter=0.4",
                   "data.img_size=32"])
    t = train_transform(to_spec(cfg))
    text = repr(t)
    assert "RandAugment" in text and "RandomErasing" in text and "RandomHorizontalFlip" in text
    assert "m=9, mstd=0.5" in text and "RandomErasing(p=0.25, mode=pixel" in text
    assert "scale=(0.08, 1.0)" in text and "interpolation=bilinear bicubic" in text  # timm's 'random'
    assert "ColorJitter" not in text  # timm drops it under RandAugment, as in the paper's runs
    assert t(Image.new("RGB", (50, 40))).shape == (3, 32, 32)


def test_posterize_at_the_top_magnitude_gives_a_black_image():
    # rand-m9-mstd0.5 clips the magnitude to 10 for 2% of draws, where timm asks PIL for 0 bits (Pillow 13 raises).
    cfg = compose(["train.randaug=rand-m10-inc1", "data.img_size=32"])
    ops = next(step.ops for step in train_transform(to_spec(cfg)).transforms if hasattr(step, "ops"))
    posterize = next(op for op in ops if op.name == "PosterizeIncreasing")
    posterize.prob = 1.0
    assert posterize(Image.new("RGB", (8, 8), (200, 100, 50))).getpixel((0, 0)) == (0, 0, 0)


def test_short_recipe_train_transform_has_no_heavy_augmentation():
    cfg = compose(["train.randaug=null", "train.reprob=0", "train.color_jitter=0.3", "data.img_size=32"])
    text = repr(train_transform(to_spec(cfg)))
    assert "RandAugment" not in text and "RandomErasing" not in text
    assert "ColorJitter" in text and "interpolation=bicubic)" in text


def test_eval_transform_resizes_by_crop_pct_then_centre_crops():
    cfg = compose(["data.img_size=224"])
    t = eval_transform(to_spec(cfg))
    assert f"size={int(224 / cfg.model.crop_pct)}" in repr(t) and "bicubic" in repr(t) and "CenterCrop" in repr(t)
    assert t(Image.new("RGB", (300, 260))).shape == (3, 224, 224)


# --- folder / imagenet ----------------------------------------------------------------------------------------------

def test_folder_loads_train_and_val_with_sorted_labels(image_tree):
    root = image_tree(["dog", "cat", "fox"], per_class=3)
    (root / "train" / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    bundle = build_data(to_spec(data_cfg("folder", root)))
    assert bundle.num_classes == 3 and bundle.train.classes == ["cat", "dog", "fox"]
    assert (len(bundle.train), len(bundle.val)) == (9, 9)
    assert bundle.info == {"root": str(root), "num_classes": 3, "train_images": 9, "val_images": 9, "verified": True,
                           "hidden_skipped": 1, "links_followed": 0, "links_refused": 0}
    x, y = next(iter(DataLoader(bundle.train, batch_size=4)))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.tolist() == [0, 0, 0, 1]
    assert bundle.val[8][0].shape == (3, 32, 32)


def test_imagenet_uses_the_same_loader_and_needs_1000_classes(image_tree, monkeypatch):
    root = image_tree(WNIDS[:3])
    with pytest.raises(ConfigError, match="train/ has 3 class folders, data=imagenet needs 1000"):
        build_data(to_spec(data_cfg("imagenet", root)))
    monkeypatch.setattr("ablate.data.imagenet.NUM_CLASSES", 3)
    bundle = build_data(to_spec(data_cfg("imagenet", root)))
    assert bundle.num_classes == 3 and bundle.info["train_images"] == 6 and bundle.info["verified"] is False


@pytest.mark.parametrize("name", ["folder", "imagenet", "imagenet100"])
def test_root_null_is_a_clear_error(name):
    with pytest.raises(ConfigError, match=f"data.root must point to .*data={name}"):
        build_data(to_spec(data_cfg(name, None)))


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=f"data.root={tmp_path / 'nope'}: no such directory"):
        build_data(to_spec(data_cfg("folder", tmp_path / "nope")))


def test_missing_split_is_a_clear_error(image_tree):
    root = image_tree(splits=["train"])
    with pytest.raises(ConfigError, match=r"no val/ folder"):
        build_data(to_spec(data_cfg("folder", root)))


def test_flat_split_without_class_folders_is_a_clear_error(image_tree):
    root = image_tree(splits=["train"])
    (root / "val").mkdir()
    (root / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes((root / "train" / "cat" / "cat_0.JPEG").read_bytes())
    with pytest.raises(ConfigError, match=r"val/ has no class folders"):
        build_data(to_spec(data_cfg("folder", root)))


def test_class_folder_without_images_is_a_clear_error(image_tree):
    root = image_tree()
    for f in (root / "val" / "dog").iterdir():
        f.unlink()
    (root / "val" / "dog" / "readme.txt").write_text("no images here")
    with pytest.raises(ConfigError, match=r"no images \(.*\) in val/ class folders: dog$"):
        build_data(to_spec(data_cfg("folder", root)))


def test_val_classes_must_equal_train_classes(image_tree):
    root = image_tree(["cat", "dog", "fox"])
    image_tree(["owl"], splits=["val"])
    (root / "val" / "fox").rename(root / "val" / "hen")
    with pytest.raises(ConfigError, match=r"missing in val/: fox; only in val/: hen, owl"):
        build_data(to_spec(data_cfg("folder", root)))


@pytest.fixture
def tree_with_broken_image(image_tree) -> tuple[Path, Path]:
    root = image_tree()
    good = root / "train" / "dog" / "dog_1.JPEG"
    broken = root / "train" / "dog" / "dog_2.JPEG"
    broken.write_bytes(good.read_bytes()[:200])  # a truncated JPEG: the header opens, the pixels do not
    return root, broken


def test_verify_lists_unreadable_images_at_start_up(tree_with_broken_image):
    root, broken = tree_with_broken_image
    with pytest.raises(ConfigError, match=rf"1 unreadable image\(s\): {broken} \("):
        build_data(to_spec(data_cfg("folder", root)))


def test_without_verify_an_unreadable_image_fails_naming_its_path(tree_with_broken_image):
    root, broken = tree_with_broken_image
    bundle = build_data(to_spec(data_cfg("folder", root, "data.verify=false")))
    index = [path for path, _ in bundle.train.samples].index(str(broken))
    bundle.train[index - 1]  # its readable neighbour loads
    with pytest.raises(UnreadableImageError, match=f"cannot read image {broken}"):
        bundle.train[index]


# --- imagenet100 ----------------------------------------------------------------------------------------------------

def test_shipped_class_list_has_100_unique_wnids():
    wnids, md5 = class_list()
    assert wnids == WNIDS and len(set(wnids)) == 100 and all(w.startswith("n") and len(w) == 9 for w in wnids)
    assert md5 == hashlib.md5(resources.files("ablate.reference").joinpath(CLASS_LIST).read_bytes()).hexdigest()


def test_imagenet100_reads_a_prebuilt_tree(image_tree):
    root = image_tree(WNIDS, per_class=1)
    bundle = build_data(to_spec(data_cfg("imagenet100", root)))
    assert bundle.num_classes == 100 and bundle.train.classes == WNIDS
    assert bundle.info["source"] == "ImageNet-100 tree"
    assert bundle.info["class_list"] == CLASS_LIST and bundle.info["class_list_md5"] == class_list()[1]
    assert (bundle.info["train_images"], bundle.info["val_images"]) == (100, 100)
    assert bundle.train[0][0].shape == (3, 32, 32)


@pytest.fixture
def imagenet1k(image_tree) -> Path:
    """An ImageNet-1K stand-in: the 100 classes and a few others, one image each."""
    return image_tree(WNIDS + ["n00000001", "n00000002"], per_class=1, name="imagenet")


def test_imagenet100_filters_an_imagenet1k_root(imagenet1k):
    bundle = build_data(to_spec(data_cfg("imagenet100", imagenet1k)))
    assert bundle.num_classes == 100 and bundle.train.classes == WNIDS and bundle.info["train_images"] == 100
    assert bundle.info["source"] == "ImageNet-1K root filtered (102 class folders in train/)"


def test_imagenet100_lists_missing_classes(image_tree):
    root = image_tree(WNIDS[2:], per_class=1)
    with pytest.raises(ConfigError, match=rf"2 missing from train/: {WNIDS[0]}, {WNIDS[1]}; 2 missing from val/"):
        build_data(to_spec(data_cfg("imagenet100", root)))


def test_builder_links_class_folders_and_is_idempotent(imagenet1k, tmp_path, capsys):
    out = tmp_path / "in100"
    assert build_imagenet100(["--imagenet", str(imagenet1k), "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert "train: 100 classes, 100 images (100 new links, 0 already there)" in first
    assert "val: 100 classes, 100 images (100 new links" in first
    link = out / "val" / WNIDS[5]
    assert link.is_symlink() and link.resolve() == (imagenet1k / "val" / WNIDS[5]).resolve()
    assert sorted(p.name for p in (out / "train").iterdir()) == WNIDS

    assert build_imagenet100(["--imagenet", str(imagenet1k), "--out", str(out)]) == 0
    assert "train: 100 classes, 100 images (0 new links, 100 already there)" in capsys.readouterr().out
    bundle = build_data(to_spec(data_cfg("imagenet100", out)))
    assert bundle.info["source"] == "ImageNet-100 tree" and bundle.info["val_images"] == 100


def test_builder_refuses_to_replace_a_different_target(imagenet1k, tmp_path, capsys):
    out = tmp_path / "in100"
    (out / "train").mkdir(parents=True)
    (out / "train" / WNIDS[0]).symlink_to(imagenet1k / "train" / WNIDS[1])
    assert build_imagenet100(["--imagenet", str(imagenet1k), "--out", str(out)]) == 2
    assert f"{out / 'train' / WNIDS[0]} is a link to {imagenet1k / 'train' / WNIDS[1]}" in capsys.readouterr().err


def test_builder_lists_missing_classes_and_links_nothing(image_tree, tmp_path, capsys):
    root = image_tree(WNIDS[:-1], per_class=1)
    out = tmp_path / "in100"
    assert build_imagenet100(["--imagenet", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"1 missing from train/: {WNIDS[-1]}; 1 missing from val/: {WNIDS[-1]}" in err and "\n" not in err.strip()
    assert not out.exists()


# --- digits -------------------------------------------------------------------------------------------------------

def test_digits_are_scikit_learns_split_and_kept_in_the_cache(tmp_path, monkeypatch):
    """The embedded default's images and stratified split, read back from the cache folder as scikit-learn makes
    them; a garbled cache file is made again."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from ablate.data.digits import SPLIT_SEED, digits_split
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    images, labels = load_digits(return_X_y=True)
    train, val = train_test_split(range(len(labels)), test_size=0.2, random_state=SPLIT_SEED, stratify=labels)
    made = digits_split(0.2)
    (kept,) = (tmp_path / "ablate").glob("digits-*.npz")
    for garble in (False, True):
        if garble:
            kept.write_bytes(b"PK\x03\x04garbled")
        split = digits_split(0.2)
        for name, expected in (("images", images), ("labels", labels), ("train", train), ("val", val)):
            assert np.array_equal(split[name], expected) and np.array_equal(made[name], expected), name
    assert np.load(kept)["train"].tolist() == train  # written again after the garbled read
    assert len(digits_split(0.25)["val"]) == 450 and len(list((tmp_path / "ablate").glob("digits-*.npz"))) == 2
    cfg = to_spec(compose(["data.img_size=32"]))
    bundle = build_data(cfg)
    assert (len(bundle.train), len(bundle.val)) == (len(train), len(val))
    assert torch.equal(bundle.val.tensors[1], torch.tensor(labels[val]))


# --- fashion_mnist --------------------------------------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    data = struct.pack(">BBBB", 0, 0, codes[array.dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, ">i4", ">f4"])
def test_read_idx_round_trips(tmp_path, suffix, dtype):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(dtype)
    write_idx(tmp_path / f"a{suffix}", array)
    out = read_idx(tmp_path / f"a{suffix}")
    assert out.shape == (2, 3, 4) and np.array_equal(out, array) and out.dtype.isnative


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "text").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "text")
    write_idx(tmp_path / "short", np.zeros((2, 5), np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"9 data bytes, but shape \(2, 5\) needs 10"):
        read_idx(tmp_path / "short")


def write_fashion(root: Path, n_train: int = 20, n_val: int = 10, gz: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for (images, labels), n in zip(FILES.values(), (n_train, n_val)):
        write_idx(root / (images + ".gz" * gz), rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / (labels + ".gz" * gz), np.arange(n, dtype=np.uint8) % 10)
    return root


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path, gz):
    root = write_fashion(tmp_path / "fm", gz=gz)
    bundle = build_data(to_spec(data_cfg("fashion_mnist", root)))
    assert bundle.num_classes == 10 and (len(bundle.train), len(bundle.val)) == (20, 10)
    x, y = bundle.train[3]
    assert x.shape == (3, 32, 32) and int(y) == 3 and torch.equal(x[0], x[2])
    train_x = bundle.train.tensors[0]
    assert abs(train_x.mean().item()) < 1e-4 and abs(train_x.std().item() - 1) < 1e-3


def test_fashion_mnist_missing_files_name_them_and_the_package(tmp_path):
    root = write_fashion(tmp_path / "fm")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ConfigError, match=r"missing t10k-labels-idx1-ubyte \(or .gz\).*apt-get install dataset-"):
        build_data(to_spec(data_cfg("fashion_mnist", root)))


def test_fashion_mnist_default_root_is_the_debian_path():
    # Read from the file, not composed: composing checks that the root exists, and the package may be absent.
    assert Path(OmegaConf.load(CONF_DIR / "data" / "fashion_mnist.yaml").root) == DEBIAN_FASHION


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason=f"Debian package dataset-fashion-mnist not installed "
                                                         f"({DEBIAN_FASHION} missing)")
def test_fashion_mnist_from_the_debian_package():
    bundle = build_data(to_spec(compose(["data=fashion_mnist"])))
    assert (len(bundle.train), len(bundle.val), bundle.num_classes) == (60000, 10000, 10)
    assert bundle.train[0][0].shape == (3, 32, 32)
    assert sorted(torch.bincount(bundle.val.tensors[1]).tolist()) == [1000] * 10
    # Images and labels belong together in both splits: each val image's nearest train-class mean is its own class
    # for 67% of them (10% by chance; 4% with the train labels shuffled), as far as any model could learn it.
    (x, y), (val_x, val_y) = (t.tensors for t in (bundle.train, bundle.val))
    means = torch.stack([x[y == c, 0].flatten(1).mean(0) for c in range(10)])
    nearest = torch.cdist(val_x[:, 0].flatten(1), means).argmin(1)
    assert (nearest == val_y).float().mean() > 0.6


def test_every_data_config_has_a_builder():
    from ablate.config import group_options
    from ablate.data import DATASETS, _register_builtin
    _register_builtin()
    assert group_options("data") == DATASETS.names()
