"""Parameter and MAC counts, with torch's own FLOP counter."""
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ablate.model.pooling import pooling_implementation


def model_stats(model: nn.Module, img_size: int = 224) -> dict[str, float]:
    """Trainable params (M), frozen params (M) and MACs of one image's forward (G).

    MACs are FlopCounterMode's FLOPs / 2; like fvcore (the paper's counter) it counts convs and
    matmuls, so pooling and norms add nothing. The model must have been built for ``img_size``
    when its mixers are tied to the token grid (random, spatial_fc).
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    param = next(model.parameters())
    x = torch.zeros(1, 3, img_size, img_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    # The math backend decomposes attention into matmuls the counter sees; fused CPU kernels go uncounted.
    # Pooling is no MAC whichever kernel computes it (pooling.py may use convolutions), so count avg_pool2d's.
    with (torch.no_grad(), sdpa_kernel(SDPBackend.MATH), pooling_implementation(model, "direct"),
          FlopCounterMode(display=False) as counter):
        model(x)
    model.train(was_training)
    return {"params_m": trainable / 1e6, "frozen_params_m": frozen / 1e6,
            "macs_g": counter.get_total_flops() / 2e9}
