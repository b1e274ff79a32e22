"""Picking the loader; in-memory sets batched by gathering, exactly as a DataLoader would; erasing whole batches."""
import pytest
import torch
from timm.data.random_erasing import RandomErasing
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import ablate.config.checks
import ablate.data.loaders
from ablate import ConfigError, compose
from ablate.config.spec import to_spec
from ablate.data import build_data
from ablate.data.loaders import TensorBatches, build_loaders, pick_loader
from ablate.data.transforms import erase_batch


def test_tensor_batches_equal_a_dataloaders():
    data = TensorDataset(torch.randn(103, 3, 4, 4), torch.arange(103))
    sampler = DistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=5)
    for drop_last in (True, False):
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            ours = list(TensorBatches(data, sampler, 8, drop_last, torch.device("cpu")))
            theirs = list(DataLoader(data, batch_size=8, sampler=sampler, drop_last=drop_last))
            assert len(ours) == len(theirs) == len(TensorBatches(data, sampler, 8, drop_last, torch.device("cpu")))
            for (x, y), (tx, ty) in zip(ours, theirs):
                assert torch.equal(x, tx) and torch.equal(y, ty)


# --- picking the loader -------------------------------------------------------------------------------------------

def test_loader_choice_is_checked_before_training(image_tree, monkeypatch):
    root = image_tree()
    with pytest.raises(ConfigError, match="data.loader='fast' is not one of: auto, batched, dali, torch"):
        compose(["data=folder", f"data.root={root}", "data.loader=fast"])
    monkeypatch.setattr(ablate.config.checks, "dali_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"data.loader=dali needs NVIDIA DALI: pip install -e '.\[dali\]'"):
        compose(["data=folder", f"data.root={root}", "data.loader=dali"])


def test_auto_takes_dali_only_for_image_folders_on_cuda(image_tree, monkeypatch):
    cfg = compose(["data=folder", f"data.root={image_tree()}", "data.img_size=32"])
    folders, cuda, cpu = build_data(to_spec(cfg)), torch.device("cuda", 0), torch.device("cpu")
    assert cfg.data.loader == "auto" and pick_loader(to_spec(cfg), folders, cpu) == "torch"
    for installed, picked in ((True, "dali"), (False, "torch")):
        monkeypatch.setattr(ablate.data.loaders, "dali_installed", lambda installed=installed: installed)
        assert pick_loader(to_spec(cfg), folders, cuda) == picked
    digits = compose()
    assert pick_loader(to_spec(digits), build_data(to_spec(digits)), cuda) == "tensors"
    monkeypatch.setattr(ablate.config.checks, "dali_installed", lambda: True)
    with pytest.raises(ConfigError, match="data.loader=dali reads class-folder trees"):
        pick_loader(to_spec(compose(["+data.loader=dali"])), build_data(to_spec(digits)), cuda)


@pytest.mark.slow  # starts 2 DataLoader workers
def test_the_dataloaders_augmented_batches_do_not_depend_on_its_workers(photo_tree):
    """Each sample draws from its own seed (SeededSampler): in line or in 2 worker processes, the paper's augmentation
    makes the same batches, so a run resumed with fresh workers goes on as if it had never stopped."""
    root = photo_tree(classes=2, train_per_class=4)
    batches = []
    for workers in (0, 2):
        spec = to_spec(compose(["data=folder", f"data.root={root}", "data.img_size=32", "data.loader=torch",
                                "train=paper", "train.batch_size=4", "train.global_batch=null",
                                f"train.num_workers={workers}"]))
        train, _ = build_loaders(spec, build_data(spec), torch.device("cpu"))
        train.sampler.set_epoch(1)
        batches.append([x for x, _ in train])
    assert len(batches[0]) == 2 and all(torch.equal(a, b) for a, b in zip(*batches, strict=True))
    assert not torch.equal(*batches[0])  # the batches are augmented, not all alike


# --- random erasing on whole batches ------------------------------------------------------------------------------

def _erased_boxes(before: torch.Tensor, after: torch.Tensor) -> list[tuple[int, int, int]]:
    """(pixels changed, box height, box width) per image that changed."""
    boxes = []
    for changed in (after != before).any(1):
        if changed.any():
            rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
            boxes.append((int(changed.sum()), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)))
    return boxes


def test_erase_batch_draws_timms_rectangles():
    torch.manual_seed(0)
    x = torch.zeros(400, 3, 32, 40)
    assert torch.equal(erase_batch(x.clone(), 0.0), x)
    ours = _erased_boxes(x, erase_batch(x.clone(), 1.0))
    assert len(ours) == 400  # a 32×40 image always fits one of ten draws
    for pixels, h, w in ours:  # one solid rectangle of noise, within timm's area and aspect limits
        assert pixels == h * w and 0.02 * 0.8 <= pixels / (32 * 40) <= 1 / 3 * 1.2 and 0.25 <= h / w <= 4
    timm = RandomErasing(1.0, mode="pixel", device="cpu")
    theirs = _erased_boxes(x, torch.stack([timm(img.clone()) for img in x]))
    mean_area = [sum(p for p, _, _ in boxes) / len(boxes) / (32 * 40) for boxes in (ours, theirs)]
    assert abs(mean_area[0] - mean_area[1]) < 0.02
    assert 0.18 <= len(_erased_boxes(x, erase_batch(x.clone(), 0.25))) / 400 <= 0.32
