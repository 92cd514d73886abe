"""The one-Function forms of layer_norm (`_LayerNorm`) and nll_loss (`NLLLoss`) on the CPU:
against PyTorch, against the composed forms they replace, and to second order."""
import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import phalanx as px
import phalanx.nn.functional as F
from phalanx.autograd import dispatch, gradcheck, gradgradcheck
from phalanx.nn.functional import loss, normalization

rng = np.random.default_rng(0)


@contextlib.contextmanager
def composed():
    """An observer on the dispatch point: the ops then run as their primitives."""
    with dispatch.intercept(lambda cls, args, kwargs, proceed: proceed(args, kwargs)):
        yield


def _both(arrays):
    return ([None if a is None else px.tensor(a, requires_grad=True) for a in arrays],
            [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays])


def _compare(y, yt, ours, theirs, rtol):
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=rtol, atol=rtol)
    g = rng.standard_normal(tuple(yt.shape)).astype(y.detach().numpy().dtype)
    y.backward(px.tensor(g))
    yt.backward(torch.tensor(g))
    for a, b in zip(ours, theirs):
        if a is not None:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=rtol)


# ---- layer norm ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,normalized", [((12, 8, 32), (32,)), ((3, 4, 5), (4, 5)),
                                              ((7,), (7,)), ((2, 3, 6), (2, 3, 6))])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_matches_torch(shape, normalized, affine, dtype):
    arrays = [rng.standard_normal(shape).astype(dtype) * 3 + 1,
              rng.standard_normal(normalized).astype(dtype) if affine != "none" else None,
              rng.standard_normal(normalized).astype(dtype) if affine == "both" else None]
    ours, theirs = _both(arrays)
    _compare(F.layer_norm(ours[0], normalized, ours[1], ours[2]),
             TF.layer_norm(theirs[0], normalized, theirs[1], theirs[2]), ours, theirs,
             1e-5 if dtype == np.float32 else 1e-11)


def test_layer_norm_of_a_strided_input_and_the_fused_path_is_taken(monkeypatch):
    x = rng.standard_normal((5, 6, 4))
    ours, theirs = _both([x, rng.standard_normal(6), rng.standard_normal(6)])
    calls = []
    forward = normalization._LayerNorm.forward
    monkeypatch.setattr(normalization._LayerNorm, "forward",
                        staticmethod(lambda *a: calls.append(1) or forward(*a)))
    y = F.layer_norm(ours[0].transpose(1, 2), (6,), ours[1], ours[2])
    yt = TF.layer_norm(theirs[0].transpose(1, 2), (6,), theirs[1], theirs[2])
    _compare(y, yt, ours, theirs, 1e-11)
    assert calls == [1]
    with composed():
        F.layer_norm(ours[0], (4,))
    assert calls == [1]


def test_layer_norm_float16_takes_statistics_in_float32():
    """float16 runs composed, with the statistics in float32 (squared deviations of a few
    hundred overflow float16), as PyTorch's kernels."""
    x = rng.standard_normal((4, 300)).astype(np.float16) * 100 + 1000
    g = rng.standard_normal((4, 300)).astype(np.float16)
    ours, theirs = _both([x])
    y, yt = F.layer_norm(ours[0], (300,)), TF.layer_norm(theirs[0], (300,))
    assert y.dtype == px.float16
    np.testing.assert_allclose(y.detach().numpy().astype(np.float64),
                               yt.detach().numpy().astype(np.float64), atol=2e-3)
    y.backward(px.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(ours[0].grad.numpy().astype(np.float64),
                               theirs[0].grad.numpy().astype(np.float64), atol=1e-4)


def test_layer_norm_second_order_matches_composed():
    arrays = [rng.standard_normal((3, 4, 5)), rng.standard_normal((4, 5)),
              rng.standard_normal((4, 5))]
    results = []
    for ctx in (contextlib.nullcontext(), composed()):
        x, w, b = (px.tensor(a, requires_grad=True) for a in arrays)
        with ctx:
            y = F.layer_norm(x, (4, 5), w, b)
            grads = px.autograd.grad(y, [x, w, b], px.ones_like(y) * 0.7, create_graph=True)
            second = px.autograd.grad(sum((g * g).sum() for g in grads), [x, w, b],
                                      allow_unused=True)
        results.append([None if t is None else t.detach().numpy()
                        for t in (y, *grads, *second)])
    for a, b in zip(*results):   # the bias's gradient is constant: none, or zeros
        np.testing.assert_allclose(0 if a is None else a, 0 if b is None else b, rtol=1e-10,
                                   atol=1e-12)
    x, w, b = (px.tensor(a, requires_grad=True) for a in (arrays[0][:2], *arrays[1:]))
    assert gradcheck(lambda *t: F.layer_norm(t[0], (4, 5), t[1], t[2]), (x, w, b))
    assert gradgradcheck(lambda *t: F.layer_norm(t[0], (4, 5), t[1], t[2]), (x, w, b))


# ---- nll_loss --------------------------------------------------------------------------------
def _nll_case(kind):
    """input, target and keyword arguments of one nll_loss case."""
    if kind == "1d":
        return rng.standard_normal(5), np.array(3), {}
    if kind == "4d":
        return rng.standard_normal((2, 4, 3, 3)), rng.integers(0, 4, (2, 3, 3)), {}
    x, t = rng.standard_normal((6, 5)), np.array([0, 4, 2, 2, 1, 3])
    if kind == "weight_ignore":
        return x, t, {"weight": rng.uniform(0.5, 2, 5), "ignore_index": 2}
    if kind == "all_ignored":
        return x, np.full(6, -100), {}
    if kind == "zero_weights":
        return x, t, {"weight": np.zeros(5)}
    return x, t, {}


@pytest.mark.parametrize("kind", ["2d", "1d", "4d", "weight_ignore", "all_ignored",
                                  "zero_weights"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_matches_torch(kind, reduction):
    x, t, kwargs = _nll_case(kind)
    ours, theirs = _both([x])
    weight = kwargs.pop("weight", None)
    y = F.nll_loss(ours[0], px.tensor(t), weight=None if weight is None else px.tensor(weight),
                   reduction=reduction, **kwargs)
    yt = TF.nll_loss(theirs[0], torch.tensor(t), weight=None if weight is None else
                     torch.tensor(weight), reduction=reduction, **kwargs)
    assert y.shape == tuple(yt.shape) and y.dtype == px.float64
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), atol=1e-12)
    g = rng.standard_normal(tuple(yt.shape))
    y.backward(px.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(ours[0].grad.numpy(), theirs[0].grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_second_order_matches_composed(reduction):
    x, t, kwargs = _nll_case("weight_ignore")
    results = []
    for ctx in (contextlib.nullcontext(), composed()):
        inp = px.tensor(x, requires_grad=True)
        with ctx:
            y = F.nll_loss(inp.log_softmax(1), px.tensor(t), weight=px.tensor(kwargs["weight"]),
                           ignore_index=2, reduction=reduction)
            g, = px.autograd.grad(y, [inp], px.ones_like(y) * 0.3, create_graph=True)
            second, = px.autograd.grad((g * g).sum(), [inp])
        results.append([y.detach().numpy(), g.detach().numpy(), second.numpy()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    inp = px.tensor(x, requires_grad=True)
    f = lambda a: F.nll_loss(a, px.tensor(t), reduction=reduction)  # noqa: E731
    assert gradcheck(f, (inp,)) and gradgradcheck(f, (inp,))


def test_nll_loss_fused_path_edges(monkeypatch):
    calls = []
    forward = loss.NLLLoss.forward
    monkeypatch.setattr(loss.NLLLoss, "forward",
                        staticmethod(lambda *a: calls.append(1) or forward(*a)))
    x = np.log(np.full((3, 4), 0.25))
    x[1] = -np.inf                               # an ignored row may hold -inf
    inp = px.tensor(x, requires_grad=True)
    y = F.nll_loss(inp, px.tensor([1, -100, 3]))
    y.backward()
    assert calls == [1] and np.isfinite(float(y)) and np.isfinite(inp.grad.numpy()).all()
    np.testing.assert_allclose(float(y), np.log(4))
    weight = px.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)   # composed: weight's gradient
    F.nll_loss(px.tensor(np.zeros((2, 4))), px.tensor([1, 3]), weight=weight,
               reduction="sum").backward()
    assert calls == [1] and weight.grad is not None
    with pytest.raises(IndexError, match="Target 4 is out of bounds"):
        F.nll_loss(inp, px.tensor([0, 4, 1]))
    with pytest.raises(RuntimeError, match="weight tensor should be defined either for all 4 "
                                           "classes or no classes"):
        F.nll_loss(inp, px.tensor([0, 1, 1]), weight=px.ones(3))
