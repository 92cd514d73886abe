"""Fractional max pooling (functional and modules) against PyTorch with the same random
samples: values, indices and gradients, float32 and float64."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import phalanx as px
import phalanx.nn as nn
import phalanx.nn.functional as F

RNG = np.random.default_rng(12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, kernel, kw", [
    ((2, 3, 11, 13), (2, 3), {"output_size": (5, 6)}),
    ((3, 10, 9), 2, {"output_ratio": (0.5, 0.5)}),
    ((2, 3, 50, 40), 3, {"output_size": (17, 13)}),
    ((2, 2, 7, 8, 9), (2, 2, 3), {"output_size": (4, 5, 3)}),
    ((2, 6, 7, 5), 2, {"output_ratio": (0.5, 0.7, 0.6)}),
])
def test_matches_torch(dtype, shape, kernel, kw):
    dims = 3 if len(kw.get("output_size", kw.get("output_ratio"))) == 3 else 2
    name = f"fractional_max_pool{dims}d"
    x = RNG.standard_normal(shape).astype(dtype)
    n = shape[0] if len(shape) == dims + 2 else 1
    samples = RNG.uniform(size=(n, shape[-dims - 1], dims)).astype(dtype)
    p, t = px.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    po, pi = getattr(F, name)(p, kernel, return_indices=True,
                              _random_samples=px.tensor(samples), **kw)
    to, ti = getattr(TF, name)(t, kernel, return_indices=True,
                               _random_samples=torch.tensor(samples), **kw)
    np.testing.assert_array_equal(pi.numpy(), ti.numpy())
    np.testing.assert_array_equal(po.detach().numpy(), to.detach().numpy())
    cot = RNG.standard_normal(tuple(to.shape)).astype(dtype)
    (po * px.tensor(cot)).sum().backward()
    (to * torch.tensor(cot)).sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())


def test_modules_and_random_draws():
    samples = RNG.uniform(size=(2, 3, 2))
    x = RNG.standard_normal((2, 3, 12, 12))
    pm = nn.FractionalMaxPool2d(3, output_ratio=0.5, _random_samples=px.tensor(samples))
    tm = torch.nn.FractionalMaxPool2d(3, output_ratio=0.5,
                                      _random_samples=torch.tensor(samples))
    np.testing.assert_array_equal(pm(px.tensor(x)).numpy(), tm(torch.tensor(x)).numpy())
    free = nn.FractionalMaxPool3d(2, output_size=3, return_indices=True)
    out, idx = free(px.randn(1, 2, 6, 6, 6))
    assert out.shape == (1, 2, 3, 3, 3) and idx.shape == (1, 2, 3, 3, 3)
    with pytest.raises(ValueError, match="either an output size"):
        nn.FractionalMaxPool2d(2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.FractionalMaxPool2d(2, output_ratio=1.5)
    with pytest.raises(RuntimeError, match="exceeds the input size"):
        F.fractional_max_pool2d(px.randn(1, 1, 4, 4), 3, output_size=3)
