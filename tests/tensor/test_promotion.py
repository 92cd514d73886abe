"""Type promotion and Python-scalar rules against PyTorch, and `set_default_dtype`."""
import itertools

import numpy as np
import pytest
import torch

import phalanx as px

DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]


def _pair(name, shape=(2,)):
    a = np.ones(shape, dtype=name)
    return px.tensor(a), torch.tensor(a)


def _name(t):
    return t.dtype.name if isinstance(t, px.Tensor) else str(t.dtype).replace("torch.", "")


@pytest.mark.parametrize("a,b", list(itertools.product(DTYPES, DTYPES)))
def test_tensor_tensor_promotion(a, b):
    pa, ta = _pair(a)
    pb, tb = _pair(b)
    assert _name(pa + pb) == _name(ta + tb)
    assert px.promote_types(getattr(px, a), getattr(px, b)).name == \
        _name(torch.empty(0, dtype=torch.promote_types(getattr(torch, a), getattr(torch, b))))


@pytest.mark.parametrize("a,b", list(itertools.product(DTYPES, DTYPES)))
def test_zero_dim_tensor_does_not_promote_within_category(a, b):
    pa, ta = _pair(a)
    pb, tb = _pair(b, shape=())
    assert _name(pa * pb) == _name(ta * tb)
    assert _name(pb * pa) == _name(tb * ta)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scalar", [True, 3, -2, 2.5, np.float64(1.5), np.int64(2)])
@pytest.mark.parametrize("op", ["add", "mul", "rsub", "div", "eq", "where"])
def test_python_scalar_promotion(dtype, scalar, op):
    pa, ta = _pair(dtype)
    if op == "rsub" and (dtype == "bool" or isinstance(scalar, bool)):
        pytest.skip("torch forbids subtraction with bool")
    fns = {"add": lambda x, s: x + s, "mul": lambda x, s: s * x, "rsub": lambda x, s: s - x,
           "div": lambda x, s: x / s, "eq": lambda x, s: x == s,
           "where": lambda x, s: x.masked_fill(x != x, s)}
    p, t = fns[op](pa, scalar), fns[op](ta, scalar)
    assert _name(p) == _name(t)
    np.testing.assert_allclose(p.numpy().astype(np.float64), t.numpy().astype(np.float64))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_set_default_dtype(dtype):
    old = px.get_default_dtype()
    try:
        px.set_default_dtype(getattr(px, dtype))
        assert px.get_default_dtype() is getattr(px, dtype)
        assert px.tensor([1.5]).dtype.name == dtype
        assert px.zeros(2).dtype.name == dtype
        assert px.randn(2).dtype.name == dtype
        assert px.arange(0, 1, 0.5).dtype.name == dtype
        assert (px.tensor([1, 2]) * 0.5).dtype.name == dtype
        assert (px.tensor([1, 2]) / 2).dtype.name == dtype
        assert px.tensor([1, 2]).exp().dtype.name == dtype
        assert px.tensor([1, 2]).dtype is px.int64  # ints do not follow it
    finally:
        px.set_default_dtype(old)
    assert px.tensor([1.5]).dtype is px.float32


def test_set_default_dtype_rejects_integers():
    with pytest.raises(TypeError, match="floating point"):
        px.set_default_dtype(px.int64)


@pytest.mark.parametrize("src,dst", list(itertools.product(DTYPES, DTYPES)))
def test_to_dtype_matches_torch(src, dst):
    a = np.array([0, 1, 2, 3], dtype=src)
    p = px.tensor(a).to(getattr(px, dst))
    t = torch.tensor(a).to(getattr(torch, dst))
    assert _name(p) == dst
    np.testing.assert_array_equal(p.numpy(), t.numpy())
