"""NAdam: Adam with Nesterov momentum, whose momentum coefficient warms up by `momentum_decay`."""
import numpy as np

from ..tensor.backend import array_module
from ..tensor.tensor import Tensor
from ._array_ops import effective_grad, lerp_
from .adamax import check_adam_options
from .optimizer import Optimizer, implementation_options, step_tensor, zeros_state


class NAdam(Optimizer):
    # the keys of a param group in PyTorch's order (what state_dict() prints)
    _defaults_order = ("lr", "betas", "eps", "weight_decay", "momentum_decay",
                       "decoupled_weight_decay", "maximize", "foreach", "capturable",
                       "differentiable")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, foreach=None,
                 maximize=False, capturable=False, differentiable=False):
        check_adam_options(lr, betas, eps, weight_decay)
        if momentum_decay < 0.0:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay} (must be >= 0)")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize,
                                      **implementation_options(
                                          foreach=foreach, capturable=capturable,
                                          differentiable=differentiable)))

    def _init_state(self, param, group):
        # the product of the momentum coefficients so far: a float32 CPU scalar like `step`,
        # as in PyTorch, whose rounding the update then shares
        return {"step": step_tensor(), "mu_product": Tensor._make(np.array(1.0, np.float32)),
                "exp_avg": zeros_state(param), "exp_avg_sq": zeros_state(param)}

    def _update_group(self, group, params, grads, states):
        beta1, beta2 = group["betas"]
        nadam([p._data for p in params], grads, [s["exp_avg"]._data for s in states],
              [s["exp_avg_sq"]._data for s in states], [s["mu_product"]._data for s in states],
              [s["step"]._data for s in states], lr=group["lr"], beta1=beta1, beta2=beta2,
              eps=group["eps"], weight_decay=group["weight_decay"],
              momentum_decay=group["momentum_decay"],
              decoupled_weight_decay=group["decoupled_weight_decay"],
              maximize=group["maximize"])


def nadam(params, grads, exp_avgs, exp_avg_sqs, mu_products, steps, *, lr, beta1, beta2, eps,
          weight_decay, momentum_decay, decoupled_weight_decay, maximize):
    """NAdam on lists of arrays, in place; `mu_products` and `steps` are float32 scalars."""
    for i, p in enumerate(params):
        xp = array_module(p)
        steps[i] += 1
        step = float(steps[i])
        if decoupled_weight_decay and weight_decay:
            p *= 1 - lr * weight_decay
            g = effective_grad(p, grads[i], 0, maximize)
        else:
            g = effective_grad(p, grads[i], weight_decay, maximize)
        exp_avg, exp_avg_sq = exp_avgs[i], exp_avg_sqs[i]
        denom, scratch = xp.empty_like(p), xp.empty_like(p)

        mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
        mu_products[i] *= mu
        mu_product = float(mu_products[i])
        lerp_(exp_avg, g, 1 - beta1, scratch)
        exp_avg_sq *= beta2
        exp_avg_sq += xp.multiply(xp.multiply(g, g, out=scratch), 1 - beta2, out=scratch)
        xp.divide(exp_avg_sq, 1 - beta2 ** step, out=denom)
        xp.sqrt(denom, out=denom)
        denom += eps
        # the Nesterov step: this gradient at the current coefficient, plus the momentum at
        # the next one
        update = xp.divide(g, denom, out=scratch)
        update *= -lr * (1.0 - mu) / (1.0 - mu_product)
        p += update
        update = xp.divide(exp_avg, denom, out=scratch)
        update *= -lr * mu_next / (1.0 - mu_product * mu_next)
        p += update
