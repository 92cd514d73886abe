"""nn.utils: gradient clipping and parameter vectors, against PyTorch."""
import math

import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.nn as nn
from phalanx.nn.utils import (clip_grad_norm_, clip_grad_value_, parameters_to_vector,
                              vector_to_parameters)


def _pair():
    torch.manual_seed(0)   # float32 gradients agree to ~1e-6: keep the weights fixed
    tm = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    pm = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    pm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32) * 3
    tm(torch.tensor(x)).pow(2).sum().backward()
    pm(px.tensor(x)).pow(2).sum().backward()
    return tm, pm


@pytest.mark.parametrize("max_norm,norm_type", [(0.5, 2.0), (100.0, 2.0), (0.1, 1.0),
                                                (0.05, math.inf), (0.2, 3.0)])
def test_clip_grad_norm_matches_torch(max_norm, norm_type):
    tm, pm = _pair()
    tn = torch.nn.utils.clip_grad_norm_(tm.parameters(), max_norm, norm_type)
    pn = clip_grad_norm_(pm.parameters(), max_norm, norm_type)
    assert pn.item() == pytest.approx(tn.item(), rel=1e-5)
    for (name, tp), pp in zip(tm.named_parameters(), pm.parameters()):
        np.testing.assert_allclose(pp.grad.numpy(), tp.grad.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_clip_grad_norm_edge_cases():
    p = nn.Parameter(px.ones(3))
    assert clip_grad_norm_([p], 1.0).item() == 0.0  # no gradients at all
    p.grad = px.tensor([float("nan"), 1.0, 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(p, 1.0, error_if_nonfinite=True)


def test_clip_grad_value_matches_torch():
    tm, pm = _pair()
    torch.nn.utils.clip_grad_value_(tm.parameters(), 0.3)
    clip_grad_value_(pm.parameters(), 0.3)
    for tp, pp in zip(tm.parameters(), pm.parameters()):
        np.testing.assert_allclose(pp.grad.numpy(), tp.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert max(float(abs(pp.grad._data).max()) for pp in pm.parameters()) <= np.float32(0.3)


def test_parameters_vector_round_trip():
    tm, pm = _pair()
    tv = torch.nn.utils.parameters_to_vector(tm.parameters())
    pv = parameters_to_vector(pm.parameters())
    np.testing.assert_array_equal(pv.numpy(force=True), tv.detach().numpy())
    new = px.arange(pv.numel(), dtype=px.float32)
    vector_to_parameters(new, pm.parameters())
    torch.nn.utils.vector_to_parameters(torch.arange(tv.numel(), dtype=torch.float32),
                                        tm.parameters())
    for tp, pp in zip(tm.parameters(), pm.parameters()):
        np.testing.assert_array_equal(pp.numpy(force=True), tp.detach().numpy())
    # differentiable: d(sum(vec * 2)) / d param = 2
    pm.zero_grad()
    (parameters_to_vector(pm.parameters()) * 2).sum().backward()
    assert all((p.grad._data == 2).all() for p in pm.parameters())
    with pytest.raises(RuntimeError, match="has 3 elements but the parameters hold"):
        vector_to_parameters(px.ones(3), pm.parameters())
    with pytest.raises(TypeError, match="expected vec to be a Tensor"):
        vector_to_parameters([1.0], pm.parameters())
