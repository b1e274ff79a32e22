"""MetaFormer (Yu et al., CVPR 2022) with every Table 5 knob as a constructor argument.

Module and parameter names follow timm's ``timm/models/metaformer.py`` so that timm's
``poolformer_s12`` state dict loads into the baseline with ``strict=True``. The head follows
the authors' code instead of timm's: norm on the last map, global average pool, linear
(timm pools first, then applies a channel LayerNorm); the keys are the same, the logits differ.
"""
from collections.abc import Callable, Sequence
from functools import partial

import torch
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models.metaformer import Downsampling, Scale, Stem
from torch import nn

from ablate.model.layers import ACTS, NORMS
from ablate.model.mixers import MIXERS

Factory = Callable[[int], nn.Module]


class MetaFormerBlock(nn.Module):
    """norm → token mixer → residual, then norm → channel MLP → residual."""

    def __init__(self, dim: int, *, mixer: Factory, norm: Factory, act: type[nn.Module], mlp_ratio: float = 4.0,
                 drop_path: float = 0.0, layer_scale_init: float | None = 1e-5, residual: bool = True,
                 channel_mlp: bool = True) -> None:
        super().__init__()
        self.residual = residual
        # Without the skip path, DropPath would zero a sample's whole signal, so it is off.
        drop = DropPath(drop_path) if drop_path > 0 and residual else nn.Identity()
        scale = (lambda: Scale(dim, layer_scale_init)) if layer_scale_init is not None else nn.Identity

        self.norm1 = norm(dim)
        self.token_mixer = mixer(dim)
        self.drop_path1 = drop
        self.layer_scale1 = scale()
        self.channel_mlp = channel_mlp
        if channel_mlp:
            self.norm2 = norm(dim)
            self.mlp = Mlp(dim, int(mlp_ratio * dim), act_layer=act, use_conv=True)
            self.drop_path2 = drop
            self.layer_scale2 = scale()

    def _add(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return x + branch if self.residual else branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._add(x, self.layer_scale1(self.drop_path1(self.token_mixer(self.norm1(x)))))
        if self.channel_mlp:
            x = self._add(x, self.layer_scale2(self.drop_path2(self.mlp(self.norm2(x)))))
        return x


class MetaFormerStage(nn.Module):
    """Optional downsampling conv, optional learned position embedding, then the blocks."""

    def __init__(self, in_dim: int, dim: int, blocks: Sequence[nn.Module], grid: tuple[int, int],
                 position_embedding: bool = False) -> None:
        super().__init__()
        self.downsample = (nn.Identity() if in_dim == dim
                           else Downsampling(in_dim, dim, kernel_size=3, stride=2, padding=1))
        # Zero-initialised as in the authors' AddPositionEmb, placed before the first attention stage.
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, *grid)) if position_embedding else None
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return self.blocks(x)


class Head(nn.Module):
    """The authors' head: norm on the [B, C, H, W] map, global average pool, linear."""

    def __init__(self, dim: int, num_classes: int, norm: Factory) -> None:
        super().__init__()
        self.norm = norm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x).mean((-2, -1)))


def stage_grids(img_size: int, num_stages: int) -> list[tuple[int, int]]:
    """Token grid of each stage: stem conv k7 s4 p2, then k3 s2 p1 per later stage."""
    side = (img_size - 3) // 4 + 1
    grids = []
    for i in range(num_stages):
        if i:
            side = (side - 1) // 2 + 1
        grids.append((side, side))
    return grids


def _mixer(cls: type[nn.Module], dim: int, **kwargs) -> nn.Module:
    mixer = cls(dim, **kwargs)
    return mixer.requires_grad_(False) if cls.frozen else mixer


class MetaFormer(nn.Module):
    """A four-stage MetaFormer; ``mixers[i](dim)`` builds stage i's token mixer."""

    def __init__(self, num_classes: int, *, depths: Sequence[int], dims: Sequence[int],
                 mixers: Sequence[Factory], norm: Factory,
                 act: type[nn.Module], img_size: int = 224, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 layer_scale_init: float | None = 1e-5, residual: bool = True, channel_mlp: bool = True,
                 position_embedding: Sequence[bool] = (False,) * 4, in_chans: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = dims[-1]
        self.stem = Stem(in_chans, dims[0])
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        stages, prev = [], dims[0]
        for i, (depth, dim, grid) in enumerate(zip(depths, dims, stage_grids(img_size, len(depths)))):
            first = sum(depths[:i])
            blocks = [MetaFormerBlock(dim, mixer=mixers[i], norm=norm, act=act, mlp_ratio=mlp_ratio,
                                      drop_path=rates[first + j], layer_scale_init=layer_scale_init,
                                      residual=residual, channel_mlp=channel_mlp)
                      for j in range(depth)]
            stages.append(MetaFormerStage(prev, dim, blocks, grid, position_embedding[i]))
            prev = dim
        self.stages = nn.Sequential(*stages)
        self.head = Head(dims[-1], num_classes, norm)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # As timm: truncated normal for every conv and linear (the authors left stem/downsample at default).
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @classmethod
    def from_names(cls, *, depths: Sequence[int], dims: Sequence[int], mixers: str | Sequence[str] = "pooling",
                   pool_size: int = 3, norm: str = "mln", act: str = "gelu", num_classes: int = 1000,
                   img_size: int = 224, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                   layer_scale_init: float | None = 1e-5, residual: bool = True,
                   channel_mlp: bool = True) -> "MetaFormer":
        """A MetaFormer from the registered names of its parts: ``mixers`` is one mixer for every stage or one
        per stage (a hybrid). Each mixer gets the arguments its traits ask for (pool size, token grid); a frozen
        one has its gradient off; a learned position embedding goes before the first stage that needs one."""
        names = [mixers] * len(depths) if isinstance(mixers, str) else list(mixers)
        if len(names) != len(depths):
            raise ValueError(f"mixers={names!r}: one per stage, {len(depths)} stages")
        if pool_size < 1 or pool_size % 2 == 0:
            raise ValueError(f"pool_size={pool_size} must be odd: the window is centred on each token")
        classes = [MIXERS.get(n) for n in names]
        factories = []
        for mixer, grid in zip(classes, stage_grids(img_size, len(names))):
            kwargs = {"pool_size": pool_size} if mixer.uses_pool_size else {}
            if mixer.needs_grid:
                kwargs["grid"] = grid
            factories.append(partial(_mixer, mixer, **kwargs))
        first_position = next((i for i, mixer in enumerate(classes) if mixer.needs_position), None)
        return cls(num_classes, depths=depths, dims=dims, mixers=factories, norm=NORMS.get(norm), act=ACTS.get(act),
                   img_size=img_size, mlp_ratio=mlp_ratio, drop_path=drop_path, layer_scale_init=layer_scale_init,
                   residual=residual, channel_mlp=channel_mlp,
                   position_embedding=[i == first_position for i in range(len(names))])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))
