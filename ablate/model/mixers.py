"""Token mixers: the one part of a MetaFormer block that Table 5 swaps.

A mixer maps a [B, C, H, W] map to one of the same shape. It is built as ``cls(dim)``, plus
``pool_size=`` and ``grid=(H, W)`` when its traits (TokenMixer) say it takes them. A new mixer is
one class registered here and one ``conf/mixer/<name>.yaml``.
"""
from typing import ClassVar

import torch
import torch.nn.functional as F
from timm.layers import use_fused_attn
from torch import nn

from ablate.errors import ConfigError
from ablate.model.pooling import BoxPool
from ablate.registry import Registry

MIXERS = Registry("mixer")


class TokenMixer:
    """The traits the harness reads from a mixer class; each mixer declares its own, here or nowhere."""

    uses_pool_size: ClassVar[bool] = False  # takes pool_size=, so pool_size is part of the run's design and name
    needs_grid: ClassVar[bool] = False  # takes grid=(H, W): built for one token grid, i.e. one data.img_size
    needs_position: ClassVar[bool] = False  # a learned position embedding goes before its first stage
    frozen: ClassVar[bool] = False  # its parameters keep their initial values: never trained, counted apart


@MIXERS.register("avgpool")
class AvgPool(nn.Module, TokenMixer):
    """Plain ``pool(x)``: the authors report it 0.2-0.3 below ``pool(x) - x`` (poolformer#1)."""

    uses_pool_size = True

    def __init__(self, dim: int, pool_size: int = 3) -> None:
        super().__init__()
        # Stride 1, padding k//2 not counted, as timm's Pooling; its cost barely grows with k (pooling.py).
        self.pool = BoxPool(pool_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


@MIXERS.register("pooling")
class Pooling(AvgPool):
    """PoolFormer's ``pool(x) - x``, as timm's ``Pooling``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


@MIXERS.register("identity")
class Identity(nn.Identity, TokenMixer):
    """No token mixing; the block keeps its residual (the paper's IdentityFormer row)."""

    def __init__(self, dim: int) -> None:
        super().__init__()


@MIXERS.register("dwconv")
class DWConv(nn.Conv2d, TokenMixer):
    """Depthwise conv with bias, kernel = pool size (3×3 matches the paper's 11.9M)."""

    uses_pool_size = True

    def __init__(self, dim: int, pool_size: int = 3) -> None:
        super().__init__(dim, dim, pool_size, padding=pool_size // 2, groups=dim)


class _TokenMatrix(nn.Module, TokenMixer):
    """Mixes the N = H·W tokens with an N×N matrix shared by all channels: X' = W X."""

    needs_grid = True

    def __init__(self, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = tuple(grid)

    def mix(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if (H, W) != self.grid:
            raise ValueError(
                f"{type(self).__name__} was built for a {self.grid[0]}×{self.grid[1]} token grid "
                f"but got {H}×{W}: build the model with the input size it will see (data.img_size)")
        return (x.reshape(B, C, H * W) @ weight.t()).reshape(B, C, H, W)


@MIXERS.register("random")
class RandomMixing(_TokenMatrix):
    """The paper's frozen global random matrix: rows softmax(U[0,1)), never trained.

    A parameter (as the authors' RandomMixing), so it is saved with the model; being ``frozen``,
    the model builder turns its gradient off and ``model_stats`` counts it apart.
    """

    frozen = True

    def __init__(self, dim: int, grid: tuple[int, int] = (7, 7)) -> None:
        super().__init__(grid)
        n = grid[0] * grid[1]
        self.weight = nn.Parameter(torch.softmax(torch.rand(n, n), dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x, self.weight)


@MIXERS.register("spatial_fc")
class SpatialFC(_TokenMatrix):
    """ResMLP-style learned N×N token map without bias, shared by channels (official metaformer.py)."""

    def __init__(self, dim: int, grid: tuple[int, int] = (7, 7)) -> None:
        super().__init__(grid)
        n = grid[0] * grid[1]
        self.proj = nn.Linear(n, n, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x, self.proj.weight)


@MIXERS.register("attention")
class Attention(nn.Module, TokenMixer):
    """Multi-head self-attention as in the authors' hybrids: head dim 32, no qkv bias, proj with bias."""

    needs_position = True

    def __init__(self, dim: int, head_dim: int = 32) -> None:
        super().__init__()
        if dim % head_dim:
            raise ConfigError(f"attention needs channels divisible by head_dim={head_dim}, got {dim}")
        self.num_heads = dim // head_dim
        self.head_dim = head_dim
        self.fused_attn = use_fused_attn()
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        q, k, v = self.qkv(tokens).reshape(B, H * W, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = ((q * self.head_dim ** -0.5) @ k.transpose(-2, -1)).softmax(-1) @ v
        out = self.proj(out.transpose(1, 2).reshape(B, H * W, C))
        return out.transpose(1, 2).reshape(B, C, H, W)


@MIXERS.register("sepconv")
class SepConv(nn.Module, TokenMixer):
    """ConvFormer's inverted separable conv (MetaFormer Baselines): 1×1 up ×2, act, 7×7 depthwise, 1×1 down."""

    def __init__(self, dim: int, kernel_size: int = 7, expansion: int = 2) -> None:
        super().__init__()
        hidden = dim * expansion
        self.pwconv1 = nn.Conv2d(dim, hidden, 1, bias=False)
        self.act = nn.GELU()
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden, bias=False)
        self.pwconv2 = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pwconv2(self.dwconv(self.act(self.pwconv1(x))))

