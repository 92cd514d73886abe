"""phalanx.utils.checkpoint gives PyTorch's checkpoint values and gradients (parameters
inside the segment included) and checks its options as PyTorch does."""
import gc
import warnings
import weakref

import numpy as np
import pytest
import torch

import phalanx as px
from phalanx.utils.checkpoint import checkpoint, checkpoint_sequential


def _models():
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    pm = px.nn.Sequential(px.nn.Linear(3, 4), px.nn.Tanh(), px.nn.Linear(4, 2))
    pm.load_state_dict({k: px.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return pm, tm


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_values_and_gradients_match_torch(use_reentrant):
    pm, tm = _models()
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    px_x = px.tensor(x, requires_grad=True)
    t_x = torch.tensor(x, requires_grad=True)
    p_out = checkpoint(pm, px_x, use_reentrant=use_reentrant)
    t_out = torch.utils.checkpoint.checkpoint(tm, t_x, use_reentrant=use_reentrant)
    p_out.square().sum().backward()
    t_out.square().sum().backward()
    np.testing.assert_allclose(p_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(px_x.grad.numpy(), t_x.grad.numpy(), rtol=1e-5, atol=1e-7)
    for p, t in zip(pm.parameters(), tm.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_sequential_and_options():
    pm, tm = _models()
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(
        checkpoint_sequential(pm, 2, px.tensor(x), use_reentrant=False).detach().numpy(),
        torch.utils.checkpoint.checkpoint_sequential(tm, 2, torch.tensor(x),
                                                     use_reentrant=False).detach().numpy(),
        rtol=1e-6)
    assert checkpoint(lambda a, b=1: a * b, px.ones(2), b=3,
                      use_reentrant=False).sum().item() == 6.0
    with pytest.raises(ValueError, match="Unexpected keyword"):
        checkpoint(lambda a, b=1: a * b, px.ones(2), b=3, use_reentrant=True)
    with pytest.warns(UserWarning, match="use_reentrant"):
        checkpoint(lambda a: a, px.ones(1))
    with pytest.raises(ValueError, match="determinism_check"):
        checkpoint(lambda a: a, px.ones(1), use_reentrant=False, determinism_check="strict")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert px.utils.checkpoint.checkpoint is checkpoint


def _segment(keep):
    """x -> tanh(x @ w) * x, remembering its intermediate (weakly) in `keep`."""
    def fn(x, w):
        h = (x @ w).tanh()
        keep.append(weakref.ref(h))
        return h * x
    return fn


def test_the_segment_keeps_no_activations_and_recomputes_them_in_backward():
    x = px.randn(4, 4, requires_grad=True)
    w = px.randn(4, 4, requires_grad=True)
    keep = []
    out = checkpoint(_segment(keep), x, w, use_reentrant=False)
    gc.collect()
    assert keep[0]() is None                       # freed: nothing holds the intermediate
    plain_keep = []
    plain = _segment(plain_keep)(x, w)
    assert plain_keep[0]() is not None             # a plain run's graph holds it
    g = px.randn(4, 4)
    ours = px.autograd.grad(out, (x, w), g)
    assert len(keep) == 2                          # the backward ran the segment again
    theirs = px.autograd.grad(plain, (x, w), g)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_parameters_and_captured_tensors_get_gradients_without_grad_inputs():
    lin = px.nn.Linear(3, 3)
    base = px.randn(3, requires_grad=True)
    x = px.randn(2, 3)                                    # no grad
    grads = []
    for checkpointed in (True, False):
        outer = base * 2                                  # captured, not a leaf
        out = checkpoint(lambda t: lin(t) * outer, x, use_reentrant=False) if checkpointed \
            else lin(x) * outer
        out.sum().backward()
        grads.append([t.grad.numpy().copy() for t in (lin.weight, lin.bias, base)])
        lin.zero_grad()
        base.grad = None
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("preserve", [True, False])
def test_dropout_recomputes_the_same_mask_unless_told_not_to(preserve):
    x = px.ones(64, 64, requires_grad=True)

    def fn(t):
        return px.nn.functional.dropout(t, 0.5) * t

    px.manual_seed(0)
    out = checkpoint(fn, x, use_reentrant=False, preserve_rng_state=preserve)
    after_forward = px.rand(1).item()
    out.sum().backward()
    px.manual_seed(0)
    plain_x = px.ones(64, 64, requires_grad=True)
    fn(plain_x).sum().backward()
    same = np.array_equal(x.grad.numpy(), plain_x.grad.numpy())
    assert same == preserve
    px.manual_seed(0)
    checkpoint(fn, px.ones(64, 64, requires_grad=True), use_reentrant=False)
    assert px.rand(1).item() == after_forward   # backward's replay leaves the stream alone


def test_tuple_and_dict_outputs_and_an_input_changed_in_place():
    x = px.randn(3, requires_grad=True)
    a, b = checkpoint(lambda t: (t * 2, t.exp()), x, use_reentrant=False)
    d = checkpoint(lambda t: {"sq": t * t}, x, use_reentrant=False)
    (a.sum() + b.sum() + d["sq"].sum()).backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 + np.exp(x.detach().numpy()) +
                               2 * x.detach().numpy(), rtol=1e-6)
    y = px.randn(3, requires_grad=True) * 1
    out = checkpoint(lambda t: t * t, y, use_reentrant=False)
    with px.no_grad():
        y.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_second_derivatives_and_autocast_go_through_the_recomputation():
    x = px.randn(3, dtype=px.float64, requires_grad=True)
    assert px.autograd.gradgradcheck(
        lambda t: checkpoint(lambda u: (u.sin() * u).sum(), t, use_reentrant=False), (x,))
    lin = px.nn.Linear(4, 4)
    x = px.randn(2, 4, requires_grad=True)
    with px.autocast("cpu", dtype=px.bfloat16):
        out = checkpoint(lin, x, use_reentrant=False)
    assert out.dtype is px.bfloat16
    out.float().sum().backward()
    ours = x.grad.numpy().copy()
    x.grad = None
    with px.autocast("cpu", dtype=px.bfloat16):
        plain = lin(x)
    plain.float().sum().backward()
    np.testing.assert_array_equal(ours, x.grad.numpy())   # recomputed in bfloat16 too


def test_sequential_in_several_segments_matches_plain():
    px.manual_seed(0)
    layers = px.nn.Sequential(*[m for _ in range(3) for m in (px.nn.Linear(4, 4),
                                                             px.nn.Tanh())])
    x = px.randn(2, 4, requires_grad=True)
    out = checkpoint_sequential(layers, 3, x, use_reentrant=False)
    out.sum().backward()
    ours = [p.grad.numpy().copy() for p in layers.parameters()] + [x.grad.numpy().copy()]
    layers.zero_grad()
    x.grad = None
    np.testing.assert_allclose(out.detach().numpy(), layers(x).detach().numpy(), rtol=1e-6)
    layers(x).sum().backward()
    for a, b in zip(ours, [p.grad.numpy() for p in layers.parameters()] + [x.grad.numpy()]):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.mpi_skip
def test_ddp_averages_the_gradients_of_checkpointed_segments(world_of_one):
    px.manual_seed(0)
    net = px.nn.Sequential(px.nn.Linear(4, 8), px.nn.Tanh(), px.nn.Linear(8, 2))
    plain = px.nn.Sequential(px.nn.Linear(4, 8), px.nn.Tanh(), px.nn.Linear(8, 2))
    plain.load_state_dict(net.state_dict())
    ddp = px.nn.parallel.DistributedDataParallel(net)
    x = px.randn(3, 4)
    for _ in range(2):      # the second step reuses the buckets the first one set up
        ddp.zero_grad()
        checkpoint(lambda t: ddp(t), x, use_reentrant=False).square().sum().backward()
    plain(x).square().sum().backward()
    for a, b in zip(net.parameters(), plain.parameters()):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6)
