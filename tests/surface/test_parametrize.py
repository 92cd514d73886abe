"""nn.utils.parametrize and parametrizations.weight_norm against PyTorch's: state-dict keys,
values, gradients, assignment through right_inverse, chains, removal."""
import numpy as np
import pytest
import torch

import phalanx as px

P = px.nn.utils.parametrize


def _symmetric(lib):
    class Symmetric(lib.nn.Module):
        def forward(self, X):
            return X.triu() + X.triu(1).transpose(-1, -2)
    return Symmetric()


def _scaled(lib):
    class Scaled(lib.nn.Module):
        def forward(self, X):
            return 2 * X

        def right_inverse(self, X):
            return X / 2
    return Scaled()


def test_weight_norm_matches_torch():
    torch.manual_seed(0)
    tm = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(3, 4).double(), dim=1)
    pm = px.nn.utils.parametrizations.weight_norm(px.nn.Linear(3, 4).double(), dim=1)
    assert sorted(pm.state_dict()) == sorted(tm.state_dict())
    pm.load_state_dict({k: px.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3))
    po, to = pm(px.tensor(x)), tm(torch.tensor(x))
    np.testing.assert_allclose(po.detach().numpy(), to.detach().numpy(), rtol=1e-12)
    po.sum().backward()
    to.sum().backward()
    for (name, p), (_, t) in zip(sorted(pm.named_parameters()), sorted(tm.named_parameters())):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-14,
                                   err_msg=name)
    assert type(pm).__name__ == type(tm).__name__ == "ParametrizedLinear"


def test_register_assign_chain_and_remove_like_torch():
    results = []
    for lib in (px, torch):
        lib.manual_seed(0)
        m = lib.nn.Linear(3, 3)
        w = lib.tensor(np.arange(9.0).reshape(3, 3), dtype=lib.float32)
        with lib.no_grad():
            m.weight.copy_(w)
        reg = px.nn.utils.parametrize if lib is px else torch.nn.utils.parametrize
        reg.register_parametrization(m, "weight", _symmetric(lib))
        sym = m.weight.detach().numpy().copy()
        reg.register_parametrization(m, "weight", _scaled(lib))
        chained = m.weight.detach().numpy().copy()
        keys = sorted(m.state_dict())
        assert reg.is_parametrized(m) and reg.is_parametrized(m, "weight")
        reg.remove_parametrizations(m, "weight", leave_parametrized=True)
        results.append((sym, chained, keys, m.weight.detach().numpy(), type(m).__name__))
    for ours, theirs in zip(*results):
        if isinstance(theirs, np.ndarray):
            np.testing.assert_allclose(ours, theirs)
        else:
            assert ours == theirs


def test_assignment_goes_through_right_inverse():
    m = px.nn.Linear(2, 2)
    P.register_parametrization(m, "weight", _scaled(px))
    m.weight = px.ones(2, 2)
    np.testing.assert_allclose(m.parametrizations.weight.original.detach().numpy(),
                               np.full((2, 2), 0.5))
    np.testing.assert_allclose(m.weight.detach().numpy(), np.ones((2, 2)))
    with pytest.raises(ValueError, match="neither a parameter nor a buffer"):
        P.register_parametrization(px.nn.Linear(2, 2), "weights", _scaled(px))
    other = px.nn.Linear(2, 2)
    assert type(other).__name__ == "Linear" and not P.is_parametrized(other)


def test_cached_computes_each_parametrized_tensor_once_inside_the_block():
    """parametrize.cached(), as the parametrizations tutorial uses it: counted calls of the
    parametrization's forward match PyTorch's, and the cache ends with the block."""
    counts = {}

    def make(lib):
        class Symmetric(lib.nn.Module):
            def forward(self, x):
                counts[lib.__name__] = counts.get(lib.__name__, 0) + 1
                return x.triu() + x.triu(1).mT
        layer = lib.nn.Linear(3, 3)
        lib.nn.utils.parametrize.register_parametrization(layer, "weight", Symmetric())
        return layer

    for lib in (px, torch):
        layer = make(lib)
        with lib.nn.utils.parametrize.cached():
            first, second = layer.weight, layer.weight
            with lib.nn.utils.parametrize.cached():     # nested: the same cache
                assert layer.weight is first
        assert first is second
        layer.weight
        layer.weight
    assert counts["phalanx"] == counts["torch"] == 4     # one at registration, its check
