"""Finite-difference checks of analytic gradients (float64), first and second order.

The inputs may live on a GPU; the Jacobians are small and are compared on the host."""
import numpy as np

from ..tensor.backend import device_of, host_scalar, to_device, to_host
from .engine import run_backward
from .function import TensorBase
from .grad_mode import enable_grad, no_grad


class GradcheckError(RuntimeError):
    pass


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _diff_inputs(inputs):
    out = [t for t in inputs if isinstance(t, TensorBase) and t.requires_grad]
    for t in out:
        if t._data.dtype.kind != "f" or t._data.dtype.itemsize != 8:
            raise GradcheckError(f"gradcheck needs float64 inputs for a meaningful numerical "
                                 f"gradient; got {t.dtype}. Use x.double().")
    return out


def _numerical_jacobian(func, inputs, diff, eps):
    """J[k][i] has shape (out_k.size, in_i.size)."""
    with no_grad():
        outs = [o for o in _as_tuple(func(*inputs)) if isinstance(o, TensorBase)]
    jac = [[None] * len(diff) for _ in outs]
    for i, x in enumerate(diff):
        data = x._data          # perturbed in place, element by element in row-major order
        cols = [[] for _ in outs]
        for j in range(data.size):
            at = np.unravel_index(j, data.shape)   # works for any strides (a reshape of a
            orig = host_scalar(data[at])           # non-contiguous array would be a copy)
            data[at] = orig + eps
            with no_grad():
                plus = [o._data.copy() for o in _as_tuple(func(*inputs))
                        if isinstance(o, TensorBase)]
            data[at] = orig - eps
            with no_grad():
                minus = [o._data.copy() for o in _as_tuple(func(*inputs))
                         if isinstance(o, TensorBase)]
            data[at] = orig
            for k in range(len(outs)):
                cols[k].append(((plus[k] - minus[k]) / (2 * eps)).reshape(-1))
        for k, o in enumerate(outs):
            jac[k][i] = (np.stack([to_host(c) for c in cols[k]], axis=1) if cols[k]
                         else np.zeros((o._data.size, 0)))
    return outs, jac


def _analytic_jacobian(func, inputs, diff):
    outs = [o for o in _as_tuple(func(*inputs)) if isinstance(o, TensorBase)]
    jac = [[np.zeros((o._data.size, x._data.size)) for x in diff] for o in outs]
    for k, o in enumerate(outs):
        if not o.requires_grad:
            continue
        for r in range(o._data.size):
            g = o.new_zeros(o.shape)
            g._data.reshape(-1)[r] = 1
            grads = run_backward([o], [g], retain_graph=True, inputs=diff, accumulate=False)
            for i, gi in enumerate(grads):
                if gi is not None:
                    jac[k][i][r] = to_host(gi._data).reshape(-1)
    return jac


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """Compare the analytic Jacobian of `func` at `inputs` with central differences."""
    inputs = _as_tuple(inputs)
    diff = _diff_inputs(inputs)
    outs, num = _numerical_jacobian(func, inputs, diff, eps)
    ana = _analytic_jacobian(func, inputs, diff)
    for k in range(len(outs)):
        for i in range(len(diff)):
            a, n = ana[k][i], num[k][i]
            if not np.allclose(a, n, atol=atol, rtol=rtol):
                if not raise_exception:
                    return False
                idx = np.unravel_index(np.argmax(np.abs(a - n)), a.shape)
                raise GradcheckError(
                    f"Jacobian mismatch for output {k} with respect to input {i}: largest "
                    f"difference at (output element {idx[0]}, input element {idx[1]}): "
                    f"analytical {a[idx]:.8g} vs numerical {n[idx]:.8g}.\n"
                    f"analytical:\n{a}\nnumerical:\n{n}")
    return True


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  raise_exception=True, seed=0):
    """gradcheck of the gradient itself: checks double backward (create_graph=True)."""
    inputs = _as_tuple(inputs)
    diff = _diff_inputs(inputs)
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        outs = [o for o in _as_tuple(func(*inputs)) if isinstance(o, TensorBase)]
        grad_outputs = []
        for o in outs:
            g = o.new_zeros(o.shape).detach()
            g._data[...] = to_device(rng.standard_normal(o._data.shape), device_of(o._data))
            g.requires_grad = True
            grad_outputs.append(g)
    grad_outputs = list(_as_tuple(grad_outputs))
    n_in = len(inputs)

    def first_grads(*args):
        xs, gos = args[:n_in], args[n_in:]
        with enable_grad():  # also when gradcheck evaluates it numerically under no_grad
            outs = [o for o in _as_tuple(func(*xs)) if isinstance(o, TensorBase)]
            d = [t for t in xs if isinstance(t, TensorBase) and t.requires_grad]
            gs = run_backward(outs, list(gos), retain_graph=True, create_graph=True, inputs=d,
                              accumulate=False)
        return tuple(g if g is not None else x.new_zeros(x.shape) for g, x in zip(gs, d))

    return gradcheck(first_grads, tuple(inputs) + tuple(grad_outputs), eps=eps, atol=atol,
                     rtol=rtol, raise_exception=raise_exception)
