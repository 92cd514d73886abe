"""Adam and AdamW (Adam with decoupled weight decay), optionally AMSGrad."""
from ..tensor.backend import array_module
from . import fused
from ._array_ops import effective_grad, lerp_
from .optimizer import Optimizer, implementation_options, step_tensor, zeros_state


class Adam(Optimizer):
    # the keys of a param group in PyTorch's order (what state_dict() prints)
    _defaults_order = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach",
                       "capturable", "differentiable", "fused", "decoupled_weight_decay")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps} (must be >= 0)")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta} (must be in "
                                 f"[0, 1))")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay} (must be >= 0)")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      **implementation_options(
                                          foreach=foreach, fused=fused, capturable=capturable,
                                          differentiable=differentiable)))

    def _init_state(self, param, group):
        state = {"step": step_tensor(), "exp_avg": zeros_state(param),
                 "exp_avg_sq": zeros_state(param)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = zeros_state(param)
        return state

    def _update_group(self, group, params, grads, states):
        amsgrad = group["amsgrad"]
        beta1, beta2 = group["betas"]
        adam([p._data for p in params], grads,
             [s["exp_avg"]._data for s in states], [s["exp_avg_sq"]._data for s in states],
             [s["max_exp_avg_sq"]._data for s in states] if amsgrad else None,
             [s["step"]._data for s in states],
             amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=group["lr"],
             weight_decay=group["weight_decay"], eps=group["eps"],
             maximize=group["maximize"],
             decoupled_weight_decay=group.get("decoupled_weight_decay", False))


class AdamW(Adam):
    """Adam whose weight decay shrinks the parameters directly (`p *= 1 - lr * weight_decay`)
    instead of adding an L2 term to the gradient."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         foreach=foreach, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True)


def adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, amsgrad, beta1, beta2,
         lr, weight_decay, eps, maximize, decoupled_weight_decay):
    """Adam on lists of arrays, in place; `steps` are float32 scalar arrays, counted up here."""
    if fused.adam_step(params, grads, exp_avgs, exp_avg_sqs, steps, amsgrad=amsgrad,
                       beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay, eps=eps,
                       maximize=maximize, decoupled_weight_decay=decoupled_weight_decay):
        return                              # on a GPU: the whole group in one launch
    for i, p in enumerate(params):
        xp = array_module(p)
        steps[i] += 1
        step = float(steps[i])
        if decoupled_weight_decay:
            if weight_decay:
                p *= 1 - lr * weight_decay
            g = effective_grad(p, grads[i], 0, maximize)
        else:
            g = effective_grad(p, grads[i], weight_decay, maximize)
        exp_avg, exp_avg_sq = exp_avgs[i], exp_avg_sqs[i]
        scratch = xp.empty_like(p)

        lerp_(exp_avg, g, 1 - beta1, scratch)
        exp_avg_sq *= beta2
        exp_avg_sq += xp.multiply(xp.multiply(g, g, out=scratch), 1 - beta2, out=scratch)
        if amsgrad:
            exp_avg_sq = xp.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])

        # p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), with sqrt(bc2) moved onto the scalars
        # to save a pass over the array
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        denom = xp.sqrt(exp_avg_sq, out=scratch)
        denom += eps * bias_correction2_sqrt
        update = xp.divide(exp_avg, denom, out=scratch)
        update *= -lr * bias_correction2_sqrt / bias_correction1
        p += update
