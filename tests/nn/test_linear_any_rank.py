"""`Linear` takes inputs of any rank (the leading dims fold inside the op): values, gradients
and second-order gradients against PyTorch, the folded form seen by observers, and the
gradient homes (DDP's bucket views) for a 3-D input."""
import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import phalanx as px
import phalanx.nn.functional as F
from phalanx.autograd import dispatch, engine
from phalanx.nn.functional.linear import Linear


@contextlib.contextmanager
def watched(seen):
    """An observer on the dispatch point that records the input shapes of every Linear."""
    def observe(cls, args, kwargs, proceed):
        if cls is Linear:
            seen.append(tuple(args[0].shape))
        return proceed(args, kwargs)
    with dispatch.intercept(observe):
        yield


@pytest.mark.parametrize("shape", [(5,), (4, 5), (3, 4, 5), (2, 1, 3, 5), (0, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch_to_second_order(shape, bias):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape), rng.standard_normal((6, 5)), rng.standard_normal(6)]
    ours = [px.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = F.linear(ours[0], ours[1], ours[2] if bias else None)
    yt = TF.linear(theirs[0], theirs[1], theirs[2] if bias else None)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), atol=1e-12)
    g = rng.standard_normal(tuple(yt.shape))
    wanted = ours if bias else ours[:2]
    grads = px.autograd.grad(y, wanted, px.tensor(g), create_graph=True)
    grads_t = torch.autograd.grad(yt, theirs if bias else theirs[:2], torch.tensor(g),
                                  create_graph=True)
    for a, b in zip(grads, grads_t):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-12)
    second = px.autograd.grad(sum((t * t).sum() for t in grads), wanted, allow_unused=True)
    second_t = torch.autograd.grad(sum((t * t).sum() for t in grads_t),
                                   theirs if bias else theirs[:2], allow_unused=True)
    for a, b in zip(second, second_t):
        np.testing.assert_allclose(0 if a is None else a.numpy(),
                                   0 if b is None else b.numpy(), atol=1e-12)
    plain = [px.tensor(a, requires_grad=True) for a in arrays]   # backward without a graph
    F.linear(plain[0], plain[1], plain[2] if bias else None).backward(px.tensor(g))
    for a, b in zip(plain, grads):
        np.testing.assert_allclose(a.grad.numpy(), b.detach().numpy(), atol=1e-12)


def test_one_op_for_any_rank_and_two_dims_while_watched():
    x, w = px.randn(3, 4, 5), px.randn(6, 5, requires_grad=True)
    y = F.linear(x, w)
    assert y.grad_fn.name() == "LinearBackward0" and y.shape == (3, 4, 6)
    seen = []
    with watched(seen):
        z = F.linear(x, w)
    assert seen == [(12, 5)]
    np.testing.assert_allclose(z.detach().numpy(), y.detach().numpy(), rtol=1e-6)


def test_weight_gradient_lands_in_its_home_for_a_3d_input():
    rng = np.random.default_rng(1)
    x = px.tensor(rng.standard_normal((3, 4, 5)))
    w = px.tensor(rng.standard_normal((6, 5)), requires_grad=True)
    b = px.tensor(rng.standard_normal(6), requires_grad=True)
    homes = {w: np.zeros((6, 5)), b: np.zeros(6)}
    handle = engine.register_backward_start_hook(lambda leaves: homes)
    try:
        F.linear(x, w, b).sum().backward()
    finally:
        handle.remove()
    assert w.grad._data is homes[w] and b.grad._data is homes[b]
    np.testing.assert_allclose(homes[w], np.broadcast_to(x.numpy().reshape(-1, 5).sum(0),
                                                         (6, 5)))
    np.testing.assert_allclose(homes[b], np.full(6, 12.0))


def test_shape_mismatch_says_what_pytorch_says():
    for lib in (px, torch):
        with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied "
                                               r"\(6x9 and 8x3\)"):
            lib.nn.Linear(8, 3)(lib.ones(2, 3, 9))


@pytest.mark.parametrize("shape", [(2, 3, 0), (0, 3, 4), (2, 0, 4)])
@pytest.mark.parametrize("grad_mode", ["record", "arrays"])
def test_empty_inputs_and_zero_features_as_pytorch(shape, grad_mode):
    """Zero input features (a tensor-parallel rank with an empty shard) or no rows: PyTorch's
    values (the bias alone) and gradients, also for inputs of rank 3."""
    out_features = 5
    got = []
    for lib in (px, torch):
        x = lib.ones(*shape, dtype=lib.float64, requires_grad=True)
        w = lib.ones(out_features, shape[-1], dtype=lib.float64, requires_grad=True)
        b = lib.arange(out_features, dtype=lib.float64).requires_grad_()
        y = lib.nn.functional.linear(x, w, b)
        g = lib.ones(*y.shape, dtype=lib.float64) * 2
        if grad_mode == "record" and lib is px:
            gx, gw, gb = px.autograd.grad(y, (x, w, b), g, create_graph=True)
        else:
            gx, gw, gb = lib.autograd.grad(y, (x, w, b), g)
        got.append([t.detach().numpy() for t in (y, gx, gw, gb)])
    for mine, theirs in zip(*got):
        assert mine.shape == theirs.shape
        np.testing.assert_array_equal(mine, theirs)
