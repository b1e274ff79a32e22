"""Normalisations and activations, by the names the config uses."""
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from timm.layers import GroupNorm1, LayerNorm2d, is_fast_norm, set_fast_norm
from timm.models.metaformer import SquaredReLU, StarReLU
from torch import nn

from ablate.registry import Registry

NORMS = Registry("norm")
ACTS = Registry("act")

# Modified LN (the paper's default) normalises over C, H, W: GroupNorm with one group.
NORMS.register("mln")(partial(GroupNorm1, eps=1e-5))
# Channel-only LN; eps 1e-5 as the authors' LayerNormChannel (timm's LayerNorm2d defaults to 1e-6).
NORMS.register("ln")(partial(LayerNorm2d, eps=1e-5))
NORMS.register("bn")(nn.BatchNorm2d)
NORMS.register("none")(lambda dim: nn.Identity())

ACTS.register("gelu")(nn.GELU)
ACTS.register("relu")(nn.ReLU)
ACTS.register("silu")(nn.SiLU)
ACTS.register("hardswish")(nn.Hardswish)
ACTS.register("starrelu")(StarReLU)
ACTS.register("squared_relu")(SquaredReLU)


@contextmanager
def fast_norms(enabled: bool) -> Iterator[None]:
    """Norms built inside compute in the autocast dtype (bf16) rather than in fp32, as autocast runs them.

    timm's fast norm, for GroupNorm1 and LayerNorm2d; each reads the setting when it is built. Without autocast
    it changes nothing.
    """
    previous = is_fast_norm()
    set_fast_norm(enabled)
    try:
        yield
    finally:
        set_fast_norm(previous)
