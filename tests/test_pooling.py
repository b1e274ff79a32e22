"""PoolFormer's pooling, every implementation against nn.AvgPool2d(count_include_pad=False), forward and backward."""
import pytest
import torch
from torch import nn

from ablate import build_model, compose, model_stats
from ablate.model.pooling import IMPLEMENTATIONS, box_pool, set_pooling

SHAPES = [(2, 3, 14, 14), (2, 5, 7, 11), (1, 4, 2, 3), (1, 2, 1, 1), (3, 8, 16, 9)]  # incl. maps below the window


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("pool_size", [1, 3, 5, 7, 9])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_equals_avg_pool2d_forward_and_backward(implementation, pool_size, shape):
    torch.manual_seed(pool_size)
    x = torch.randn(shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    grad = torch.randn(shape)
    out = box_pool(x, pool_size, implementation)
    ref = nn.AvgPool2d(pool_size, 1, pool_size // 2, count_include_pad=False)(x_ref)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_pools_in_the_input_precision_under_autocast(implementation):
    x = torch.randn(2, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert box_pool(x, 5, implementation).dtype == torch.float32


def test_every_pooling_mixer_follows_set_pooling():
    model = build_model(compose(["model=xs", "data.img_size=32", "stage_mixers=[pooling,avgpool,pooling,avgpool]"]), 10)
    set_pooling(model, "separable")
    pools = [m.token_mixer.pool for m in model.modules() if hasattr(m, "token_mixer")]
    assert len(pools) == 6 and all(p.implementation == "separable" for p in pools)
    with pytest.raises(ValueError, match="is not one of"):
        set_pooling(model, "fft")


def test_pooling_adds_no_macs_whichever_implementation_computes_it():
    model = build_model(compose(["model=xs", "data.img_size=64", "pool_size=9"]), 10)
    macs = {impl: set_pooling(model, impl) and model_stats(model, 64)["macs_g"] for impl in IMPLEMENTATIONS}
    assert macs["conv"] == macs["direct"] == macs["separable"]
    assert model.stages[0].blocks[0].token_mixer.pool.implementation == "conv"  # the last one set, kept
