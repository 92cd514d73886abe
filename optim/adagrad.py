"""Adagrad: per-element step sizes from the running sum of squared gradients."""
from ..tensor.backend import array_module
from ._array_ops import effective_grad
from .optimizer import Optimizer, implementation_options, step_tensor, zeros_state


class Adagrad(Optimizer):
    # the keys of a param group in PyTorch's order (what state_dict() prints)
    _defaults_order = ("lr", "lr_decay", "eps", "weight_decay", "initial_accumulator_value",
                       "foreach", "maximize", "differentiable", "fused")

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, foreach=None, *, maximize=False, differentiable=False,
                 fused=None):
        for name, value in (("learning rate", lr), ("lr_decay", lr_decay),
                            ("weight_decay", weight_decay),
                            ("initial_accumulator_value", initial_accumulator_value),
                            ("epsilon", eps)):
            if value < 0.0:
                raise ValueError(f"Invalid {name} value: {value} (must be >= 0)")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps,
                                      weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      maximize=maximize,
                                      **implementation_options(
                                          foreach=foreach, fused=fused,
                                          differentiable=differentiable)))
        # state exists from the start, as in PyTorch (its state dict has it before any step)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p].update(self._init_state(p, group))

    def _init_state(self, param, group):
        return {"step": step_tensor(),
                "sum": zeros_state(param, group["initial_accumulator_value"])}

    def _update_group(self, group, params, grads, states):
        adagrad([p._data for p in params], grads, [s["sum"]._data for s in states],
                [s["step"]._data for s in states], lr=group["lr"], lr_decay=group["lr_decay"],
                weight_decay=group["weight_decay"], eps=group["eps"],
                maximize=group["maximize"])


def adagrad(params, grads, state_sums, steps, *, lr, lr_decay, weight_decay, eps, maximize):
    """Adagrad on lists of arrays, in place."""
    for i, p in enumerate(params):
        xp = array_module(p)
        steps[i] += 1
        clr = lr / (1 + (float(steps[i]) - 1) * lr_decay)
        g = effective_grad(p, grads[i], weight_decay, maximize)
        scratch = xp.empty_like(p)

        state_sums[i] += xp.multiply(g, g, out=scratch)
        std = xp.sqrt(state_sums[i], out=scratch)
        std += eps
        update = xp.divide(g, std, out=scratch)
        update *= -clr
        p += update
