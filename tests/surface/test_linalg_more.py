"""linalg.tensorinv, tensorsolve, vander and LinAlgError against torch.linalg."""
import numpy as np
import pytest
import torch

import phalanx as px

RNG = np.random.default_rng(8)


def _grad_pair(fn_p, fn_t, *arrays):
    P = [px.tensor(a, requires_grad=True) for a in arrays]
    T = [torch.tensor(a, requires_grad=True) for a in arrays]
    po, to = fn_p(*P), fn_t(*T)
    assert tuple(po.shape) == tuple(to.shape)
    np.testing.assert_allclose(po.detach().numpy(), to.detach().numpy(), rtol=1e-9,
                               atol=1e-12)
    cot = RNG.standard_normal(tuple(to.shape))
    (po * px.tensor(cot)).sum().backward()
    (to * torch.tensor(cot)).sum().backward()
    for p, t in zip(P, T):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("shape, ind", [((2, 3, 6), 2), ((4, 2, 2), 1), ((3, 3), 1)])
def test_tensorinv(shape, ind):
    _grad_pair(lambda a: px.linalg.tensorinv(a, ind=ind),
               lambda a: torch.linalg.tensorinv(a, ind=ind), RNG.standard_normal(shape))


@pytest.mark.parametrize("a_shape, b_shape, dims", [((2, 3, 6), (2, 3), None),
                                                    ((6, 2, 3), (2, 3), (0,)),
                                                    ((4, 2, 2), (4,), None)])
def test_tensorsolve(a_shape, b_shape, dims):
    _grad_pair(lambda a, b: px.linalg.tensorsolve(a, b, dims=dims),
               lambda a, b: torch.linalg.tensorsolve(a, b, dims=dims),
               RNG.standard_normal(a_shape), RNG.standard_normal(b_shape))


@pytest.mark.parametrize("N", [None, 2, 5])
def test_vander(N):
    x = np.array([[0.0, 1.5, -2.0], [1.0, 2.0, 3.0]])
    _grad_pair(lambda a: px.linalg.vander(a, N=N), lambda a: torch.linalg.vander(a, N=N), x)


def test_linalg_errors_are_linalg_errors():
    assert issubclass(px.linalg.LinAlgError, RuntimeError)
    with pytest.raises(px.linalg.LinAlgError, match="singular"):
        px.linalg.inv(px.zeros(2, 2))
    with pytest.raises(px.linalg.LinAlgError, match="singular"):
        px.linalg.solve(px.zeros(2, 2), px.ones(2))
    with pytest.raises(px.linalg.LinAlgError, match="positive-definite"):
        px.linalg.cholesky(-px.eye(2))
    with pytest.raises(RuntimeError, match="prod"):
        px.linalg.tensorinv(px.zeros(2, 3), ind=1)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (2, 4, 4), (0, 2)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128"])
def test_geqrf_is_lapacks_compact_qr_as_in_pytorch(shape, dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape).astype(dtype)
    if dtype.startswith("complex"):
        a = a + 1j * rng.standard_normal(shape)
    mine, theirs = px.geqrf(px.tensor(a)), torch.geqrf(torch.tensor(a))
    tol = 1e-5 if dtype == "float32" else 1e-12
    for x, y in zip(mine, theirs):
        assert x.dtype == getattr(px, str(y.dtype).split(".")[1]) and x.shape == y.shape
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=tol, atol=tol)
    if 0 not in shape and shape[-2] >= shape[-1]:    # Q from the reflectors: A = QR
        q = px.linalg.householder_product(mine.a, mine.tau).numpy()
        r = np.triu(mine.a.numpy()[..., :shape[-1], :])
        np.testing.assert_allclose(q @ r, a, rtol=tol * 10, atol=tol * 10)
    assert px.tensor(a).geqrf()[1].shape == mine.tau.shape
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        px.geqrf(px.ones(3))
