"""The paper's Table 5 (``ablate/reference/table5.csv``): names and numbers, keyed by row id.

A row id is also the name of the row's config, ``sweeps/table5/<id>.yaml``, which holds all of the
row's overrides. Names and the paper's numbers live here and nowhere else. Imports no torch, so the
report can read it.
"""
import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

BASELINE = "baseline"


@dataclass(frozen=True)
class PaperRow:
    id: str
    group: str
    variant: str
    params_m: float
    macs_g: float
    top1: float  # ImageNet-1K val top-1 (%), PoolFormer-S12 at 224, 300 epochs
    note: str


@cache
def rows() -> dict[str, PaperRow]:
    """Every row, in the paper's order."""
    with resources.files("ablate.reference").joinpath("table5.csv").open(encoding="utf-8") as f:
        return {r["id"]: PaperRow(r["id"], r["group"], r["variant"], float(r["params_m"]), float(r["macs_g"]),
                                  float(r["top1"]), r["note"]) for r in csv.DictReader(f)}


def row(row_id: str | None) -> PaperRow | None:
    return rows().get(row_id) if row_id else None
