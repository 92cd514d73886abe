"""RAdam: Adam whose adaptive step is switched on, and rectified, only once the variance of
the second-moment estimate is tractable (before that, SGD with momentum)."""
from ..tensor.backend import array_module
from ._array_ops import effective_grad, lerp_
from .adamax import check_adam_options
from .optimizer import Optimizer, implementation_options, step_tensor, zeros_state


class RAdam(Optimizer):
    # the keys of a param group in PyTorch's order (what state_dict() prints)
    _defaults_order = ("lr", "betas", "eps", "weight_decay", "maximize", "foreach", "capturable",
                       "decoupled_weight_decay", "differentiable")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False,
                 capturable=False, differentiable=False):
        check_adam_options(lr, betas, eps, weight_decay)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize,
                                      **implementation_options(
                                          foreach=foreach, capturable=capturable,
                                          differentiable=differentiable)))

    def _init_state(self, param, group):
        return {"step": step_tensor(), "exp_avg": zeros_state(param),
                "exp_avg_sq": zeros_state(param)}

    def _update_group(self, group, params, grads, states):
        beta1, beta2 = group["betas"]
        radam([p._data for p in params], grads, [s["exp_avg"]._data for s in states],
              [s["exp_avg_sq"]._data for s in states], [s["step"]._data for s in states],
              lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
              weight_decay=group["weight_decay"],
              decoupled_weight_decay=group["decoupled_weight_decay"],
              maximize=group["maximize"])


def radam(params, grads, exp_avgs, exp_avg_sqs, steps, *, lr, beta1, beta2, eps, weight_decay,
          decoupled_weight_decay, maximize):
    """RAdam on lists of arrays, in place."""
    rho_inf = 2 / (1 - beta2) - 1  # the length of the second moment's averaging window
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
        update, scratch = xp.empty_like(p), xp.empty_like(p)

        lerp_(exp_avg, g, 1 - beta1, scratch)
        exp_avg_sq *= beta2
        exp_avg_sq += xp.multiply(xp.multiply(g, g, out=scratch), 1 - beta2, out=scratch)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        rho_t = rho_inf - 2 * step * beta2 ** step / bias_correction2

        xp.divide(exp_avg, bias_correction1, out=update)
        update *= lr
        if rho_t > 5.0:
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            adaptive = xp.sqrt(exp_avg_sq, out=scratch)
            adaptive += eps
            xp.divide(bias_correction2 ** 0.5, adaptive, out=adaptive)
            update *= adaptive
            update *= rect
        p -= update
