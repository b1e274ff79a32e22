"""PoolFormer's average pooling (k×k window, stride 1, padding k//2, padding not counted), three ways.

All three equal ``nn.AvgPool2d(k, 1, k // 2, count_include_pad=False)`` up to float rounding, because the
window's valid part is a rectangle: its sum is a sum over rows of sums over columns, and its count is the
product of the two counts. So a k×k pool is a 1×k pool followed by a k×1 pool.

- ``direct``: ``avg_pool2d`` itself, k² reads per output; bit-identical to timm's ``Pooling``.
- ``separable``: a 1×k then a k×1 ``avg_pool2d``, 2k reads per output. Under ``torch.compile`` Inductor
  generates (and fuses) both 1-D windows, where it falls back to ATen for any window over 25 elements (7×7, 9×9).
- ``conv``: two depthwise convolutions with a kernel of ones, divided by the count map. On the CPU oneDNN's
  depthwise kernels are 2-6× faster than ``avg_pool2d`` (forward + backward) at S12's map sizes, any pool size.

A window longer than 2n − 1 along an axis of n positions covers the whole axis from every position, so it is
cut to that length first: the same result, and no work spent on padding (e.g. pool 9 on a 2×2 map).
``POLICY`` says which implementation runs where; ``benchmarks/throughput.py`` measures each on the device at hand.
"""
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

IMPLEMENTATIONS = ("direct", "separable", "conv")
# device type → {pool size: implementation}, None for any other size. CPU: measured (benchmarks/results/).
# CUDA: not measured yet, so timm's kernel at pool 3 and the separable pool above it, where avg_pool2d's
# k² loop (and its backward, which recomputes every window's count) grows with the size.
POLICY: dict[str, dict[int | None, str]] = {"cpu": {None: "conv"}, "cuda": {3: "direct", None: "separable"}}


def box_pool(x: torch.Tensor, pool_size: int, implementation: str | None = None) -> torch.Tensor:
    """Mean over the k×k window around each position of a [B, C, H, W] map, padding not counted."""
    if implementation is None:
        sizes = POLICY.get(x.device.type, {})
        implementation = sizes.get(pool_size, sizes.get(None, "direct"))
    kh, kw = (min(pool_size, 2 * n - 1) for n in x.shape[-2:])
    if implementation == "direct":
        return F.avg_pool2d(x, (kh, kw), 1, (kh // 2, kw // 2), count_include_pad=False)
    if implementation == "separable":
        x = F.avg_pool2d(x, (1, kw), 1, (0, kw // 2), count_include_pad=False)
        return F.avg_pool2d(x, (kh, 1), 1, (kh // 2, 0), count_include_pad=False)
    if implementation == "conv":
        return _conv_pool(x, kh, kw)
    raise ValueError(f"pooling implementation {implementation!r} is not one of {IMPLEMENTATIONS}")


def _conv_pool(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    channels = x.shape[1]
    # In the input's precision, as avg_pool2d (autocast would run the convolutions in bf16).
    with torch.autocast(x.device.type, enabled=False):
        x = F.conv2d(x, x.new_ones(channels, 1, 1, kw), padding=(0, kw // 2), groups=channels)
        x = F.conv2d(x, x.new_ones(channels, 1, kh, 1), padding=(kh // 2, 0), groups=channels)
    return x / (_counts(x.shape[-2], kh, x)[:, None] * _counts(x.shape[-1], kw, x))


def _counts(n: int, k: int, like: torch.Tensor) -> torch.Tensor:
    """How many of the k positions centred on each of n positions lie inside the line."""
    i = torch.arange(n, device=like.device)
    return ((i + k // 2).clamp(max=n - 1) - (i - k // 2).clamp(min=0) + 1).to(like.dtype)


class BoxPool(nn.Module):
    """``box_pool`` as a module; ``implementation=None`` follows ``POLICY`` for the input's device."""

    def __init__(self, pool_size: int, implementation: str | None = None) -> None:
        super().__init__()
        self.pool_size = pool_size
        self.implementation = implementation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return box_pool(x, self.pool_size, self.implementation)

    def extra_repr(self) -> str:
        return f"pool_size={self.pool_size}, implementation={self.implementation or 'auto'}"


def set_pooling(model: nn.Module, implementation: str | None) -> nn.Module:
    """Make every ``BoxPool`` in ``model`` use ``implementation`` (None: follow ``POLICY``)."""
    if implementation is not None and implementation not in IMPLEMENTATIONS:
        raise ValueError(f"pooling implementation {implementation!r} is not one of {IMPLEMENTATIONS}")
    for m in model.modules():
        if isinstance(m, BoxPool):
            m.implementation = implementation
    return model


@contextmanager
def pooling_implementation(model: nn.Module, implementation: str | None) -> Iterator[nn.Module]:
    """``set_pooling`` for the duration of a ``with`` block; each ``BoxPool`` gets its own setting back."""
    pools = [m for m in model.modules() if isinstance(m, BoxPool)]
    before = [p.implementation for p in pools]
    set_pooling(model, implementation)
    try:
        yield model
    finally:
        for pool, implementation in zip(pools, before):
            pool.implementation = implementation
