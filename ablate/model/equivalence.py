"""Rows of a sweep whose networks compute the same function in a stage, found by computation.

Two rows' stage i compute the same function when, given the same weights, they give the same output on the same
input. Each row's MetaFormer is built for the sweep's image size in float64, and every parameter takes one value
per name and shape, whichever row it is in: trainable ones are drawn at random from a generator seeded by name
and shape (so LayerScale, position embeddings and biases take no special value), frozen ones (the random mixer's
matrix) keep the value their module gave them in the first row that has them, because that value is what the
mixer means. That is the same as loading one row's state dict into the other wherever name and shape match. Stage
outputs on one random input are then compared to float64 rounding. Stages whose modules are built alike (the same
modules, settings and parameter shapes) are the same by construction and are not reported. So a new mixer needs no
rule: pooling's ``pool(x) - x`` is zero on a 1×1 grid, a pool of size k sees the whole of a g×g grid when
k ≥ 2g − 1, and the random mixer's 1×1 matrix is the identity, all without being told.

The image size that tells such rows apart is searched upwards from the sweep's, one token grid at a time.
"""
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ablate.model.metaformer import MetaFormer, stage_grids
from ablate.model.mixers import MIXERS
from ablate.model.pooling import set_pooling

RTOL, ATOL = 1e-9, 1e-12  # float64: equal functions agree to rounding; different ones differ by far more
BATCH = 1
SEARCH_FACTOR = 8  # how far above the sweep's image size to look for the one that tells rows apart
NARROW = (32, 64, 96, 128)  # stage widths of the check: distinct (each later stage downsamples), attention's head dim
MAX_GRID_ELEMENTS = 2**24  # ... and while grid-bound mixers' N×N matrices stay under 128 MB in float64


@dataclass(frozen=True)
class Equivalence:
    """``rows`` compute the same function in ``stages`` (1-based) at ``img_size``; ``apart_from`` is the smallest
    image size where no two of them do in any of those stages (None: not found up to ``searched_to``, the largest
    size tried)."""

    rows: tuple[str, ...]
    stages: tuple[int, ...]
    img_size: int
    apart_from: int | None
    searched_to: int

    def describe(self) -> str:
        first, last = self.stages[0], self.stages[-1]
        stages = f"stage {first}" if first == last else (
            f"stages {first}-{last}" if list(self.stages) == list(range(first, last + 1))
            else "stages " + ", ".join(map(str, self.stages)))
        apart = (f"apart from data.img_size={self.apart_from}" if self.apart_from is not None
                 else f"not apart up to data.img_size={self.searched_to}")
        return f"{' = '.join(self.rows)} in {stages} ({apart})"

    def as_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows), "stages": list(self.stages), "img_size": self.img_size,
                "apart_from": self.apart_from, "searched_to": self.searched_to, "text": self.describe()}


def warning_line(found: Sequence[Equivalence], img_size: int) -> str | None:
    """The one line that warns of ``found``, or None when there is nothing to say."""
    if not found:
        return None
    return (f"same function at data.img_size={img_size} (shared weights, float64): "
            + "; ".join(e.describe() for e in found))


class _Unset(MetaFormer):
    """A MetaFormer without its truncated-normal initialisation, which ``_shared_weights`` would overwrite."""

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        pass


def _shared_weights(model: nn.Module, frozen: dict[tuple[str, tuple], torch.Tensor]) -> None:
    """Give ``model`` the weights every row shares by name and shape (see the module's docstring)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            key = (name, tuple(p.shape))
            if p.requires_grad:
                p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(zlib.crc32(repr(key).encode())))
            else:
                p.copy_(frozen.setdefault(key, p.detach().clone()))


def _stage_builds(designs: Mapping[str, Mapping[str, Any]], img_size: int, stages: Sequence[int]
                  ) -> dict[int, dict[str, nn.Module]]:
    """Per stage, one float64 build with shared weights of each distinct stage, named by the first row built so."""
    builds: dict[int, dict[tuple, tuple[str, nn.Module]]] = {s: {} for s in stages}
    frozen: dict[tuple[str, tuple], torch.Tensor] = {}
    default = torch.get_default_dtype()
    for row, design in designs.items():
        torch.set_default_dtype(torch.float64)  # built in float64: no float32 copy to convert
        try:
            with torch.random.fork_rng(devices=[]):
                model = _Unset.from_names(**design, img_size=img_size, num_classes=1).eval()
        finally:
            torch.set_default_dtype(default)
        set_pooling(model, "direct")  # avg_pool2d: the conv pooling has no fast float64 kernel on the CPU
        _shared_weights(model, frozen)
        for s in stages:  # only the first build of each kind is kept: an S12 sweep's 18 models would not fit
            builds[s].setdefault(_signature(model.stages[s]), (row, model.stages[s]))
    return {s: dict(found.values()) for s, found in builds.items()}


def _signature(module: nn.Module) -> tuple:
    """What a module is built as: its printout, every submodule's plain settings and every tensor's shape."""
    settings = tuple((name, tuple(sorted((k, v) for k, v in vars(m).items()
                                         if not k.startswith("_") and k != "training"
                                         and isinstance(v, (bool, int, float, str, tuple)))))
                     for name, m in module.named_modules())
    shapes = tuple((k, tuple(v.shape)) for k, v in module.state_dict().items())
    return repr(module), settings, shapes


def _stage_inputs(design: Mapping[str, Any], img_size: int) -> list[torch.Tensor]:
    """A random input of each stage's shape: the stem's output grid for stage 1, the previous stage's after."""
    dims, grids = list(design["dims"]), stage_grids(img_size, len(design["dims"]))
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(BATCH, dims[max(i - 1, 0)], *(grids[max(i - 1, 0)]), generator=generator,
                        dtype=torch.float64) for i in range(len(dims))]


def _classes(builds: Mapping[str, nn.Module], x: torch.Tensor) -> list[list[str]]:
    """Classes of two or more of one stage's distinct ``builds`` that map ``x`` to the same output."""
    classes: list[tuple[torch.Tensor, list[str]]] = []
    with torch.no_grad():
        for row, stage in builds.items():
            try:
                out = stage(x)
            except RuntimeError:  # another model size: not this stage's input shape
                continue
            home = next((rows for first, rows in classes if first.shape == out.shape
                         and torch.allclose(first, out, rtol=RTOL, atol=ATOL)), None)
            if home is None:
                classes.append((out, [row]))
            else:
                home.append(row)
    return [rows for _, rows in classes if len(rows) > 1]


def _equal_stages(designs: Mapping[str, Mapping[str, Any]], img_size: int, stages: Sequence[int] | None = None
                  ) -> dict[int, list[list[str]]]:
    """Classes per stage (0-based) of rows whose differently built stages compute one function at ``img_size``."""
    first = next(iter(designs.values()))
    inputs = _stage_inputs(first, img_size)
    chosen = list(range(len(inputs)) if stages is None else stages)
    builds = _stage_builds(designs, img_size, chosen)
    return {s: found for s in chosen if (found := _classes(builds[s], inputs[s]))}


def _grid_elements(design: Mapping[str, Any], img_size: int) -> int:
    """Entries of the token-grid matrices that grid-bound mixers (random, spatial_fc) build at ``img_size``."""
    mixers = design.get("mixers", "pooling")
    names = [mixers] * len(design["dims"]) if isinstance(mixers, str) else list(mixers)
    return sum((h * w) ** 2 for name, (h, w) in zip(names, stage_grids(img_size, len(names)))
               if MIXERS.get(name).needs_grid)


def _apart_from(designs: Mapping[str, Mapping[str, Any]], rows: Sequence[str], stages: Sequence[int],
                img_size: int) -> tuple[int | None, int]:
    """The smallest image size above ``img_size`` where no two of ``rows`` compute one function in any of
    ``stages`` (None if none was found), and the largest size tried. Only sizes where one of those stages' grids
    grows are tried, up to SEARCH_FACTOR × ``img_size`` and while the grid-bound mixers' matrices stay small."""
    chosen = {row: designs[row] for row in rows}
    num_stages = len(next(iter(chosen.values()))["dims"])
    last, tried = [stage_grids(img_size, num_stages)[s] for s in stages], img_size
    for size in range(img_size + 1, SEARCH_FACTOR * img_size + 1):
        grids = [stage_grids(size, num_stages)[s] for s in stages]
        if grids == last:
            continue
        if max(_grid_elements(d, size) for d in chosen.values()) > MAX_GRID_ELEMENTS:
            break
        last, tried = grids, size
        if not _equal_stages(chosen, size, stages):
            return size, size
    return None, tried


def _narrowed(designs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The designs at NARROW widths when they all share one width: whether two stages compute one function depends
    on their modules and token grid, not on how many channels they carry, and narrow models build and run fast."""
    widths = {tuple(d["dims"]) for d in designs.values()}
    if len(widths) > 1 or len(next(iter(widths))) != len(NARROW):
        return {row: dict(d) for row, d in designs.items()}
    return {row: {**d, "dims": list(NARROW)} for row, d in designs.items()}


def same_function(designs: Mapping[str, Mapping[str, Any]], img_size: int) -> list[Equivalence]:
    """Rows whose networks compute the same function in a stage at ``img_size``, grouped by the rows that are
    equal and the stages where they are. ``designs`` maps a row's name to ``MetaFormer.from_names``'s arguments
    (less ``img_size`` and ``num_classes``); rows with equal designs should be given once."""
    if len(designs) < 2:
        return []
    designs = _narrowed(designs)
    by_rows: dict[tuple[str, ...], list[int]] = {}
    for stage, classes in _equal_stages(designs, img_size).items():
        for rows in classes:
            by_rows.setdefault(tuple(rows), []).append(stage)
    return [Equivalence(rows, tuple(s + 1 for s in stages), img_size, *_apart_from(designs, rows, stages, img_size))
            for rows, stages in by_rows.items()]
