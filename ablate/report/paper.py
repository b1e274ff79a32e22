"""What the paper's Table 5 measured, said once for the table and the plots, and how our runs compare."""
from collections.abc import Iterable

from ablate.reference import table5

IMAGENET = "imagenet"  # the data set the paper's Table 5 was measured on (records' ``data``)
MODEL = "s12"  # the model size of the paper's Table 5 (records' ``model``)
SIZE, DATA = "S12", "ImageNet-1K"
CONTEXT = f"PoolFormer-{SIZE} on {DATA} at 224 px, 300 epochs (Yu et al., CVPR 2022, Table 5)"
LEGEND = f"paper ({SIZE}, {DATA})"
BASELINE = table5.row(table5.BASELINE)


def is_paper_size(model: str | None) -> bool:
    return model is None or model == MODEL  # a record that does not name its model: nothing to say


def baseline_label(variant: str, model: str | None) -> str:
    """The baseline's label: Table 5's name (PoolFormer-S12) names the paper's size, so another size says so."""
    return variant if is_paper_size(model) else f"PoolFormer, {model} model (paper: {SIZE})"


def model_note(models: Iterable[str | None]) -> str:
    """A sentence for the reader when our model is not the paper's size ('' when it is)."""
    other = sorted({m for m in models if not is_paper_size(m)})
    if not other:
        return ""
    return (f"Our model is {', '.join(other)}, not the paper's {SIZE}: our params and MACs are not comparable with "
            f"the paper's columns.")


def ours(models: Iterable[str | None], data: Iterable[str | None], paper: bool = True) -> str:
    """What we ran, for a plot: 'xs model on digits (paper: S12 on ImageNet-1K)'; the paper is named only where
    the plot draws its numbers (``paper``) and our model is not its size."""
    models, data = sorted({m for m in models if m}), sorted({d for d in data if d})
    what = f"{', '.join(models) or 'unknown'} model on {', '.join(data) or 'unknown data'}"
    return what if not paper or all(map(is_paper_size, models)) else f"{what} (paper: {SIZE} on {DATA})"
