"""Adamax: Adam with the second moment replaced by an exponentially weighted infinity norm."""
from ..tensor.backend import array_module
from ._array_ops import effective_grad, lerp_
from .optimizer import Optimizer, implementation_options, step_tensor, zeros_state


class Adamax(Optimizer):
    # the keys of a param group in PyTorch's order (what state_dict() prints)
    _defaults_order = ("lr", "betas", "eps", "weight_decay", "foreach", "maximize",
                       "differentiable", "capturable")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 foreach=None, *, maximize=False, differentiable=False, capturable=False):
        check_adam_options(lr, betas, eps, weight_decay)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize,
                                      **implementation_options(
                                          foreach=foreach, differentiable=differentiable,
                                          capturable=capturable)))

    def _init_state(self, param, group):
        return {"step": step_tensor(), "exp_avg": zeros_state(param),
                "exp_inf": zeros_state(param)}

    def _update_group(self, group, params, grads, states):
        beta1, beta2 = group["betas"]
        adamax([p._data for p in params], grads, [s["exp_avg"]._data for s in states],
               [s["exp_inf"]._data for s in states], [s["step"]._data for s in states],
               lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
               weight_decay=group["weight_decay"], maximize=group["maximize"])


def check_adam_options(lr, betas, eps, weight_decay):
    """The checks every Adam-like optimizer makes on its common options."""
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")
    if eps < 0.0:
        raise ValueError(f"Invalid epsilon value: {eps} (must be >= 0)")
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta} (must be in [0, 1))")
    if weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay} (must be >= 0)")


def adamax(params, grads, exp_avgs, exp_infs, steps, *, lr, beta1, beta2, eps, weight_decay,
           maximize):
    """Adamax on lists of arrays, in place."""
    for i, p in enumerate(params):
        xp = array_module(p)
        steps[i] += 1
        g = effective_grad(p, grads[i], weight_decay, maximize)
        exp_avg, exp_inf = exp_avgs[i], exp_infs[i]
        scratch = xp.empty_like(p)

        lerp_(exp_avg, g, 1 - beta1, scratch)
        exp_inf *= beta2
        norm = xp.abs(g, out=scratch)
        norm += eps
        xp.maximum(exp_inf, norm, out=exp_inf)
        update = xp.divide(exp_avg, exp_inf, out=scratch)
        update *= -lr / (1 - beta1 ** float(steps[i]))
        p += update
