"""nn.utils.parametrize and parametrizations.weight_norm / spectral_norm against PyTorch's:
state-dict keys, values, gradients, assignment through right_inverse, chains, removal, and
spectral norm's power iteration over training steps."""
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


@pytest.mark.parametrize("layer, name, dim", [
    (lambda lib: lib.nn.Linear(5, 7), "weight", None),
    (lambda lib: lib.nn.Conv2d(3, 4, 3), "weight", None),
    (lambda lib: lib.nn.ConvTranspose2d(3, 4, 3), "weight", None),     # dim 1 by default
    (lambda lib: lib.nn.Conv1d(3, 4, 2), "weight", -1),
    (lambda lib: lib.nn.Linear(5, 7), "bias", None)])                 # a vector: normalized
def test_spectral_norm_parametrization_trains_as_torchs(layer, name, dim):
    """Same weights and power-iteration vectors as PyTorch's: the same state-dict keys,
    weights, outputs and gradients over training steps (each refining u and v), and in eval
    mode (no refinement)."""
    torch.manual_seed(0)
    theirs = torch.nn.utils.parametrizations.spectral_norm(layer(torch).double(), name,
                                                           n_power_iterations=2, dim=dim)
    mine = px.nn.utils.parametrizations.spectral_norm(layer(px).double(), name,
                                                      n_power_iterations=2, dim=dim)
    assert list(mine.state_dict()) == list(theirs.state_dict())
    mine.load_state_dict({k: px.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    shape = (2, 5) if isinstance(theirs, torch.nn.Linear) else \
        (2, 3, 6) if isinstance(theirs, torch.nn.Conv1d) else (2, 3, 6, 6)
    x = np.random.default_rng(0).standard_normal(shape)
    opts = (px.optim.SGD(mine.parameters(), lr=0.1), torch.optim.SGD(theirs.parameters(),
                                                                    lr=0.1))
    for step in range(3):
        if step == 2:
            mine.eval()
            theirs.eval()
        outs = [m(lib.tensor(x)) for m, lib in ((mine, px), (theirs, torch))]
        np.testing.assert_allclose(outs[0].detach().numpy(), outs[1].detach().numpy(),
                                   rtol=1e-10, atol=1e-12)
        for out, opt in zip(outs, opts):
            opt.zero_grad()
            out.square().sum().backward()
            opt.step()
        for (k, a), b in zip(mine.state_dict().items(), theirs.state_dict().values()):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=k)


def test_spectral_norm_parametrization_refuses_what_torchs_refuses():
    with pytest.raises(ValueError, match="no parameter or buffer with name 'nope'"):
        px.nn.utils.parametrizations.spectral_norm(px.nn.Linear(2, 2), "nope")
    with pytest.raises(ValueError, match="n_power_iterations=0"):
        px.nn.utils.parametrizations.spectral_norm(px.nn.Linear(2, 2), n_power_iterations=0)
    with pytest.raises(IndexError, match="Dimension out of range"):
        px.nn.utils.parametrizations.spectral_norm(px.nn.Linear(2, 2), dim=2)


def _holder(lib, shape):
    class Holder(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = lib.nn.Parameter(lib.randn(*shape, dtype=lib.float64))
    return Holder()


@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5), (2, 4, 3)])
@pytest.mark.parametrize("orthogonal_map", ["matrix_exp", "cayley", "householder"])
@pytest.mark.parametrize("use_trivialization", [True, False])
def test_orthogonal_trains_and_assigns_as_torchs(shape, orthogonal_map, use_trivialization):
    """PyTorch's state (its random completion of a non-square base included) loaded into
    Phalanx's: the same orthogonal weight and gradients over SGD steps; assigning an
    orthogonal matrix goes through the same right inverse (a new base, or geqrf's reflectors
    without trivialization)."""
    torch.manual_seed(0)
    theirs = torch.nn.utils.parametrizations.orthogonal(
        _holder(torch, shape), orthogonal_map=orthogonal_map,
        use_trivialization=use_trivialization)
    mine = px.nn.utils.parametrizations.orthogonal(
        _holder(px, shape), orthogonal_map=orthogonal_map,
        use_trivialization=use_trivialization)
    assert list(mine.state_dict()) == list(theirs.state_dict())
    mine.load_state_dict({k: px.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    target = np.random.default_rng(1).standard_normal(shape)
    opts = (px.optim.SGD(mine.parameters(), lr=0.05), torch.optim.SGD(theirs.parameters(),
                                                                     lr=0.05))
    for _ in range(3):
        weights = [m.weight for m in (mine, theirs)]
        np.testing.assert_allclose(weights[0].detach().numpy(), weights[1].detach().numpy(),
                                   rtol=1e-9, atol=1e-12)
        for w, opt, lib in zip(weights, opts, (px, torch)):
            opt.zero_grad()
            (w * lib.tensor(target)).sum().backward()
            opt.step()
    q = np.linalg.qr(np.random.default_rng(2).standard_normal(shape[:-2] + (max(shape[-2:]),
                                                                           ) * 2))[0]
    q = q[..., :shape[-2], :shape[-1]]             # orthonormal columns (or rows, if wide)
    if orthogonal_map != "householder" and not use_trivialization:
        for lib, m in ((px, mine), (torch, theirs)):
            with pytest.raises(NotImplementedError, match="use_trivialization=False"):
                m.weight = lib.tensor(q)
        return
    if shape[-2] != shape[-1] and use_trivialization:
        return              # the completion of a non-square base is random: not comparable
    mine.weight, theirs.weight = px.tensor(q), torch.tensor(q)
    for (k, a), b in zip(mine.state_dict().items(), theirs.state_dict().values()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(mine.weight.detach().numpy(), q, atol=1e-12)


def test_orthogonal_refuses_what_torchs_refuses():
    P = px.nn.utils.parametrizations
    with pytest.raises(ValueError, match="Got a tensor of 1 dimensions"):
        P.orthogonal(px.nn.Linear(2, 2), "bias")
    with pytest.raises(ValueError, match='has to be one of "matrix_exp"'):
        P.orthogonal(px.nn.Linear(2, 2), orthogonal_map="qr")
    complex_holder = _holder(px, (3, 3))
    complex_holder.weight = px.nn.Parameter(px.ones(3, 3, dtype=px.complex128))
    with pytest.raises(ValueError, match="does not support complex"):
        P.orthogonal(complex_holder, orthogonal_map="householder")
    m = P.orthogonal(px.nn.Linear(3, 3))
    with pytest.raises(ValueError, match=r"Expected a matrix or batch of matrices of shape"):
        m.weight = px.ones(2, 3)
