"""nn.init: bounds and spreads of each initialiser, gains as PyTorch's table, seeding."""
import math

import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.nn as nn
from phalanx.nn import init


@pytest.mark.parametrize("name,param", [("linear", None), ("conv2d", None), ("sigmoid", None),
                                        ("tanh", None), ("relu", None), ("leaky_relu", None),
                                        ("leaky_relu", 0.2), ("selu", None)])
def test_calculate_gain_matches_torch(name, param):
    assert init.calculate_gain(name, param) == pytest.approx(
        torch.nn.init.calculate_gain(name, param))


def test_calculate_gain_error():
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")


def test_fans():
    w = px.empty(8, 3, 5, 5)
    assert init._calculate_fan_in_and_fan_out(w) == (75, 200)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(px.empty(5))


def _stats(t):
    d = t._data.astype(np.float64)
    return d.mean(), d.std(), np.abs(d).max()


SHAPE = (256, 512)  # fan_in 512, fan_out 256


@pytest.mark.parametrize("fn,kwargs,bound,std", [
    (init.uniform_, {"a": -0.3, "b": 0.3}, 0.3, 0.3 / math.sqrt(3)),
    (init.normal_, {"mean": 0.0, "std": 0.05}, None, 0.05),
    (init.xavier_uniform_, {"gain": 2.0}, 2 * math.sqrt(6 / 768), 2 * math.sqrt(2 / 768)),
    (init.xavier_normal_, {}, None, math.sqrt(2 / 768)),
    (init.kaiming_uniform_, {"a": math.sqrt(5)}, 1 / math.sqrt(512), 1 / math.sqrt(3 * 512)),
    (init.kaiming_uniform_, {"mode": "fan_out", "nonlinearity": "relu"},
     math.sqrt(6 / 256), math.sqrt(2 / 256)),
    (init.kaiming_normal_, {"nonlinearity": "relu"}, None, math.sqrt(2 / 512)),
    (init.kaiming_normal_, {"mode": "fan_out", "nonlinearity": "leaky_relu", "a": 0.1}, None,
     math.sqrt(2 / 1.01 / 256)),
    (init.trunc_normal_, {"std": 0.02, "a": -0.04, "b": 0.04}, 0.04, None),
])
def test_distribution(fn, kwargs, bound, std):
    t = fn(px.empty(*SHAPE), **kwargs)
    mean, s, mx = _stats(t)
    ref = torch.empty(*SHAPE)
    getattr(torch.nn.init, fn.__name__)(ref, **kwargs)
    assert abs(mean) < 0.02 * (std or bound) * 10
    if bound is not None:
        assert mx <= bound + 1e-6 and mx > 0.97 * bound
        assert mx == pytest.approx(ref.abs().max().item(), rel=0.03)
    np.testing.assert_allclose(s, ref.std().item(), rtol=0.03)
    if std is not None:
        np.testing.assert_allclose(s, std, rtol=0.03)


def test_trunc_normal_shape_of_distribution():
    t = init.trunc_normal_(px.empty(200000), mean=1.0, std=2.0, a=0.0, b=3.0)
    ref = torch.nn.init.trunc_normal_(torch.empty(200000), mean=1.0, std=2.0, a=0.0, b=3.0)
    d = t._data
    assert d.min() >= 0.0 and d.max() <= 3.0
    np.testing.assert_allclose([d.mean(), d.std()], [ref.mean().item(), ref.std().item()],
                               rtol=0.02)


def test_constants_eye_dirac_orthogonal():
    assert (init.ones_(px.empty(3, 2))._data == 1).all()
    assert (init.zeros_(px.empty(3, 2))._data == 0).all()
    assert (init.constant_(px.empty(3), 0.5)._data == 0.5).all()
    np.testing.assert_array_equal(init.eye_(px.empty(3, 4))._data, np.eye(3, 4))
    dirac = init.dirac_(px.empty(4, 2, 3, 3))
    ref = torch.nn.init.dirac_(torch.empty(4, 2, 3, 3))
    np.testing.assert_array_equal(dirac._data, ref.numpy())
    for shape in [(6, 4), (4, 6), (3, 2, 2)]:
        w = init.orthogonal_(px.empty(*shape), gain=2.0)._data.reshape(shape[0], -1)
        small = min(w.shape)
        gram = w @ w.T if w.shape[0] == small else w.T @ w
        np.testing.assert_allclose(gram, 4 * np.eye(small), atol=1e-5)


def test_seeded_and_in_place():
    w = px.empty(5, 5)
    data = w._data
    v0 = w._version[0]
    px.manual_seed(7)
    init.kaiming_normal_(w)
    a = w._data.copy()
    px.manual_seed(7)
    init.kaiming_normal_(w)
    np.testing.assert_array_equal(a, w._data)
    assert w._data is data and w._version[0] > v0
    g = px.Generator().manual_seed(1)
    b = init.normal_(px.empty(3), generator=g)._data.copy()
    g.manual_seed(1)
    np.testing.assert_array_equal(b, init.normal_(px.empty(3), generator=g)._data)
    p = nn.Parameter(px.zeros(4, 4))
    init.xavier_uniform_(p)  # works on a parameter that requires grad (no graph)
    assert p.grad_fn is None and p._data.any()


def test_float64_keeps_dtype():
    w = init.normal_(px.empty(3, 3, dtype=px.float64))
    assert w.dtype == px.float64
