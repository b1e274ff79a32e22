"""A test fixture: generated class-folder trees of photo-like JPEGs, for tests and benchmarks (benchmarks/loader.py)
that must not need real data.

Each image is a smooth random colour field with fine noise, so it compresses like a photo (a 500×375 image at
quality 90 is about 100 KB, near ImageNet's average) and decodes at a photo's cost; every file differs.
"""
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image


def photo(seed: int, size: tuple[int, int] = (500, 375)) -> Image.Image:
    """A ``size`` (width, height) RGB image, the same for the same seed."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize(size, Image.BICUBIC), dtype=np.float32)
    return Image.fromarray((smooth + rng.normal(0, 14, smooth.shape)).clip(0, 255).astype(np.uint8))


def _write(job: tuple[Path, int, tuple[int, int], int]) -> None:
    path, seed, size, quality = job
    photo(seed, size).save(path, "JPEG", quality=quality)


def write_jpeg_tree(root: Path, classes: int = 4, train_per_class: int = 4, val_per_class: int = 2,
                    size: tuple[int, int] = (500, 375), quality: int = 90, workers: int = 1) -> Path:
    """``root/{train,val}/c<i>/<n>.JPEG``; ``workers`` processes encode them."""
    jobs = []
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            jobs += [(folder / f"{i}.JPEG", len(jobs) + i, size, quality) for i in range(per_class)]
    if workers > 1:
        with Pool(workers) as pool:
            pool.map(_write, jobs, chunksize=16)
    else:
        for job in jobs:
            _write(job)
    return root
