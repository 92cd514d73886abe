"""The general (non-symmetric) eigendecomposition of `phalanx.linalg`, householder_product and
geqrf (PyTorch's torch.linalg.eig, eigvals and householder_product, torch.geqrf).

eig returns complex eigenvalues and unit-norm eigenvectors (LAPACK's geev on the CPU, CuPy's
cuSOLVER geev on a GPU: numpy.linalg.eig and cupy.linalg.eig take the same arguments). Its
backward (PyTorch's; w = eigenvalues, V = eigenvectors, E_ij = w_j - w_i off the diagonal):
    gA = V^-H (diag(gw) + (V^H gV - V^H V diag(Re diag(V^H gV))) / conj(E)) V^H
the real part of it for a real A; the solve with V^H is linalg_lu's LuFactor and LuSolve,
which are complex-correct and differentiable, so double backward works. A loss that depends on
the phase of the eigenvectors (which is arbitrary) has no gradient: backward says so, as
PyTorch's does. eigvals outside autograd computes no eigenvectors.

householder_product is composed from tensor ops (one reflection a step), so its gradient and
double backward come free and it runs on either backend.
"""

import numpy as np

from ..autograd import Function
from ..autograd.grad_mode import is_grad_enabled
from .backend import array_module, to_host
from .return_types import return_type
from .linalg import _eye_like, _mH
from .linalg_lu import LuFactor, LuSolve, _no_out, _square_float, type_name
from .ops._util import make

EigResult = return_type("linalg_eig", ["eigenvalues", "eigenvectors"])


def _complex_dtype(dt):
    return np.result_type(dt, np.complex64)


def _geev(d, name):
    """numpy.linalg or cupy.linalg, whichever has d; CuPy has geev (cuSOLVER's Xgeev) from
    version 14 on."""
    xp = array_module(d)
    if not hasattr(xp.linalg, "eig"):
        raise NotImplementedError(f"linalg.{name} on a GPU needs CuPy 14 or later (cupy.linalg."
                                  f"eig); upgrade CuPy, or move the input with .cpu()")
    return xp.linalg


def _finite(name, d):
    if not bool(array_module(d).isfinite(d).all()):
        raise RuntimeError(f"linalg.{name}: input tensor should not contain infs or NaNs.")


class Eig(Function):
    @staticmethod
    def forward(ctx, a):
        d = a._data
        _finite("eig", d)
        w, v = _geev(d, "eig").eig(d)
        ct = _complex_dtype(d.dtype)
        w, v = make(w.astype(ct, copy=False)), make(v.astype(ct, copy=False))
        ctx.save_for_backward(w, v)
        ctx.real_input = d.dtype.kind != "c"
        ctx.set_materialize_grads(False)
        return w, v

    @staticmethod
    def backward(ctx, gw, gv):
        w, v = ctx.saved_tensors
        vh = _mH(v)
        if gv is None:   # eigenvalues only: V^-H diag(gw) V^H
            inner = gw.unsqueeze(-1) * vh
        else:
            vhgv = vh @ gv
            diag = vhgv.diagonal(0, -2, -1)
            if np.abs(to_host(diag.imag._data)).max(initial=0.0) > 1e-2:
                raise RuntimeError("linalg_eig_backward: The eigenvectors in the complex case "
                                   "are specified up to multiplication by e^{i phi}. The "
                                   "specified loss function depends on this quantity, so it "
                                   "is ill-defined.")
            # project onto the tangent space of matrices whose columns have norm 1
            vhgv = vhgv - vh @ (v * diag.real.unsqueeze(-2))
            wc = w.conj()
            eye = _eye_like(vhgv.real)
            inner = vhgv / (wc.unsqueeze(-2) - wc.unsqueeze(-1) + eye)
            if gw is not None:
                inner = inner * (1 - eye) + gw.unsqueeze(-1) * eye
            inner = inner @ vh
        lu, pivots, _ = LuFactor.apply(vh, True)   # complex-correct and differentiable
        ga = LuSolve.apply(lu, pivots, inner, True, False)
        return ga.real if ctx.real_input else ga


def eig(A, *, out=None):
    """(eigenvalues, eigenvectors), complex, with A V = V diag(eigenvalues); each eigenvector
    has norm 1 (its phase is LAPACK's choice)."""
    _no_out(out, "linalg.eig")
    _square_float("eig", A)
    return EigResult(*Eig.apply(A))


def eigvals(A, *, out=None):
    """The eigenvalues of A (complex); differentiable through eig."""
    _no_out(out, "linalg.eigvals")
    _square_float("eigvals", A)
    if is_grad_enabled() and A.requires_grad:
        return Eig.apply(A)[0]
    d = A._data
    xp = array_module(d)
    # as PyTorch's, eigvals outside autograd checks nothing: a matrix with an inf or NaN gets
    # NaN eigenvalues (LAPACK's would be garbage) and the others their own
    finite = xp.isfinite(d).all((-2, -1))
    w = _geev(d, "eigvals").eigvals(xp.where(finite[..., None, None], d, 0))
    nan = complex("nan+nanj")
    return make(xp.where(finite[..., None], w, nan).astype(_complex_dtype(d.dtype), copy=False))


def householder_product(A, tau, *, out=None):
    """The first n columns of H_1 ... H_k, H_i = I - tau_i v_i v_i^H, v_i the i-th column of A
    below the diagonal with a 1 on it (LAPACK's orgqr/ungqr: Q from geqrf's output)."""
    _no_out(out, "linalg.householder_product")
    name = "linalg.householder_product"
    if A.ndim < 2:
        raise RuntimeError(f"{name}: input must have at least 2 dimensions.")
    m, n = A.shape[-2:]
    if m < n:
        raise RuntimeError(f"{name}: input.shape[-2] must be greater than or equal to "
                           f"input.shape[-1]")
    if tau.ndim != A.ndim - 1:
        raise RuntimeError(f"{name}: Expected tau to have one dimension less than input, but "
                           f"got tau.ndim equal to {tau.ndim} and input.ndim is equal to "
                           f"{A.ndim}")
    k = tau.shape[-1]
    if n < k:
        raise RuntimeError(f"{name}: input.shape[-1] must be greater than or equal to "
                           f"tau.shape[-1]")
    if tuple(tau.shape[:-1]) != tuple(A.shape[:-2]):
        raise RuntimeError(f"{name}: Expected batch dimensions of tau to be equal to "
                           f"input.shape[:-2], but got {list(tau.shape[:-1])}")
    if A._data.dtype.char not in "fdFD":
        raise NotImplementedError(f"\"orgqr\" not implemented for '{type_name(A)}': {name} "
                                  f"takes float32, float64, complex64 or complex128 inputs")
    if tau.dtype != A.dtype:
        raise RuntimeError(f"{name}: tau dtype {type_name(tau)} does not match input dtype "
                           f"{type_name(A)}")
    d = A._data
    xp = array_module(d)
    eye = make(xp.eye(m, n, dtype=d.dtype))
    if k == 0:
        return make(xp.broadcast_to(eye._data, A.shape).copy())
    reflectors = A[..., :, :k].tril(-1) + make(xp.eye(m, k, dtype=d.dtype))
    q = None
    for i in reversed(range(k)):   # Q = H_1 (H_2 (... (H_k E)))
        v = reflectors[..., :, i:i + 1]
        rhs = _mH(v) @ (eye if q is None else q)
        step = (tau[..., i:i + 1].unsqueeze(-1) * v) @ rhs
        q = (eye - step) if q is None else q - step
    return q


def orgqr(input, tau):
    """torch.orgqr: householder_product under LAPACK's name."""
    return householder_product(input, tau)


def geqrf(input, *, out=None):
    """torch.geqrf: LAPACK's QR in compact form, `(a, tau)`: R on and above the diagonal of
    `a`, the Householder vectors below it, their scales in `tau` (householder_product(a, tau)
    is Q). Not differentiable, as PyTorch's; batches of matrices are taken."""
    _no_out(out, "geqrf")
    if input.ndim < 2:
        raise RuntimeError(f"geqrf: input must have at least 2 dimensions, got "
                           f"{list(input.shape)}")
    if input._data.dtype.char not in "fdFD":
        raise NotImplementedError(f"\"geqrf_cpu\" not implemented for '{type_name(input)}': "
                                  f"geqrf takes float32, float64, complex64 or complex128")
    d = input._data
    xp = array_module(d)
    h, tau = xp.linalg.qr(d, mode="raw")       # h: the factors transposed (LAPACK's order)
    a = xp.ascontiguousarray(xp.swapaxes(h, -1, -2))
    return GeqrfResult(make(a.astype(d.dtype, copy=False)), make(tau.astype(d.dtype,
                                                                             copy=False)))


GeqrfResult = return_type("geqrf", ["a", "tau"])
