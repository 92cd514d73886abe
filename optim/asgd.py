"""ASGD: SGD with a decaying step size whose iterates are averaged (Polyak-Ruppert) once
`t0` steps have passed; the average is kept in the state as `ax`."""
import numpy as np

from ..tensor.backend import array_module
from ..tensor.tensor import Tensor
from ._array_ops import add_scaled_, effective_grad
from .optimizer import Optimizer, implementation_options, step_tensor, zeros_state


class ASGD(Optimizer):
    # the keys of a param group in PyTorch's order (what state_dict() prints)
    _defaults_order = ("lr", "lambd", "alpha", "t0", "weight_decay", "foreach", "maximize",
                       "differentiable", "capturable")

    def __init__(self, params, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0,
                 foreach=None, maximize=False, differentiable=False, capturable=False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay} (must be >= 0)")
        super().__init__(params, dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0,
                                      weight_decay=weight_decay, maximize=maximize,
                                      **implementation_options(
                                          foreach=foreach, differentiable=differentiable,
                                          capturable=capturable)))

    def _init_state(self, param, group):
        # eta (the step size) and mu (the averaging weight) are float32 CPU scalars like
        # `step`, as in PyTorch, whose rounding the update then shares
        return {"step": step_tensor(), "eta": Tensor._make(np.array(group["lr"], np.float32)),
                "mu": Tensor._make(np.array(1.0, np.float32)), "ax": zeros_state(param)}

    def _update_group(self, group, params, grads, states):
        asgd([p._data for p in params], grads, [s["ax"]._data for s in states],
             [s["mu"]._data for s in states], [s["eta"]._data for s in states],
             [s["step"]._data for s in states], lr=group["lr"], lambd=group["lambd"],
             alpha=group["alpha"], t0=group["t0"], weight_decay=group["weight_decay"],
             maximize=group["maximize"])


def asgd(params, grads, axs, mus, etas, steps, *, lr, lambd, alpha, t0, weight_decay, maximize):
    """ASGD on lists of arrays, in place; `mus`, `etas` and `steps` are float32 scalars."""
    for i, p in enumerate(params):
        xp = array_module(p)
        steps[i] += 1
        step = float(steps[i])
        g = effective_grad(p, grads[i], weight_decay, maximize)
        eta, mu, ax = float(etas[i]), float(mus[i]), axs[i]

        p *= 1 - lambd * eta
        add_scaled_(p, g, -eta, xp.empty_like(p))
        if mu != 1:
            scratch = xp.subtract(p, ax, out=xp.empty_like(p))
            scratch *= mu
            ax += scratch
        else:  # before t0 the "average" is the latest iterate
            ax[...] = p
        # rounded to float32 even after a state dict cast them to float64, as PyTorch does
        etas[i][...] = np.float32(lr / (1 + lambd * lr * step) ** alpha)
        mus[i][...] = np.float32(1 / max(1, step - t0))
