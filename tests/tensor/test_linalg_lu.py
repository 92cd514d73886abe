"""phalanx.linalg's LU family (lu_factor, lu_factor_ex, lu, lu_solve, lu_unpack), the `_ex`
variants (solve_ex, inv_ex, cholesky_ex) and LDL (ldl_factor, ldl_factor_ex, ldl_solve)
against PyTorch: values, dtypes, result fields, gradients (float64, rtol 1e-8), numerical
gradient checks, the info of singular inputs and the errors."""
import re

import numpy as np
import pytest
import torch

import phalanx as px
from phalanx.tensor.linalg_lu import _getrf

RNG = np.random.default_rng(20240601)
DTYPES = ["float64", "float32", "complex128"]
TOL = {"float64": 1e-10, "float32": 2e-4, "complex128": 1e-10}


def _sample(shape, dtype, rng=RNG):
    a = rng.standard_normal(shape)
    if dtype.startswith("complex"):
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def _pair(a, grad=False):
    return px.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)


def _close(p, t, tol, what=""):
    assert tuple(p.shape) == tuple(t.shape), what
    assert str(p.dtype).split(".")[-1] == str(t.dtype).split(".")[-1], what
    np.testing.assert_allclose(p.detach().numpy(), t.detach().resolve_conj().numpy(), rtol=tol,
                               atol=tol,
                               err_msg=what)


def _equal(p, t, what=""):
    assert str(p.dtype).split(".")[-1] == str(t.dtype).split(".")[-1], what
    np.testing.assert_array_equal(p.numpy(), t.numpy(), err_msg=what)


def _both(fn, *arrays):
    return fn(torch, *[torch.tensor(a) for a in arrays]), fn(px, *[px.tensor(a) for a in arrays])


def _torch_message(fn):
    """PyTorch's message, in Phalanx's spelling (no 'torch.' before the function, phalanx's
    dtype names)."""
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value).replace("torch.linalg.", "linalg.").replace(
        "torch.lu_", "lu_").replace("torch.int32", "phalanx.int32")


def _grads_match(fp, ft, arrays, rtol=1e-8, seed=0):
    """The same random weighting of every floating output, backpropagated in both; the
    gradients of every input agree."""
    p_in = [px.tensor(a, requires_grad=True) for a in arrays]
    t_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    p_out, t_out = fp(*p_in), ft(*t_in)
    p_out = p_out if isinstance(p_out, tuple) else (p_out,)
    t_out = t_out if isinstance(t_out, tuple) else (t_out,)
    rng = np.random.default_rng(seed)
    weights = [_sample(tuple(t.shape), str(t.dtype).split(".")[-1], rng) for t in t_out]
    (sum((p * px.tensor(w)).real.sum() if p.is_complex() else (p * px.tensor(w)).sum()
         for p, w in zip(p_out, weights))).backward()
    (sum((t * torch.tensor(w)).real.sum() if t.is_complex() else (t * torch.tensor(w)).sum()
         for t, w in zip(t_out, weights))).backward()
    for i, (p, t) in enumerate(zip(p_in, t_in)):
        assert p.grad is not None, f"no gradient for input {i}"
        want = t.grad.resolve_conj().numpy()
        np.testing.assert_allclose(p.grad.numpy(), want, rtol=rtol,
                                   atol=rtol * max(1.0, np.abs(want).max()),
                                   err_msg=f"gradient of input {i}")


def _same_fields(got, want, fields):
    """Phalanx's named tuple has PyTorch's fields, in its order (PyTorch's return types are
    struct sequences: read by attribute)."""
    assert tuple(got._fields) == fields
    assert len(want) == len(fields) and all(getattr(want, f) is want[i]
                                            for i, f in enumerate(fields))


def _lu_unpack(m):
    """torch.lu_unpack is top level; Phalanx's is in linalg (see the report on exposing it)."""
    return torch.lu_unpack if m is torch else px.linalg.lu_unpack


# ---- forward against PyTorch ------------------------------------------------------------------
SHAPES = [(4, 4), (3, 4, 4), (2, 5, 3), (3, 5), (1, 1), (2, 0, 0), (0, 3, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_lu_factor_ex_and_lu_match_torch(shape, dtype):
    p, t = _pair(_sample(shape, dtype))
    pr, tr = px.linalg.lu_factor_ex(p), torch.linalg.lu_factor_ex(t)
    _same_fields(pr, tr, ("LU", "pivots", "info"))
    _close(pr.LU, tr.LU, TOL[dtype], "LU")
    _equal(pr.pivots, tr.pivots, "pivots")
    _equal(pr.info, tr.info, "info")
    LU, piv = px.linalg.lu_factor(p)
    _close(LU, tr.LU, TOL[dtype])
    _equal(piv, tr.pivots)
    for got, want, name in zip(px.linalg.lu(p), torch.linalg.lu(t), "PLU"):
        _close(got, want, TOL[dtype], name)
    P, L, U = px.linalg.lu(p)
    if p.numel():
        np.testing.assert_allclose((P @ L @ U).numpy(), p.numpy(), rtol=TOL[dtype] * 10,
                                   atol=TOL[dtype] * 10)


@pytest.mark.parametrize("unpack_data", [True, False])
@pytest.mark.parametrize("unpack_pivots", [True, False])
@pytest.mark.parametrize("shape", [(4, 4), (2, 3, 5, 5), (6, 3), (2, 3, 6)], ids=str)
def test_lu_unpack_matches_torch(shape, unpack_data, unpack_pivots):
    t = torch.tensor(_sample(shape, "float64"))
    LU, piv = torch.linalg.lu_factor(t)
    got = _lu_unpack(px)(px.tensor(LU.numpy()), px.tensor(piv.numpy()), unpack_data,
                         unpack_pivots)
    want = torch.lu_unpack(LU, piv, unpack_data, unpack_pivots)
    _same_fields(got, want, ("P", "L", "U"))
    for g, w, name in zip(got, want, "PLU"):
        _close(g, w, 1e-12, name)


SYSTEMS = [(True, False), (True, True), (False, False), (False, True)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("left, adjoint", SYSTEMS)
@pytest.mark.parametrize("a_shape, b_shape", [((4, 4), (4, 3)), ((2, 4, 4), (3, 2, 4, 4)),
                                              ((1, 3, 3), (5, 3, 3)), ((2, 3, 3), (3, 3))],
                         ids=str)
def test_lu_solve_matches_torch(a_shape, b_shape, left, adjoint, dtype):
    a = _sample(a_shape, dtype)
    b = _sample(b_shape if left else b_shape[:-2] + b_shape[:-3:-1], dtype)
    LU, piv = torch.linalg.lu_factor(torch.tensor(a))
    want = torch.linalg.lu_solve(LU, piv, torch.tensor(b), left=left, adjoint=adjoint)
    got = px.linalg.lu_solve(px.tensor(LU.numpy()), px.tensor(piv.numpy()), px.tensor(b),
                             left=left, adjoint=adjoint)
    _close(got, want, TOL[dtype] * 10)


# ---- gradients --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("shape", [(4, 4), (2, 3, 3), (5, 3), (2, 3, 5)], ids=str)
def test_lu_and_lu_factor_gradients_match_torch(shape, dtype):
    a = _sample(shape, dtype)
    _grads_match(lambda x: px.linalg.lu(x)[1:], lambda x: torch.linalg.lu(x)[1:], [a])
    _grads_match(lambda x: px.linalg.lu_factor(x)[0], lambda x: torch.linalg.lu_factor(x)[0],
                 [a], seed=1)
    _grads_match(lambda x: px.linalg.lu_factor_ex(x).LU,
                 lambda x: torch.linalg.lu_factor_ex(x).LU, [a], seed=2)
    # a loss on L only, and on U only (the other gradient undefined)
    _grads_match(lambda x: px.linalg.lu(x).L, lambda x: torch.linalg.lu(x).L, [a], seed=3)
    _grads_match(lambda x: px.linalg.lu(x).U, lambda x: torch.linalg.lu(x).U, [a], seed=4)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("left, adjoint", SYSTEMS)
def test_lu_solve_gradients_match_torch(left, adjoint, dtype):
    a, b = _sample((2, 4, 4), dtype), _sample((3, 2, 4, 4), dtype)
    # through the factorisation, to A and B
    _grads_match(lambda x, y: px.linalg.lu_solve(*px.linalg.lu_factor(x), y, left=left,
                                                 adjoint=adjoint),
                 lambda x, y: torch.linalg.lu_solve(*torch.linalg.lu_factor(x), y, left=left,
                                                    adjoint=adjoint), [a, b])
    # to the packed LU itself (broadcast against B's batch) and to B
    LU, piv = torch.linalg.lu_factor(torch.tensor(a))
    _grads_match(lambda x, y: px.linalg.lu_solve(x, px.tensor(piv.numpy()), y, left=left,
                                                 adjoint=adjoint),
                 lambda x, y: torch.linalg.lu_solve(x, piv, y, left=left, adjoint=adjoint),
                 [LU.numpy(), b], seed=5)


def test_ex_gradients_match_torch():
    a = _sample((2, 4, 4), "float64")
    spd = a @ a.transpose(0, 2, 1) + 4 * np.eye(4)
    _grads_match(lambda x, y: px.linalg.solve_ex(x, y).result,
                 lambda x, y: torch.linalg.solve_ex(x, y).result, [a, _sample((4, 3), "float64")])
    _grads_match(lambda x, y: px.linalg.solve_ex(x, y, left=False).result,
                 lambda x, y: torch.linalg.solve_ex(x, y, left=False).result,
                 [a, _sample((2, 3, 4), "float64")])
    _grads_match(lambda x, y: px.linalg.solve_ex(x, y).result,
                 lambda x, y: torch.linalg.solve_ex(x, y).result, [a, _sample((2, 4), "float64")])
    _grads_match(lambda x: px.linalg.inv_ex(x).inverse,
                 lambda x: torch.linalg.inv_ex(x).inverse, [a])
    for upper in (False, True):
        _grads_match(lambda x: px.linalg.cholesky_ex(x, upper=upper).L,
                     lambda x: torch.linalg.cholesky_ex(x, upper=upper).L, [spd])


def test_ex_variants_refuse_complex_gradients_by_name():
    a = px.tensor(_sample((3, 3), "complex128"), requires_grad=True)
    for name, out in (("solve_ex", px.linalg.solve_ex(a, a).result),
                      ("inv_ex", px.linalg.inv_ex(a).inverse)):
        with pytest.raises(NotImplementedError, match=name):
            out.abs().sum().backward()


GRADCHECKS = {
    "lu": (lambda a: px.linalg.lu(a)[1:], [(3, 3)]),
    "lu_tall": (lambda a: px.linalg.lu(a)[1:], [(4, 2)]),
    "lu_wide": (lambda a: px.linalg.lu(a)[1:], [(2, 4)]),
    "lu_factor": (lambda a: px.linalg.lu_factor(a).LU, [(2, 3, 3)]),
    "lu_solve": (lambda a, b: px.linalg.lu_solve(*px.linalg.lu_factor(a), b), [(3, 3), (3, 2)]),
    "lu_solve_right_adjoint": (lambda a, b: px.linalg.lu_solve(*px.linalg.lu_factor(a), b,
                                                               left=False, adjoint=True),
                               [(3, 3), (2, 3)]),
    "solve_ex": (lambda a, b: px.linalg.solve_ex(a, b).result, [(3, 3), (3,)]),
    "inv_ex": (lambda a: px.linalg.inv_ex(a).inverse, [(3, 3)]),
    "cholesky_ex": (lambda a: px.linalg.cholesky_ex(a @ a.mT + 3 * px.eye(3,
                                                                          dtype=px.float64)).L,
                    [(3, 3)]),
}


@pytest.mark.parametrize("name", GRADCHECKS)
def test_gradcheck(name):
    fn, shapes = GRADCHECKS[name]
    inputs = [px.tensor(_sample(s, "float64"), requires_grad=True) for s in shapes]
    assert px.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("name", ["lu", "lu_solve_right_adjoint", "solve_ex"])
def test_gradgradcheck(name):
    fn, shapes = GRADCHECKS[name]
    inputs = [px.tensor(_sample(s, "float64"), requires_grad=True) for s in shapes]
    assert px.autograd.gradgradcheck(fn, inputs)


# ---- the _ex variants: values, info, and the errors of singular inputs ------------------------
SINGULAR = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]])
BATCH = np.stack([np.eye(3), SINGULAR, np.zeros((3, 3))])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("a", [SINGULAR, BATCH, np.eye(3)], ids=["one", "batch", "regular"])
def test_singular_inputs_give_torchs_info_and_values(a, dtype):
    p, t = _pair(a.astype(dtype))
    b = np.ones(a.shape[:-1] + (2,), dtype)
    for got, want in ((px.linalg.lu_factor_ex(p), torch.linalg.lu_factor_ex(t)),
                      (px.linalg.solve_ex(p, px.tensor(b)),
                       torch.linalg.solve_ex(t, torch.tensor(b))),
                      (px.linalg.inv_ex(p), torch.linalg.inv_ex(t))):
        assert tuple(got._fields)[-1] == "info"
        _equal(got.info, want.info, "info")
        np.testing.assert_allclose(got[0].numpy(), want[0].numpy(), rtol=TOL[dtype],
                                   equal_nan=True)


@pytest.mark.parametrize("fn, fields", [
    (lambda m, a: m.linalg.solve_ex(a, a), ("result", "info")),
    (lambda m, a: m.linalg.inv_ex(a), ("inverse", "info")),
    (lambda m, a: m.linalg.cholesky_ex(a), ("L", "info")),
    (lambda m, a: m.linalg.lu(a), ("P", "L", "U")),
    (lambda m, a: m.linalg.lu_factor(a), ("LU", "pivots")),
    (lambda m, a: m.linalg.ldl_factor(a), ("LD", "pivots")),
    (lambda m, a: m.linalg.ldl_factor_ex(a), ("LD", "pivots", "info"))])
def test_result_fields_are_torchs(fn, fields):
    want, got = _both(fn, np.eye(3))
    _same_fields(got, want, fields)


NOT_PD = np.stack([np.eye(3), np.diag([1.0, 2.0, -1.0]), -np.eye(3),
                   np.array([[4.0, 2.0, 1.0], [2.0, 1.0, 3.0], [1.0, 3.0, 5.0]])])


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("a", [NOT_PD, NOT_PD[1], np.eye(4) * 2], ids=["batch", "one", "pd"])
def test_cholesky_ex_info_and_factor_match_torch(a, upper):
    p, t = _pair(a)
    got, want = px.linalg.cholesky_ex(p, upper=upper), torch.linalg.cholesky_ex(t, upper=upper)
    _equal(got.info, want.info)
    ok = (want.info == 0).numpy()
    np.testing.assert_allclose(got.L.numpy()[ok], want.L.numpy()[ok], rtol=1e-12)


ERROR_CASES = [
    # (name, phalanx call, torch call, the error Phalanx raises)
    ("lu_factor", lambda m, a: m.linalg.lu_factor(a), SINGULAR, RuntimeError),
    ("lu_factor batch", lambda m, a: m.linalg.lu_factor(a), BATCH, RuntimeError),
    ("lu_factor_ex", lambda m, a: m.linalg.lu_factor_ex(a, check_errors=True), BATCH,
     RuntimeError),
    ("solve_ex", lambda m, a: m.linalg.solve_ex(a, a, check_errors=True), SINGULAR,
     px.linalg.LinAlgError),
    ("solve_ex batch", lambda m, a: m.linalg.solve_ex(a, a, check_errors=True), BATCH,
     px.linalg.LinAlgError),
    ("inv_ex", lambda m, a: m.linalg.inv_ex(a, check_errors=True), BATCH,
     px.linalg.LinAlgError),
    ("cholesky_ex", lambda m, a: m.linalg.cholesky_ex(a, check_errors=True), NOT_PD,
     px.linalg.LinAlgError),
    ("cholesky_ex one", lambda m, a: m.linalg.cholesky_ex(a, check_errors=True), NOT_PD[1],
     px.linalg.LinAlgError),
]


@pytest.mark.parametrize("name, call, a, error", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_check_errors_raise_torchs_message(name, call, a, error):
    want = _torch_message(lambda: call(torch, torch.tensor(a)))
    with pytest.raises(error, match=re.escape(want)):
        call(px, px.tensor(a))
    if error is px.linalg.LinAlgError:   # so are PyTorch's
        with pytest.raises(torch.linalg.LinAlgError):
            call(torch, torch.tensor(a))


def test_non_ex_functions_raise_on_what_the_ex_ones_report():
    # PyTorch raises LinAlgError from solve, inv and cholesky where the _ex ones give info > 0
    for fn in (lambda m, a: m.linalg.solve(a, a), lambda m, a: m.linalg.inv(a)):
        with pytest.raises(torch.linalg.LinAlgError):
            fn(torch, torch.tensor(BATCH))
        with pytest.raises(px.linalg.LinAlgError):
            fn(px, px.tensor(BATCH))
    with pytest.raises(px.linalg.LinAlgError):
        px.linalg.cholesky(px.tensor(NOT_PD))
    # and lu does not raise for a singular A (it is a valid factorisation), as PyTorch's
    for got, want in zip(px.linalg.lu(px.tensor(BATCH)), torch.linalg.lu(torch.tensor(BATCH))):
        _close(got, want, 1e-12)


# ---- pivot=False ------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", ["lu_factor", "lu_factor_ex", "lu"])
def test_no_pivoting_is_refused_on_the_cpu_as_in_torch(fn):
    want = _torch_message(lambda: getattr(torch.linalg, fn)(torch.eye(2), pivot=False))
    with pytest.raises(RuntimeError, match=re.escape(want)):
        getattr(px.linalg, fn)(px.eye(2), pivot=False)


@pytest.mark.parametrize("shape", [(2, 4, 4), (5, 3), (3, 5)], ids=str)
def test_unpivoted_kernel_for_gpus(shape):
    # the GPU path's kernel runs on NumPy arrays too: A = L U, identity pivots, info of a zero
    a = RNG.standard_normal(shape) + 3 * np.eye(*shape[-2:])
    lu, piv, info = _getrf(a, False)
    m, n = shape[-2:]
    k = min(m, n)
    L = np.tril(lu[..., :, :k], -1) + np.eye(m, k)
    np.testing.assert_allclose(L @ np.triu(lu[..., :k, :]), a, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(piv, np.broadcast_to(np.arange(1, k + 1), shape[:-2] + (k,)))
    assert piv.dtype == np.int32 and (info == 0).all()
    assert int(_getrf(np.array([[0.0, 1.0], [1.0, 0.0]]), False)[2]) == 1


# ---- argument errors --------------------------------------------------------------------------
LU4, PIV4 = (t.numpy() for t in torch.linalg.lu_factor(torch.tensor(_sample((2, 4, 4),
                                                                           "float64"))))
ARGUMENT_ERRORS = [
    ("lu_solve B 1-d", lambda m, lu, p: m.linalg.lu_solve(lu, p, lu[0, 0]), (LU4, PIV4)),
    ("lu_solve shapes", lambda m, lu, p: m.linalg.lu_solve(lu, p, lu[..., :3, :2]), (LU4, PIV4)),
    ("lu_solve shapes right", lambda m, lu, p: m.linalg.lu_solve(lu, p, lu[..., :3], left=False),
     (LU4, PIV4)),
    ("lu_solve dtype", lambda m, lu, p: m.linalg.lu_solve(lu, p, lu.float()), (LU4, PIV4)),
    ("lu_solve pivots dtype", lambda m, lu, p: m.linalg.lu_solve(lu, p.long(), lu), (LU4, PIV4)),
    ("lu_solve pivots count", lambda m, lu, p: m.linalg.lu_solve(lu, p[:, :2], lu), (LU4, PIV4)),
    ("lu_solve pivots batch", lambda m, lu, p: m.linalg.lu_solve(lu, p[:1], lu), (LU4, PIV4)),
    ("lu_solve not square", lambda m, lu, p: m.linalg.lu_solve(lu[..., :3], p[..., :3], lu),
     (LU4, PIV4)),
    ("lu_unpack 1-d", lambda m, lu, p: _lu_unpack(m)(lu[0, 0], p), (LU4, PIV4)),
    ("lu_unpack pivots dtype", lambda m, lu, p: _lu_unpack(m)(lu, p.long()), (LU4, PIV4)),
    ("lu_unpack pivots range", lambda m, lu, p: _lu_unpack(m)(lu, p * 5), (LU4, PIV4)),
    ("lu_factor 1-d", lambda m, a: m.linalg.lu_factor(a), (np.ones(3),)),
    ("solve_ex dtype", lambda m, a: m.linalg.solve_ex(a, a.float()), (np.eye(3),)),
    ("solve_ex not square", lambda m, a: m.linalg.solve_ex(a, a[0]), (np.ones((3, 4)),)),
    ("solve_ex vector right", lambda m, a: m.linalg.solve_ex(a, a[0], left=False),
     (np.eye(3),)),
    ("solve_ex integers", lambda m, a: m.linalg.solve_ex(a, a), (np.eye(3, dtype=np.int64),)),
    ("inv_ex not square", lambda m, a: m.linalg.inv_ex(a), (np.ones((3, 4)),)),
    ("cholesky_ex not square", lambda m, a: m.linalg.cholesky_ex(a), (np.ones((3, 4)),)),
    ("ldl_factor not square", lambda m, a: m.linalg.ldl_factor(a), (np.ones((3, 4)),)),
    ("ldl_factor integers", lambda m, a: m.linalg.ldl_factor(a), (np.eye(3, dtype=np.int64),)),
    ("ldl_solve shapes", lambda m, a: m.linalg.ldl_solve(*m.linalg.ldl_factor(a), a[:2]),
     (np.eye(3),)),
    ("ldl_solve dtype", lambda m, a: m.linalg.ldl_solve(*m.linalg.ldl_factor(a), a.float()),
     (np.eye(3),)),
    ("ldl_solve pivots batch", lambda m, a: m.linalg.ldl_solve(m.linalg.ldl_factor(a)[0],
                                                               m.linalg.ldl_factor(a)[1][:1], a),
     (np.stack([np.eye(3)] * 2),)),
]


@pytest.mark.parametrize("name, call, arrays", ARGUMENT_ERRORS,
                         ids=[c[0] for c in ARGUMENT_ERRORS])
def test_argument_errors_match_torch(name, call, arrays):
    want = _torch_message(lambda: call(torch, *[torch.tensor(a) for a in arrays]))
    with pytest.raises(RuntimeError, match=re.escape(want)):
        call(px, *[px.tensor(a) for a in arrays])


@pytest.mark.parametrize("fn, args", [
    ("lu_factor", lambda: (px.eye(2),)), ("lu", lambda: (px.eye(2),)),
    ("lu_solve", lambda: (*px.linalg.lu_factor(px.eye(2)), px.eye(2))),
    ("solve_ex", lambda: (px.eye(2), px.eye(2))), ("inv_ex", lambda: (px.eye(2),)),
    ("cholesky_ex", lambda: (px.eye(2),)), ("ldl_factor", lambda: (px.eye(2),)),
    ("ldl_solve", lambda: (*px.linalg.ldl_factor(px.eye(2)), px.eye(2)))])
def test_out_is_refused_by_name(fn, args):
    with pytest.raises(NotImplementedError, match="out="):
        getattr(px.linalg, fn)(*args(), out=px.eye(2))


def test_lapack_dtypes_only():
    with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
        px.linalg.lu_factor(px.ones(3, 3, dtype=px.int64))
    with pytest.raises(NotImplementedError):
        torch.linalg.lu_factor(torch.ones(3, 3, dtype=torch.int64))


# ---- LDL --------------------------------------------------------------------------------------
LDL_INPUTS = {
    "sym": lambda: (lambda a: a + a.transpose(0, 2, 1))(_sample((2, 5, 5), "float64")),
    "sym f32": lambda: (lambda a: a + a.T)(_sample((4, 4), "float32")),
    "2x2 block": lambda: np.array([[0.0, 1.0], [1.0, 0.0]]),
    "complex sym": lambda: (lambda a: a + a.T)(_sample((4, 4), "complex128")),
    "hermitian": lambda: (lambda a: a + a.conj().T)(_sample((4, 4), "complex128")),
}


@pytest.mark.parametrize("name", LDL_INPUTS)
def test_ldl_factor_and_solve_match_torch(name):
    a = LDL_INPUTS[name]()
    hermitian = name == "hermitian"
    tol = TOL["float32"] if a.dtype == np.float32 else 1e-10
    p, t = _pair(a)
    got = px.linalg.ldl_factor_ex(p, hermitian=hermitian)
    want = torch.linalg.ldl_factor_ex(t, hermitian=hermitian)
    _close(got.LD, want.LD, tol)
    _equal(got.pivots, want.pivots)
    _equal(got.info, want.info)
    b = _sample(a.shape[:-1] + (2,), str(a.dtype))
    x = px.linalg.ldl_solve(*px.linalg.ldl_factor(p, hermitian=hermitian), px.tensor(b),
                            hermitian=hermitian)
    _close(x, torch.linalg.ldl_solve(want.LD, want.pivots, torch.tensor(b),
                                     hermitian=hermitian), tol * 10)
    # B's batch broadcasts against LD's (PyTorch 2.13 crashes on this one): each matrix of the
    # batch is solved against its own B
    one = a if a.ndim == 2 else a[0]
    bb = _sample((3,) + one.shape[:1] + (2,), str(a.dtype))
    many = px.linalg.ldl_solve(*px.linalg.ldl_factor(px.tensor(one), hermitian=hermitian),
                               px.tensor(bb), hermitian=hermitian)
    np.testing.assert_allclose(one @ many.numpy(), bb, rtol=tol * 100, atol=tol * 100)


def test_ldl_singular_info_and_errors():
    z = np.zeros((2, 3, 3))
    want, got = _both(lambda m, a: m.linalg.ldl_factor_ex(a), z)
    for g, w in zip(got, want):
        _close(g, w, 0)
    # PyTorch 2.13 raises too (with an internal assert); Phalanx says what happened
    with pytest.raises(RuntimeError):
        torch.linalg.ldl_factor(torch.tensor(z))
    with pytest.raises(px.linalg.LinAlgError, match=r"\(Batch element 0\): .*D\[1,1\]"):
        px.linalg.ldl_factor(px.tensor(z))
    with pytest.raises(px.linalg.LinAlgError, match="ldl_factor_ex"):
        px.linalg.ldl_factor_ex(px.tensor(z), check_errors=True)


def test_ldl_has_no_gradient_as_in_torch():
    a = px.tensor(LDL_INPUTS["sym"](), requires_grad=True)
    with pytest.raises(NotImplementedError, match="ldl_factor"):
        px.linalg.ldl_factor(a).LD.sum().backward()
    LD, piv = px.linalg.ldl_factor(a.detach())
    b = px.ones(2, 5, 1, dtype=px.float64, requires_grad=True)
    with pytest.raises(NotImplementedError, match="ldl_solve"):
        px.linalg.ldl_solve(LD, piv, b).sum().backward()
    with pytest.raises(RuntimeError, match="not implemented"):
        torch.linalg.ldl_factor(torch.tensor(a.detach().numpy(),
                                             requires_grad=True)).LD.sum().backward()


# ---- the older spellings, to be exposed as torch.lu / torch.lu_solve / Tensor.lu ----------------
@pytest.mark.filterwarnings("ignore::UserWarning")   # PyTorch's deprecation notes
def test_legacy_lu_and_lu_solve_match_torch():
    from phalanx.tensor.linalg_lu import legacy_lu, legacy_lu_solve
    for a in (BATCH, _sample((2, 4, 4), "float64")):
        got, want = legacy_lu(px.tensor(a)), torch.lu(torch.tensor(a))   # singular: no error
        assert type(got) is tuple and len(got) == len(want) == 2
        for g, w in zip(got, want):
            _close(g, w, 1e-12)
        got = legacy_lu(px.tensor(a), get_infos=True)
        want = torch.lu(torch.tensor(a), get_infos=True)
        _same_fields(got, want, ("LU", "pivots", "info"))
        _equal(got.info, want.info)
    a, b = _sample((2, 4, 4), "float64"), _sample((2, 4, 3), "float64")
    LU, piv = torch.lu(torch.tensor(a))
    _close(legacy_lu_solve(px.tensor(b), px.tensor(LU.numpy()), px.tensor(piv.numpy())),
           torch.lu_solve(torch.tensor(b), LU, piv), 1e-10)
    with pytest.raises(RuntimeError, match="LU without pivoting"):
        legacy_lu(px.eye(2), pivot=False)
