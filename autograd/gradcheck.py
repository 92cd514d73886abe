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


def _analytic_jacobian(func, inputs, diff, check_grad_dtypes=False):
    """Row r of J[k][i] is the gradient of output k's element r: one backward per output
    element, the other outputs' gradients undefined (which exercises each backward's
    handling of undefined gradients, PyTorch's check_undefined_grad)."""
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
                if gi is None:
                    continue
                if check_grad_dtypes and (gi.dtype != diff[i].dtype or
                                          gi.device != diff[i].device):
                    raise GradcheckError(f"Gradient for input {i} has dtype {gi.dtype} on "
                                         f"{gi.device}, but the input is {diff[i].dtype} on "
                                         f"{diff[i].device}")
                jac[k][i][r] = to_host(gi._data).reshape(-1)
    return jac


def _forward_jacobian(func, inputs, diff):
    """J[k][i] by forward mode: one tangent per input element (a basis vector)."""
    from . import forward_ad
    outs = [o for o in _as_tuple(func(*inputs)) if isinstance(o, TensorBase)]
    jac = [[np.zeros((o._data.size, x._data.size)) for x in diff] for o in outs]
    for i, x in enumerate(diff):
        for c in range(x._data.size):
            tangent = x.detach().new_zeros(x.shape)
            tangent._data.reshape(-1)[c] = 1
            with forward_ad.dual_level():
                dual = forward_ad.make_dual(x.detach(), tangent)
                args = [dual if t is x else t for t in inputs]
                results = [o for o in _as_tuple(func(*args)) if isinstance(o, TensorBase)]
                for k, o in enumerate(results):
                    pushed = forward_ad.unpack_dual(o).tangent
                    if pushed is not None:
                        jac[k][i][:, c] = to_host(pushed._data).reshape(-1)
    return jac


def _compare(kind, ana, num, atol, rtol, raise_exception):
    for k in range(len(ana)):
        for i in range(len(ana[k])):
            a, n = ana[k][i], num[k][i]
            if not np.allclose(a, n, atol=atol, rtol=rtol):
                if not raise_exception:
                    return False
                idx = np.unravel_index(np.argmax(np.abs(a - n)), a.shape)
                raise GradcheckError(
                    f"{kind} Jacobian mismatch for output {k} with respect to input {i}: "
                    f"largest difference at (output element {idx[0]}, input element "
                    f"{idx[1]}): analytical {a[idx]:.8g} vs numerical {n[idx]:.8g}.\n"
                    f"analytical:\n{a}\nnumerical:\n{n}")
    return True


def _check_batched_grad(func, inputs, diff, raise_exception, seed=0):
    """vmap over the backward of a batch of cotangents equals the backward of each."""
    from ..tensor import stack, vmap
    from .engine import run_backward as backward
    with enable_grad():
        outs = [o for o in _as_tuple(func(*inputs)) if isinstance(o, TensorBase)
                and o.requires_grad]
    rng = np.random.default_rng(seed)
    for o in outs:
        batch = o.new_zeros((2,) + tuple(o.shape)).detach()
        batch._data[...] = to_device(rng.standard_normal(batch._data.shape), device_of(o._data))

        def pull(v):
            return tuple(g if g is not None else x.new_zeros(x.shape) for g, x in zip(
                backward([o], [v], retain_graph=True, inputs=diff, accumulate=False), diff))
        batched = vmap(pull)(batch)
        for i, x in enumerate(diff):
            each = stack([pull(batch[b])[i] for b in range(2)])
            if not np.allclose(to_host(batched[i]._data), to_host(each._data)):
                if not raise_exception:
                    return False
                raise GradcheckError(f"batched gradient for input {i} differs from the "
                                     f"gradients computed one at a time")
    return True


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True,
              nondet_tol=0.0, check_undefined_grad=True, check_grad_dtypes=False,
              check_batched_grad=False, check_batched_forward_grad=False,
              check_forward_ad=False, check_backward_ad=True, fast_mode=False, masked=None):
    """Compare the analytic Jacobian of `func` at `inputs` with central differences, as
    PyTorch's gradcheck does: reverse mode (`check_backward_ad`, computed twice and equal
    within `nondet_tol`), forward mode (`check_forward_ad`), batched gradients
    (`check_batched_grad`, and `check_batched_forward_grad` with forward mode), gradient
    dtypes. The whole Jacobians are compared: `fast_mode` (PyTorch's cheaper projection of
    the same check) changes nothing but the cost, and undefined output gradients are always
    exercised (`check_undefined_grad`)."""
    if masked:
        raise NotImplementedError("gradcheck(masked=True) checks sparse inputs; Phalanx's "
                                  "sparse tensors carry their gradients in their values: "
                                  "check a function of the values instead")
    inputs = _as_tuple(inputs)
    diff = _diff_inputs(inputs)
    outs, num = _numerical_jacobian(func, inputs, diff, eps)
    if check_backward_ad:
        ana = _analytic_jacobian(func, inputs, diff, check_grad_dtypes)
        again = _analytic_jacobian(func, inputs, diff)
        for k in range(len(ana)):
            for i in range(len(diff)):
                if np.abs(ana[k][i] - again[k][i]).max(initial=0.0) > nondet_tol:
                    if not raise_exception:
                        return False
                    raise GradcheckError(f"Backward is not reentrant, i.e., running backward "
                                         f"with the same input and grad_output multiple times "
                                         f"gives different values (output {k}, input {i}), "
                                         f"beyond nondet_tol={nondet_tol}")
        if not _compare("Backward", ana, num, atol, rtol, raise_exception):
            return False
        if check_batched_grad and not _check_batched_grad(func, inputs, diff,
                                                          raise_exception):
            return False
    if check_forward_ad or check_batched_forward_grad:
        fwd = _forward_jacobian(func, inputs, diff)
        if not _compare("Forward", fwd, num, atol, rtol, raise_exception):
            return False
    return True


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  gen_non_contig_grad_outputs=False, raise_exception=True, seed=0,
                  nondet_tol=0.0, check_undefined_grad=True, check_grad_dtypes=False,
                  check_batched_grad=False, check_fwd_over_rev=False, check_rev_over_rev=True,
                  fast_mode=False, masked=False):
    """gradcheck of the gradient itself: checks double backward (create_graph=True), in
    reverse over reverse mode and, with `check_fwd_over_rev`, forward over reverse."""
    inputs = _as_tuple(inputs)
    _diff_inputs(inputs)                        # float64, before any work
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        outs = [o for o in _as_tuple(func(*inputs)) if isinstance(o, TensorBase)]
        grad_outputs = []
        for o in outs:
            g = o.new_zeros(o.shape).detach()
            g._data[...] = to_device(rng.standard_normal(o._data.shape), device_of(o._data))
            if gen_non_contig_grad_outputs and g.ndim:   # the same values, strided memory
                wide = g.new_zeros(tuple(g.shape[:-1]) + (2 * g.shape[-1],))
                wide._data[..., ::2] = g._data
                g = wide[..., ::2].detach()
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
                     rtol=rtol, raise_exception=raise_exception, nondet_tol=nondet_tol,
                     check_undefined_grad=check_undefined_grad,
                     check_grad_dtypes=check_grad_dtypes,
                     check_batched_grad=check_batched_grad,
                     check_forward_ad=check_fwd_over_rev,
                     check_backward_ad=check_rev_over_rev, fast_mode=fast_mode,
                     masked=masked)
