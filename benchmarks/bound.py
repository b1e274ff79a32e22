"""The memory-traffic bound of a training step: what the step must move, over what the device can move.

An unfused program reads every input and writes every output of every op from and to device memory. So:

    bytes per image = activation elements per image × bytes per element × passes
    bound (img/s)   = device bandwidth / bytes per image

The factors are not estimated but counted: ``count_traffic`` runs one eager step (forward, loss, backward)
under a dispatch mode that adds up the bytes of each ATen op's tensor inputs and outputs (views move nothing;
a broadcast input counts once), at the precision the step runs at (bf16 under autocast, fp32 where autocast
keeps fp32, e.g. GroupNorm). Activation elements per image are the MetaFormer blocks' input maps (C·H·W per
block, summed: 1.03M for S12 at 224); passes are what is left. A compiled step can beat this bound only by
fusing ops, so a percentage of it says how close an unfused step comes to the hardware's limit.
"""
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# Peak memory bandwidth (TB/s), by a part of torch.cuda.get_device_name(); the first match wins, so the
# more specific names come first. --bandwidth overrides it; an unknown device gets no bound.
BANDWIDTH_TBS = {
    "GH200 480GB": 4.0, "H200": 4.8, "H100 NVL": 3.9, "H100 PCIe": 2.0, "H100": 3.35, "H800": 3.35,
    "A100-SXM4-80GB": 2.039, "A100 80GB PCIe": 1.935, "A100": 1.555, "L40S": 0.864, "L4": 0.3, "A10": 0.6,
    "RTX 4090": 1.008, "RTX 3090": 0.936, "V100": 0.9, "T4": 0.32,
}


def bandwidth_tbs(device_name: str) -> float | None:
    """The device's peak memory bandwidth from ``BANDWIDTH_TBS``, or None when it is not listed."""
    return next((tbs for part, tbs in BANDWIDTH_TBS.items() if part in device_name), None)


@dataclass(frozen=True)
class Traffic:
    bytes_per_image: float
    activations_per_image: float  # elements entering the MetaFormer blocks
    element_bytes: int  # at the step's precision: 2 under bf16 autocast, 4 in fp32

    @property
    def passes(self) -> float:
        return self.bytes_per_image / (self.activations_per_image * self.element_bytes)

    def bound(self, tbs: float) -> float:
        """Images per second an unfused step cannot exceed at ``tbs`` TB/s."""
        return tbs * 1e12 / self.bytes_per_image


class _CountBytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            self.bytes += sum(_bytes(t) for t in tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor))
        return out


def _bytes(t: torch.Tensor) -> int:
    # Memory a kernel touches: dimensions of stride 0 (broadcasts) repeat the same elements.
    return math.prod(n for n, s in zip(t.shape, t.stride()) if s) * t.element_size()


def moved_bytes(fn: Callable[[], object]) -> int:
    """Bytes that the ATen ops ``fn()`` runs read and write, autograd's backward ops included."""
    counter = _CountBytes()
    with counter:
        fn()
    return counter.bytes


def count_traffic(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> Traffic:
    """Bytes one eager step (forward, cross-entropy, backward) of ``model`` moves per image of ``x``.

    ``dtype``: the autocast precision (bfloat16), or float32 for none; it is also the activations' element size.
    """
    amp = torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32)
    blocks = [m for m in model.modules() if type(m).__name__ == "MetaFormerBlock"]  # ours and timm's
    seen = []
    hooks = [b.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].numel())) for b in blocks]

    def step() -> None:
        with amp:
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
    try:
        moved = moved_bytes(step)
    finally:
        for h in hooks:
            h.remove()
    model.zero_grad(set_to_none=True)
    return Traffic(moved / len(x), sum(seen) / len(x), dtype.itemsize)
