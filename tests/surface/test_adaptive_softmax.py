"""AdaptiveLogSoftmaxWithLoss against PyTorch's with the same weights: outputs, loss,
gradients, log_prob, predict, unbatched input, errors."""
import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.nn as nn


def _pair(head_bias):
    torch.manual_seed(0)
    tm = torch.nn.AdaptiveLogSoftmaxWithLoss(16, 50, [5, 20, 35], div_value=2.0,
                                             head_bias=head_bias).double()
    pm = nn.AdaptiveLogSoftmaxWithLoss(16, 50, [5, 20, 35], div_value=2.0, head_bias=head_bias)
    assert sorted(pm.state_dict()) == sorted(tm.state_dict())
    pm.load_state_dict({k: px.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    return pm.double(), tm


@pytest.mark.parametrize("head_bias", [False, True])
def test_matches_torch(head_bias):
    pm, tm = _pair(head_bias)
    x = np.random.default_rng(0).standard_normal((12, 16))
    y = np.array([0, 4, 5, 19, 20, 34, 35, 49, 1, 25, 40, 7])
    px_x, t_x = px.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    po, to = pm(px_x, px.tensor(y)), tm(t_x, torch.tensor(y))
    np.testing.assert_allclose(po.output.detach().numpy(), to.output.detach().numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(po.loss.item(), to.loss.item(), rtol=1e-12)
    po.loss.backward()
    to.loss.backward()
    np.testing.assert_allclose(px_x.grad.numpy(), t_x.grad.numpy(), rtol=1e-10, atol=1e-14)
    for (name, p), t in zip(pm.named_parameters(), tm.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-14,
                                   err_msg=name)
    np.testing.assert_allclose(pm.log_prob(px.tensor(x)).detach().numpy(),
                               tm.log_prob(torch.tensor(x)).detach().numpy(), rtol=1e-12)
    np.testing.assert_array_equal(pm.predict(px.tensor(x)).numpy(),
                                  tm.predict(torch.tensor(x)).numpy())
    one = pm(px.tensor(x[3]), px.tensor(y[3]))
    assert one.output.shape == () and abs(one.output.item() - po.output[3].item()) < 1e-12
    assert repr(pm) == repr(tm)


def test_errors():
    with pytest.raises(ValueError, match="cutoffs"):
        nn.AdaptiveLogSoftmaxWithLoss(8, 10, [5, 3])
    m = nn.AdaptiveLogSoftmaxWithLoss(32, 10, [3, 6])
    with pytest.raises(RuntimeError, match=r"Target values should be in \[0, 9\]"):
        m(px.randn(2, 32), px.tensor([1, 10]))
    with pytest.raises(RuntimeError, match="features"):
        m(px.randn(2, 31), px.tensor([1, 2]))
