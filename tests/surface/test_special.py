"""phalanx.special against torch.special: values and gradients (float64), dtypes kept."""
import numpy as np
import pytest
import torch

import phalanx as px

RNG = np.random.default_rng(4)
X = np.concatenate([RNG.standard_normal(20) * 3, [-40.0, -8.0, 0.5, 6.0, 30.0]])
UNIT = RNG.uniform(0.02, 0.98, 20)
POS = RNG.uniform(0.1, 5.0, 20)

UNARY = {"ndtr": X, "log_ndtr": X, "ndtri": UNIT, "erfcx": X, "i0e": X, "i1e": X,
         "i1": X, "entr": np.concatenate([POS, [0.0, -1.0]]), "expit": X, "gammaln": POS,
         "digamma": POS, "psi": POS, "erf": X, "erfc": X, "erfinv": UNIT * 2 - 1,
         "exp2": X / 4, "expm1": X / 4, "log1p": POS, "i0": X, "logit": UNIT, "sinc": X}


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_matches_torch(name):
    a = UNARY[name]
    p, t = px.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    po, to = getattr(px.special, name)(p), getattr(torch.special, name)(t)
    # atol: PyTorch's ndtr loses relative accuracy in the far tail (scipy's does not)
    np.testing.assert_allclose(po.detach().numpy(), to.detach().numpy(), rtol=1e-10,
                               atol=1e-15)
    finite = np.isfinite(to.detach().numpy())
    cot = np.where(finite, RNG.standard_normal(a.shape), 0.0)
    (po * px.tensor(cot)).sum().backward()
    (to * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-8, atol=1e-300)
    assert getattr(px.special, name)(px.tensor(a, dtype=px.float32)).dtype is px.float32


def test_binary_and_reductions_match_torch():
    x = np.array([0.0, 0.0, 1.5, -2.0, 3.0])
    y = np.array([-0.5, 2.0, 0.25, 4.0, -0.9])
    for name in ("xlog1py", "xlogy"):
        yy = y if name == "xlog1py" else np.abs(y) + 0.1
        P = [px.tensor(x, requires_grad=True), px.tensor(yy, requires_grad=True)]
        T = [torch.tensor(x, requires_grad=True), torch.tensor(yy, requires_grad=True)]
        po, to = getattr(px.special, name)(*P), getattr(torch.special, name)(*T)
        np.testing.assert_allclose(po.detach().numpy(), to.detach().numpy(), rtol=1e-12)
        po.sum().backward()
        to.sum().backward()
        for p, t in zip(P, T):
            np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-12)
    m = RNG.standard_normal((3, 4))
    for name, args in [("softmax", (1,)), ("log_softmax", (0,)), ("logsumexp", (1,))]:
        np.testing.assert_allclose(getattr(px.special, name)(px.tensor(m), *args).numpy(),
                                   getattr(torch.special, name)(torch.tensor(m), *args).numpy(),
                                   rtol=1e-12)
    for name, args in [("multigammaln", (POS + 2, 3)), ("polygamma", (2, POS)),
                       ("gammainc", (POS, POS[::-1].copy())),
                       ("gammaincc", (POS, POS[::-1].copy()))]:
        pa = [px.tensor(a) if isinstance(a, np.ndarray) else a for a in args]
        ta = [torch.tensor(a) if isinstance(a, np.ndarray) else a for a in args]
        np.testing.assert_allclose(getattr(px.special, name)(*pa).numpy(),
                                   getattr(torch.special, name)(*ta).numpy(), rtol=1e-10)
    np.testing.assert_allclose(px.special.round(px.tensor(x * 1.234), decimals=1).numpy(),
                               torch.special.round(torch.tensor(x * 1.234), decimals=1).numpy())


def test_names_are_torch_special_names():
    for name in px.special.__all__:
        assert hasattr(torch.special, name), name
