"""RMSprop: divide the gradient by a running root-mean-square of recent gradients."""
from ..tensor.backend import array_module
from ._array_ops import add_scaled_, effective_grad, lerp_
from .optimizer import Optimizer, implementation_options, step_tensor, zeros_state


class RMSprop(Optimizer):
    # the keys of a param group in PyTorch's order (what state_dict() prints)
    _defaults_order = ("lr", "momentum", "alpha", "eps", "centered", "weight_decay", "capturable",
                       "foreach", "maximize", "differentiable")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False):
        for name, value in (("learning rate", lr), ("epsilon", eps), ("momentum", momentum),
                            ("weight_decay", weight_decay), ("alpha", alpha)):
            if value < 0.0:
                raise ValueError(f"Invalid {name} value: {value} (must be >= 0)")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize,
                                      **implementation_options(
                                          foreach=foreach, capturable=capturable,
                                          differentiable=differentiable)))

    def _init_state(self, param, group):
        state = {"step": step_tensor(), "square_avg": zeros_state(param)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = zeros_state(param)
        if group["centered"]:
            state["grad_avg"] = zeros_state(param)
        return state

    def _update_group(self, group, params, grads, states):
        momentum, centered = group["momentum"], group["centered"]
        rmsprop([p._data for p in params], grads, [s["square_avg"]._data for s in states],
                [s["grad_avg"]._data for s in states] if centered else None,
                [s["momentum_buffer"]._data for s in states] if momentum > 0 else None,
                [s["step"]._data for s in states],
                lr=group["lr"], alpha=group["alpha"], eps=group["eps"],
                weight_decay=group["weight_decay"], momentum=momentum, centered=centered,
                maximize=group["maximize"])


def rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffers, steps, *, lr, alpha, eps,
            weight_decay, momentum, centered, maximize):
    """RMSprop on lists of arrays, in place; `grad_avgs` only when centered, `momentum_buffers`
    only when momentum > 0."""
    for i, p in enumerate(params):
        xp = array_module(p)
        steps[i] += 1
        g = effective_grad(p, grads[i], weight_decay, maximize)
        square_avg = square_avgs[i]
        scratch = xp.empty_like(p)

        square_avg *= alpha
        square_avg += xp.multiply(xp.multiply(g, g, out=scratch), 1 - alpha, out=scratch)
        if centered:
            grad_avg = lerp_(grad_avgs[i], g, 1 - alpha, scratch)
            avg = xp.subtract(square_avg, xp.multiply(grad_avg, grad_avg, out=scratch),
                              out=scratch)
            xp.sqrt(avg, out=avg)
        else:
            avg = xp.sqrt(square_avg, out=scratch)
        avg += eps

        if momentum > 0:
            buf = momentum_buffers[i]
            buf *= momentum
            buf += xp.divide(g, avg, out=scratch)
            add_scaled_(p, buf, -lr, scratch)
        else:
            update = xp.divide(g, avg, out=scratch)
            update *= -lr
            p += update
