"""Loss modules for the functional losses (PyTorch's options, legacy size_average/reduce),
nn.init's pre-0.4 spellings, and torch.nn.parameter's lazy names — against PyTorch."""
import warnings

import numpy as np
import pytest
import torch

import phalanx as px
import phalanx.nn as nn

rng = np.random.default_rng(0)
X = rng.normal(size=(4, 5))
Y = rng.normal(size=(4, 5))
Z = rng.normal(size=(4, 5))
SIGN = np.where(rng.random(4) < 0.5, -1.0, 1.0)
COUNTS = rng.poisson(2.0, size=(4, 5)).astype(np.float64)
MULTI = (rng.random((4, 5)) < 0.5).astype(np.float64)
CLASSES = np.array([0, 3, 1, 4])

# module name, constructor kwargs, inputs (numpy arrays)
CASES = [
    ("PoissonNLLLoss", {}, (X, COUNTS)),
    ("PoissonNLLLoss", {"log_input": False, "full": True, "reduction": "sum"},
     (np.abs(X) + 0.1, COUNTS)),
    ("GaussianNLLLoss", {"full": True}, (X, Y, np.abs(Z) + 0.1)),
    ("MarginRankingLoss", {"margin": 0.3}, (X[:, 0], Y[:, 0], SIGN)),
    ("HingeEmbeddingLoss", {"margin": 0.5, "reduction": "none"}, (X, np.sign(Y))),
    ("SoftMarginLoss", {}, (X, np.sign(Y))),
    ("MultiLabelSoftMarginLoss", {}, (X, MULTI)),
    ("TripletMarginLoss", {"margin": 0.5, "swap": True}, (X, Y, Z)),
    ("MultiMarginLoss", {"p": 2, "margin": 0.7}, (X, CLASSES)),
    ("MSELoss", {"size_average": False}, (X, Y)),
    ("L1Loss", {"reduce": False}, (X, Y)),
    ("SmoothL1Loss", {"size_average": True, "reduce": True}, (X, Y)),
]


@pytest.mark.parametrize("name,kwargs,inputs", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_loss_module_matches_torch(name, kwargs, inputs):
    legacy = "size_average" in kwargs or "reduce" in kwargs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p_mod = getattr(nn, name)(**kwargs)
        t_mod = getattr(torch.nn, name)(**kwargs)
    if legacy:
        assert any("size_average and reduce" in str(w.message) for w in caught)
    assert p_mod.reduction == t_mod.reduction
    t_in = [torch.tensor(a, requires_grad=a.dtype.kind == "f" and i == 0)
            for i, a in enumerate(inputs)]
    p_in = [px.tensor(a, requires_grad=a.dtype.kind == "f" and i == 0)
            for i, a in enumerate(inputs)]
    t_out, p_out = t_mod(*t_in), p_mod(*p_in)
    np.testing.assert_allclose(p_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-6,
                               atol=1e-9)
    t_out.sum().backward()
    p_out.sum().backward()
    np.testing.assert_allclose(p_in[0].grad.numpy(), t_in[0].grad.numpy(), rtol=1e-6,
                               atol=1e-9)


@pytest.mark.parametrize("old", ["uniform", "normal", "constant", "eye", "dirac",
                                 "xavier_uniform", "xavier_normal", "kaiming_uniform",
                                 "kaiming_normal", "orthogonal", "sparse"])
def test_old_init_spellings_warn_and_initialise(old):
    args = {"constant": (0.25,), "sparse": (0.5,)}.get(old, ())
    shape = (3, 4, 3) if old == "dirac" else (4, 6)
    px.manual_seed(3)
    want = getattr(nn.init, old + "_")(px.empty(*shape), *args)
    px.manual_seed(3)
    with pytest.warns(FutureWarning, match=f"nn.init.{old}` is now deprecated in favor of "
                                           f"`nn.init.{old}_"):
        got = getattr(nn.init, old)(px.empty(*shape), *args)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert getattr(nn.init, old).__name__ == getattr(torch.nn.init, old).__name__


def test_lazy_names_on_the_parameter_module():
    from phalanx.nn.parameter import UninitializedBuffer, UninitializedParameter
    lin = nn.LazyLinear(3)
    assert isinstance(lin.weight, UninitializedParameter)
    assert UninitializedBuffer is nn.UninitializedBuffer
    with pytest.raises(ImportError):
        from phalanx.nn.parameter import NoSuchThing  # noqa: F401
