"""Adadelta: step sizes from the ratio of running RMS of past updates to that of gradients, so
the rate needs little tuning (`lr` only scales the result)."""
from ..tensor.backend import array_module
from ._array_ops import add_scaled_, effective_grad
from .optimizer import Optimizer, implementation_options, step_tensor, zeros_state


class Adadelta(Optimizer):
    # the keys of a param group in PyTorch's order (what state_dict() prints)
    _defaults_order = ("lr", "rho", "eps", "weight_decay", "maximize", "capturable", "foreach",
                       "differentiable")

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *,
                 capturable=False, maximize=False, differentiable=False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho} (must be in [0, 1])")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps} (must be >= 0)")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay} (must be >= 0)")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize,
                                      **implementation_options(
                                          capturable=capturable, foreach=foreach,
                                          differentiable=differentiable)))

    def _init_state(self, param, group):
        return {"step": step_tensor(), "square_avg": zeros_state(param),
                "acc_delta": zeros_state(param)}

    def _update_group(self, group, params, grads, states):
        adadelta([p._data for p in params], grads, [s["square_avg"]._data for s in states],
                 [s["acc_delta"]._data for s in states], [s["step"]._data for s in states],
                 lr=group["lr"], rho=group["rho"], eps=group["eps"],
                 weight_decay=group["weight_decay"], maximize=group["maximize"])


def adadelta(params, grads, square_avgs, acc_deltas, steps, *, lr, rho, eps, weight_decay,
             maximize):
    """Adadelta on lists of arrays, in place."""
    for i, p in enumerate(params):
        xp = array_module(p)
        steps[i] += 1
        g = effective_grad(p, grads[i], weight_decay, maximize)
        square_avg, acc_delta = square_avgs[i], acc_deltas[i]
        std, delta = xp.empty_like(p), xp.empty_like(p)

        square_avg *= rho
        square_avg += xp.multiply(xp.multiply(g, g, out=std), 1 - rho, out=std)
        xp.sqrt(xp.add(square_avg, eps, out=std), out=std)
        xp.sqrt(xp.add(acc_delta, eps, out=delta), out=delta)
        # delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g: the step taken, whose
        # running square is the numerator of the next one
        delta /= std
        delta *= g
        acc_delta *= rho
        acc_delta += xp.multiply(xp.multiply(delta, delta, out=std), 1 - rho, out=std)
        add_scaled_(p, delta, -lr, std)
