"""phalanx.linalg.eig, eigvals and householder_product against PyTorch: values (eigenvectors
through A V = V diag(w), as their phase is a convention), dtypes, gradients of losses that do
not depend on that phase (float64, rtol 1e-8), numerical gradient checks and the errors."""
import re

import numpy as np
import pytest
import torch

import phalanx as px

RNG = np.random.default_rng(7)
TOL = {"float64": 1e-9, "float32": 2e-4, "complex128": 1e-9}


def _sample(shape, dtype, rng=RNG):
    a = rng.standard_normal(shape)
    if dtype.startswith("complex"):
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def _dtype_name(t):
    return str(t.dtype).split(".")[-1]


def _sorted(w):
    """Eigenvalues in a canonical order (real part rounded, then imaginary part)."""
    w = np.asarray(w)
    keys = np.lexsort((w.imag, np.round(w.real, 6)), axis=-1)
    return np.take_along_axis(w, keys, -1)


def _grads_match(fp, ft, arrays, rtol=1e-8):
    p_in = [px.tensor(a, requires_grad=True) for a in arrays]
    t_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    fp(*p_in).backward()
    ft(*t_in).backward()
    for i, (p, t) in enumerate(zip(p_in, t_in)):
        want = t.grad.resolve_conj().numpy()
        np.testing.assert_allclose(p.grad.numpy(), want, rtol=rtol,
                                   atol=rtol * max(1.0, np.abs(want).max()),
                                   err_msg=f"gradient of input {i}")


def _torch_message(fn):
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value).replace("torch.linalg.", "linalg.")


# ---- eig, eigvals -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32", "complex128"])
@pytest.mark.parametrize("shape", [(4, 4), (3, 5, 5), (1, 1), (2, 0, 0)], ids=str)
def test_eig_matches_torch(shape, dtype):
    a = _sample(shape, dtype)
    w, v = px.linalg.eig(px.tensor(a))
    tw, tv = torch.linalg.eig(torch.tensor(a))
    for got, want in ((w, tw), (v, tv)):
        assert tuple(got.shape) == tuple(want.shape)
        assert _dtype_name(got) == _dtype_name(want)
    tol = TOL[dtype]
    np.testing.assert_allclose(_sorted(w.numpy()), _sorted(tw.numpy()), rtol=tol, atol=tol)
    av, vw = a @ v.numpy(), v.numpy() * w.numpy()[..., None, :]
    np.testing.assert_allclose(av, vw, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(np.linalg.norm(v.numpy(), axis=-2), 1.0, rtol=tol * 10)
    np.testing.assert_allclose(_sorted(px.linalg.eigvals(px.tensor(a)).numpy()),
                               _sorted(tw.numpy()), rtol=tol, atol=tol)
    assert _dtype_name(px.linalg.eigvals(px.tensor(a))) == _dtype_name(tw)


def test_eig_result_fields():
    got, want = px.linalg.eig(px.eye(2)), torch.linalg.eig(torch.eye(2))
    assert tuple(got._fields) == ("eigenvalues", "eigenvectors")
    assert want.eigenvalues is want[0] and want.eigenvectors is want[1]


LOSSES = {   # losses that do not depend on the eigenvectors' phases
    "sum |w|^2": lambda m, a: (m.linalg.eig(a)[0].abs() ** 2).sum(),
    "sum Re w": lambda m, a: m.linalg.eig(a)[0].real.sum(),
    "eigvals Im w^2": lambda m, a: (m.linalg.eigvals(a) ** 2).imag.sum(),
    "|V| weighted": lambda m, a: (m.linalg.eig(a)[1].abs() *
                                  m.arange(a.shape[-1], dtype=m.float64)).sum(),
    "w and |V|": lambda m, a: (lambda w, v: (w.real.unsqueeze(-2) * v.abs()).sum())(
        *m.linalg.eig(a)),
}


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("loss", LOSSES)
def test_eig_gradients_match_torch(loss, dtype):
    a = _sample((2, 4, 4), dtype)
    _grads_match(lambda x: LOSSES[loss](px, x), lambda x: LOSSES[loss](torch, x), [a])


def test_eig_gradcheck_and_gradgradcheck():
    a = px.tensor(_sample((3, 3), "float64"), requires_grad=True)
    assert px.autograd.gradcheck(lambda x: px.linalg.eigvals(x).real, (a,))
    assert px.autograd.gradcheck(lambda x: px.linalg.eig(x)[1].abs(), (a,))
    assert px.autograd.gradgradcheck(lambda x: (px.linalg.eigvals(x) ** 2).real, (a,))


def test_eig_phase_dependent_loss_is_refused_as_in_torch():
    a = _sample((4, 4), "float64")   # this one has a complex pair of eigenvalues
    assert np.abs(np.linalg.eigvals(a).imag).max() > 0.1
    t = torch.tensor(a, requires_grad=True)
    want = _torch_message(lambda: torch.linalg.eig(t)[1].real.sum().backward())
    p = px.tensor(a, requires_grad=True)
    with pytest.raises(RuntimeError, match=re.escape(want)):
        px.linalg.eig(p)[1].real.sum().backward()


@pytest.mark.parametrize("fn", ["eig", "eigvals"])
@pytest.mark.parametrize("a", [np.ones((3, 4)), np.full((2, 2), np.nan),
                               np.array([[1.0, np.inf], [0.0, 1.0]])],
                         ids=["not square", "nan", "inf"])
def test_eig_errors_match_torch(fn, a):
    if fn == "eigvals" and not np.isfinite(a).all():
        # PyTorch's eigvals checks nothing without autograd (its result is NaN, LAPACK's
        # garbage); with autograd it runs eig, which refuses
        got = px.linalg.eigvals(px.tensor(a)).numpy()
        assert got.shape == (2,) and np.isnan(got).all()
        a_grad = True
    else:
        a_grad = False
    want = _torch_message(lambda: getattr(torch.linalg, fn)(torch.tensor(a,
                                                                         requires_grad=a_grad)))
    with pytest.raises(RuntimeError, match=re.escape(want)):
        getattr(px.linalg, fn)(px.tensor(a, requires_grad=a_grad))


def test_eig_refuses_integers_and_out():
    with pytest.raises(RuntimeError, match="Long"):
        px.linalg.eig(px.ones(2, 2, dtype=px.int64))
    with pytest.raises(RuntimeError):
        torch.linalg.eig(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(NotImplementedError, match="out="):
        px.linalg.eigvals(px.eye(2), out=px.eye(2))


# ---- householder_product ----------------------------------------------------------------------
HH_SHAPES = [((5, 3), (2,)), ((4, 4), (4,)), ((2, 6, 4), (2, 3)), ((3, 2), (0,)),
             ((2, 3, 3), (2, 1))]


@pytest.mark.parametrize("dtype", ["float64", "float32", "complex128"])
@pytest.mark.parametrize("a_shape, tau_shape", HH_SHAPES, ids=str)
def test_householder_product_matches_torch(a_shape, tau_shape, dtype):
    a, tau = _sample(a_shape, dtype), _sample(tau_shape, dtype)
    got = px.linalg.householder_product(px.tensor(a), px.tensor(tau))
    want = torch.linalg.householder_product(torch.tensor(a), torch.tensor(tau))
    assert tuple(got.shape) == tuple(want.shape) and _dtype_name(got) == _dtype_name(want)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=TOL[dtype] * 10,
                               atol=TOL[dtype] * 10)


def test_householder_product_of_geqrf_is_q():
    a = _sample((6, 4), "float64")
    qr, tau = torch.geqrf(torch.tensor(a))
    q = px.linalg.householder_product(px.tensor(qr.numpy()), px.tensor(tau.numpy()))
    np.testing.assert_allclose(np.abs(q.numpy()), np.abs(np.linalg.qr(a)[0]), rtol=1e-10)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("a_shape, tau_shape", HH_SHAPES[:3], ids=str)
def test_householder_product_gradients_match_torch(a_shape, tau_shape, dtype):
    a, tau = _sample(a_shape, dtype), _sample(tau_shape, dtype)
    w = _sample(a_shape, dtype)
    _grads_match(lambda x, t: (px.linalg.householder_product(x, t) * px.tensor(w)).real.sum(),
                 lambda x, t: (torch.linalg.householder_product(x, t) *
                               torch.tensor(w)).real.sum(), [a, tau])


def test_householder_product_gradcheck():
    a = px.tensor(_sample((4, 3), "float64"), requires_grad=True)
    tau = px.tensor(_sample((2,), "float64"), requires_grad=True)
    assert px.autograd.gradcheck(px.linalg.householder_product, (a, tau))
    assert px.autograd.gradgradcheck(px.linalg.householder_product, (a, tau))


HH_ERRORS = [
    ("wide", (3, 5), (2,), "float64", "float64"),
    ("tau too long", (5, 3), (4,), "float64", "float64"),
    ("tau dims", (5, 3), (2, 2), "float64", "float64"),
    ("batch", (2, 5, 3), (3, 2), "float64", "float64"),
    ("dtypes", (5, 3), (2,), "float64", "float32"),
    ("1-d", (3,), (2,), "float64", "float64"),
]


@pytest.mark.parametrize("name, a_shape, tau_shape, a_dtype, tau_dtype", HH_ERRORS,
                         ids=[e[0] for e in HH_ERRORS])
def test_householder_product_errors_match_torch(name, a_shape, tau_shape, a_dtype, tau_dtype):
    a, tau = _sample(a_shape, a_dtype), _sample(tau_shape, tau_dtype)
    want = _torch_message(lambda: torch.linalg.householder_product(torch.tensor(a),
                                                                   torch.tensor(tau)))
    with pytest.raises(RuntimeError, match=re.escape(want)):
        px.linalg.householder_product(px.tensor(a), px.tensor(tau))


def test_orgqr_is_householder_product():
    from phalanx.tensor.linalg_eig import orgqr
    a, tau = _sample((5, 3), "float64"), _sample((2,), "float64")
    np.testing.assert_allclose(orgqr(px.tensor(a), px.tensor(tau)).numpy(),
                               torch.orgqr(torch.tensor(a), torch.tensor(tau)).numpy(),
                               rtol=1e-10, atol=1e-12)
