"""Table 5 on ImageNet-100 as a training workload: rows from the row files, epochs from the recipe.

Rows are the files of ``sweeps/table5/`` (what ``+sweep=table5`` globs), epochs are ``train=imagenet100``'s, and
each epoch trains on ImageNet-100's training set once. Validation passes are left out (5,000 images, forward only).
"""
from dataclasses import dataclass

from ablate import compose
from ablate.config.checks import CONF_DIR
from ablate.plan.cost import KNOWN_SIZES

# ImageNet-1K's training images in the 100 classes of ablate/reference/imagenet100_wnids.txt: a property of the data,
# which is not here (the run record of an ImageNet-100 run holds the count it found).
IMAGENET100_TRAIN_IMAGES = KNOWN_SIZES["imagenet100"][0]


@dataclass(frozen=True)
class Workload:
    rows: list[str]
    epochs: int
    images_per_epoch: int

    @property
    def images(self) -> int:
        return len(self.rows) * self.epochs * self.images_per_epoch

    def describe(self) -> str:
        return (f"{len(self.rows)} rows (sweeps/table5/) × {self.epochs} epochs (train=imagenet100) × "
                f"{self.images_per_epoch:,} images = {self.images / 1e6:.0f}M training images")

    def gpu_hours(self, img_per_s: dict[str, float]) -> float:
        """Training hours at each row's speed (rows without one take the baseline's)."""
        return sum(self.epochs * self.images_per_epoch / img_per_s.get(row, img_per_s["baseline"])
                   for row in self.rows) / 3600


def table5() -> Workload:
    rows = sorted(p.stem for p in (CONF_DIR / "sweep" / "table5").glob("*.yaml"))
    return Workload(rows, compose(["train=imagenet100"]).train.epochs, IMAGENET100_TRAIN_IMAGES)
