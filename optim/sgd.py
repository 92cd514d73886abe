"""Stochastic gradient descent, with momentum (heavy-ball or Nesterov), dampening and L2 decay."""
from ..tensor.backend import array_module
from . import fused
from ._array_ops import add_scaled_, effective_grad
from .optimizer import Optimizer, implementation_options, state_like


class SGD(Optimizer):
    # the keys of a param group in PyTorch's order (what state_dict() prints)
    _defaults_order = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize",
                       "foreach", "differentiable", "fused")

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, foreach=None, differentiable=False,
                 fused=None):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum} (must be >= 0)")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay} (must be >= 0)")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"Nesterov momentum requires a momentum > 0 and zero dampening "
                             f"(got momentum={momentum}, dampening={dampening})")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize,
                                      **implementation_options(foreach=foreach, fused=fused,
                                                               differentiable=differentiable)))

    def _update_group(self, group, params, grads, states):
        momentum = group["momentum"]
        buffers = [s["momentum_buffer"]._data if s.get("momentum_buffer") is not None else None
                   for s in states] if momentum != 0 else None
        sgd([p._data for p in params], grads, buffers, lr=group["lr"], momentum=momentum,
            dampening=group["dampening"], nesterov=group["nesterov"],
            weight_decay=group["weight_decay"], maximize=group["maximize"])
        if momentum != 0:
            for param, state, buf in zip(params, states, buffers):
                if state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = state_like(param, buf)


def sgd(params, grads, momentum_buffers, *, lr, momentum, dampening, nesterov, weight_decay,
        maximize):
    """SGD on lists of arrays, in place. `momentum_buffers[i]` is None until the first step,
    which fills it with that step's gradient (as PyTorch does)."""
    if fused.sgd_step(params, grads, momentum_buffers, lr=lr, momentum=momentum,
                      dampening=dampening, nesterov=nesterov, weight_decay=weight_decay,
                      maximize=maximize):   # on a GPU: the whole group in one launch
        return
    for i, (p, g) in enumerate(zip(params, grads)):
        g = effective_grad(p, g, weight_decay, maximize)
        if momentum != 0:
            buf = momentum_buffers[i]
            if buf is None:
                buf = momentum_buffers[i] = g.copy()
            else:
                buf *= momentum
                add_scaled_(buf, g, 1 - dampening)
            if nesterov:
                xp = array_module(p)
                g = xp.add(g, xp.multiply(buf, momentum, out=xp.empty_like(buf)))
            else:
                g = buf
        add_scaled_(p, g, -lr)
