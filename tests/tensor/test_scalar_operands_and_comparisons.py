"""A floating tensor with a Python number (the shortcut in `binary_operands`), comparisons of
tensors that require grad (never linked into the graph), and log_softmax's gradients (backward
reuses the forward's softmax) against PyTorch."""
import operator

import numpy as np
import pytest
import torch

import phalanx as px
from phalanx.autograd import gradgradcheck
from phalanx.tensor.ops import _util

OPS = [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow,
       operator.floordiv, operator.mod, operator.lt, operator.le, operator.gt, operator.ge,
       operator.eq, operator.ne]
SCALARS = [0.5, 3, True, -2, 1e6, 70000, 2 ** 70, -0.0, float("inf"), float("nan")]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("scalar_first", [False, True])
def test_number_shortcut_gives_what_the_general_promotion_gives(monkeypatch, dtype,
                                                                scalar_first):
    """Every op, every kind of number (bool, int, float, huge, inf, nan), either side: the
    shortcut for a floating tensor and a Python number changes no dtype and no bit."""
    x = px.tensor(np.array([[-1.5, 0.5, 2.0], [3.0, 0.0, 60000.0]], dtype=dtype))

    def results():
        out = []
        for op in OPS:
            for scalar in SCALARS:
                try:
                    with np.errstate(all="ignore"):
                        r = op(scalar, x) if scalar_first else op(x, scalar)
                    out.append((r.dtype, r.numpy().tobytes()))
                except Exception as e:  # noqa: BLE001 - the same error either way
                    out.append((type(e), str(e)))
        return out
    shortcut = results()
    monkeypatch.setattr(_util, "_REAL_NUMBERS", frozenset())
    assert results() == shortcut


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", OPS, ids=lambda op: op.__name__)
@pytest.mark.parametrize("scalar", [0.5, 3, -2], ids=repr)
@pytest.mark.parametrize("scalar_first", [False, True])
def test_float_tensor_with_a_number_matches_torch(dtype, op, scalar, scalar_first):
    x = np.array([[-1.5, 0.5, 2.0], [3.0, 0.25, 7.0]], dtype=dtype)
    ours, theirs = px.tensor(x), torch.tensor(x)
    with np.errstate(all="ignore"):     # (-1.5) ** 0.5 is nan in both
        got, want = (op(scalar, ours), op(scalar, theirs)) if scalar_first else \
            (op(ours, scalar), op(theirs, scalar))
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    np.testing.assert_allclose(got.numpy().astype(np.float64),
                               want.numpy().astype(np.float64), rtol=1e-6)


def test_zero_dim_and_integer_tensors_keep_their_promotion():
    assert (px.tensor(2.0, dtype=px.float16) * 3.5).dtype == px.float16
    assert (px.tensor([1, 2]) * 0.5).dtype == px.float32
    assert (px.tensor([1, 2]) < 1.5).tolist() == [True, False]
    assert (px.tensor([1, 2], dtype=px.uint8) + 3).dtype == px.uint8


def test_comparisons_of_tensors_that_require_grad_are_not_linked():
    x = px.tensor([0.2, -1.0, 3.0], requires_grad=True)
    for out in (x < 0.5, x == x, x >= 0, (x > 0) & (x < 1), x.isnan()):
        assert out.grad_fn is None and not out.requires_grad
    y = (x * (x > 0)).sum()   # a mask from a comparison still multiplies in the graph
    y.backward()
    assert x.grad.tolist() == [1.0, 0.0, 1.0]


@pytest.mark.parametrize("shape,dim", [((4, 7), 1), ((3, 4, 5), 0), ((6,), -1)])
def test_log_softmax_gradients_match_torch(shape, dim):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * 4
    g = rng.standard_normal(shape)
    ours, theirs = px.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = ours.log_softmax(dim), theirs.log_softmax(dim)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), atol=1e-12)
    gx, = px.autograd.grad(y, [ours], px.tensor(g), create_graph=True)
    gxt, = torch.autograd.grad(yt, [theirs], torch.tensor(g), create_graph=True)
    np.testing.assert_allclose(gx.detach().numpy(), gxt.detach().numpy(), atol=1e-12)
    (gx * gx).sum().backward()
    (gxt * gxt).sum().backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), atol=1e-11)
    assert gradgradcheck(lambda t: t.log_softmax(dim), (px.tensor(x, requires_grad=True),))


def test_log_softmax_without_grad_then_with():
    x = px.tensor(np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32))
    with px.no_grad():
        a = x.log_softmax(1)
    x.requires_grad_(True)
    b = x.log_softmax(1)
    b.backward(px.ones_like(b))
    np.testing.assert_allclose(a.numpy(), b.detach().numpy())
    want = 1 - 5 * np.exp(b.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-5, atol=1e-6)
