"""phalanx.utils.checkpoint gives PyTorch's checkpoint values and gradients (parameters
inside the segment included) and checks its options as PyTorch does."""
import warnings

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
