"""Adafactor: Adam-like steps whose second moment of a matrix is kept factored, as one row and
one column average (memory O(rows + cols)), with a relative step size, no first moment, and
the update clipped to RMS `d`. PyTorch's variant: decay 1 - step**beta2_decay, step size
min(lr, 1/sqrt(step)) scaled by the parameter's RMS."""
import numpy as np

from ..tensor.backend import array_module
from ..tensor.tensor import Tensor
from ._array_ops import lerp_
from .optimizer import Optimizer, step_tensor, zeros_state


class Adafactor(Optimizer):
    _elementwise = False    # factored second moments: row and column means
    # the keys of a param group in PyTorch's order (what state_dict() prints)
    _defaults_order = ("lr", "beta2_decay", "eps", "d", "weight_decay", "foreach", "maximize")

    def __init__(self, params, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0,
                 weight_decay=0.0, *, foreach=None, maximize=False):
        if lr < 0.0:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if beta2_decay > 0.0:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and eps[0] < 0.0:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if eps[1] < 0.0:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if d < 1.0:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        if weight_decay < 0.0:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        # foreach picks a kernel, not the update: any value is honoured by the one here
        super().__init__(params, dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d,
                                      weight_decay=weight_decay, foreach=foreach,
                                      maximize=maximize))

    def _init_state(self, param, group):
        state = {"step": step_tensor()}
        if param._data.ndim > 1:  # factored over the last two dimensions
            xp = array_module(param._data)
            shape = param._data.shape
            state["row_var"] = _zeros(xp, shape[:-1] + (1,), param)
            state["col_var"] = _zeros(xp, shape[:-2] + (1, shape[-1]), param)
        else:
            state["variance"] = zeros_state(param)
        return state

    def _update_group(self, group, params, grads, states):
        eps1, eps2 = group["eps"]
        adafactor([p._data for p in params], grads,
                  [s["row_var"]._data if "row_var" in s else None for s in states],
                  [s["col_var"]._data if "col_var" in s else None for s in states],
                  [s["variance"]._data if "variance" in s else None for s in states],
                  [s["step"]._data for s in states], lr=group["lr"],
                  beta2_decay=group["beta2_decay"], eps1=eps1, eps2=eps2, d=group["d"],
                  weight_decay=group["weight_decay"], maximize=group["maximize"])


def _zeros(xp, shape, param):
    return Tensor._make(xp.zeros(shape, dtype=param._data.dtype))


def adafactor(params, grads, row_vars, col_vars, variances, steps, *, lr, beta2_decay, eps1,
              eps2, d, weight_decay, maximize):
    """Adafactor on lists of arrays, in place; matrices (ndim > 1) use `row_vars`/`col_vars`,
    the rest `variances`."""
    for i, p in enumerate(params):
        xp = array_module(p)
        g = -grads[i] if maximize else grads[i]
        if eps1 is None:  # PyTorch fixes it from the first parameter's dtype
            eps1 = float(np.finfo(p.dtype).eps)
        steps[i] += 1
        step = float(steps[i])
        one_minus_beta2 = step ** beta2_decay
        rho = min(lr, 1 / step ** 0.5)
        alpha = max(eps2, float(xp.linalg.norm(p.reshape(-1))) / p.size ** 0.5) * rho
        if weight_decay:
            p *= 1 - lr * weight_decay

        if g.ndim > 1:
            # the mean of g*g along each axis, as PyTorch computes it (a squared norm)
            row_mean = xp.square(xp.sqrt(xp.sum(g * g, axis=-1, keepdims=True)))
            row_mean /= g.shape[-1]
            lerp_(row_vars[i], row_mean, one_minus_beta2, xp.empty_like(row_mean))
            col_mean = xp.square(xp.sqrt(xp.sum(g * g, axis=-2, keepdims=True)))
            col_mean /= g.shape[-2]
            lerp_(col_vars[i], col_mean, one_minus_beta2, xp.empty_like(col_mean))
            var_estimate = xp.matmul(row_vars[i], col_vars[i])
            var_estimate /= xp.maximum(xp.mean(row_vars[i], axis=-2, keepdims=True), eps1)
        else:
            lerp_(variances[i], g * g, one_minus_beta2, xp.empty_like(p))
            var_estimate = variances[i].copy()
        # eps1 squared, as the square root comes after
        update = xp.maximum(var_estimate, eps1 * eps1, out=var_estimate)
        xp.sqrt(update, out=update)
        xp.divide(1, update, out=update)
        update *= g
        denom = max(1.0, float(xp.linalg.norm(update.reshape(-1))) / (update.size ** 0.5 * d))
        update *= -alpha / denom
        p += update
