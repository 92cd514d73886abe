"""smooth_l1_loss / huber_loss and var / std as single ops: values and gradients (both inputs)
against PyTorch, second derivatives by finite differences, and the composed form observers see."""
import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.nn.functional as F
from phalanx.autograd import gradcheck, gradgradcheck

rng = np.random.default_rng(3)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss,param", [("smooth_l1_loss", {"beta": 0.5}),
                                        ("smooth_l1_loss", {"beta": 2.0}),
                                        ("huber_loss", {"delta": 0.7})])
def test_matches_torch(loss, param, reduction):
    x, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    x[0, 0] = t[0, 0]                                   # d = 0 exactly
    x[1, 1] = t[1, 1] + next(iter(param.values()))      # |d| = beta exactly
    ours = [px.tensor(a, requires_grad=True) for a in (x, t)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, t)]
    y = getattr(F, loss)(*ours, reduction=reduction, **param)
    yt = getattr(torch.nn.functional, loss)(*theirs, reduction=reduction, **param)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), atol=1e-12)
    g = rng.standard_normal(tuple(yt.shape))
    y.backward(px.tensor(g))
    yt.backward(torch.tensor(g))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=1e-12)


def test_second_derivatives_and_observed_form():
    x, t = (px.tensor(rng.standard_normal((3, 2)), requires_grad=True) for _ in range(2))
    assert gradgradcheck(lambda x, t: F.smooth_l1_loss(x, t, beta=0.8), (x, t))
    assert gradgradcheck(lambda x, t: F.huber_loss(x, t, reduction="sum", delta=0.6), (x, t))
    assert F.smooth_l1_loss(x, t).grad_fn.name() == "SmoothL1LossBackward0"   # PyTorch's
    with px.profiler.profile() as prof:                 # an observer sees the primitives
        F.smooth_l1_loss(x, t)
    names = {e.name for e in prof.events()}
    assert "Huber" not in names and "Where" in names


@pytest.mark.parametrize("dim,correction,keepdim", [(None, 1, False), (0, 0, True),
                                                    ((0, 2), 1, False), (1, 2, True)])
def test_var_std_match_torch(dim, correction, keepdim):
    x = rng.standard_normal((3, 4, 2))
    a, b = px.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    kw = dict(correction=correction, keepdim=keepdim)
    ours = a.var(dim, **kw) + a.std(dim, **kw) if dim is not None else a.var(**kw) + a.std(**kw)
    theirs = b.var(dim, **kw) + b.std(dim, **kw) if dim is not None else b.var(**kw) + b.std(**kw)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), atol=1e-12)
    ours.sum().backward()
    theirs.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=1e-12)
    assert gradcheck(lambda v: v.var(dim, correction=correction), (px.tensor(x, requires_grad=True),))
    assert gradgradcheck(lambda v: v.var(dim, correction=correction), (px.tensor(x, requires_grad=True),))


def test_var_without_degrees_of_freedom_warns_and_is_nan_as_in_torch():
    for lib in (px, torch):
        with pytest.warns(UserWarning, match="degrees of freedom is <= 0"):
            assert np.isnan(lib.tensor([2.0]).var().item())


def test_float16_var_sums_in_float32_as_torch():
    """A float16 variance over more than 65504 elements (float16's largest) is still right."""
    x = rng.random(70000).astype(np.float16)
    assert px.tensor(x).var().item() == torch.tensor(x).var().item()
