"""Rprop: per-element step sizes that grow while the gradient keeps its sign and shrink when it
flips; only the gradient's sign is used (full-batch training)."""
from ..tensor.backend import array_module
from ._array_ops import effective_grad
from .optimizer import Optimizer, implementation_options, step_tensor, zeros_state


class Rprop(Optimizer):
    # the keys of a param group in PyTorch's order (what state_dict() prints)
    _defaults_order = ("lr", "etas", "step_sizes", "foreach", "maximize", "differentiable",
                       "capturable")

    def __init__(self, params, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]} (need 0 < etaminus < 1 "
                             f"< etaplus)")
        super().__init__(params, dict(lr=lr, etas=etas, step_sizes=step_sizes,
                                      maximize=maximize,
                                      **implementation_options(
                                          foreach=foreach, differentiable=differentiable,
                                          capturable=capturable)))

    def _init_state(self, param, group):
        return {"step": step_tensor(), "prev": zeros_state(param),
                # a complex parameter steps its real and imaginary parts apart: both start at lr
                "step_size": zeros_state(param, complex(group["lr"], group["lr"])
                                         if param.dtype.is_complex else group["lr"])}

    def _update_group(self, group, params, grads, states):
        etaminus, etaplus = group["etas"]
        step_size_min, step_size_max = group["step_sizes"]
        rprop([p._data for p in params], grads, [s["prev"]._data for s in states],
              [s["step_size"]._data for s in states], [s["step"]._data for s in states],
              etaminus=etaminus, etaplus=etaplus, step_size_min=step_size_min,
              step_size_max=step_size_max, maximize=group["maximize"])


def rprop(params, grads, prevs, step_sizes, steps, *, etaminus, etaplus, step_size_min,
          step_size_max, maximize):
    """Rprop on lists of arrays, in place. `prevs` holds the last gradient, zeroed where its
    sign flipped (so the element neither moves nor shrinks again on the next step)."""
    for i, p in enumerate(params):
        xp = array_module(p)
        steps[i] += 1
        g = effective_grad(p, grads[i], 0, maximize)
        prev, step_size = prevs[i], step_sizes[i]

        agreement = xp.multiply(g, prev, out=xp.empty_like(p))
        xp.sign(agreement, out=agreement)
        flipped = agreement < 0
        factor = xp.ones_like(p)  # in the parameter's dtype, so float32 stays float32
        factor[agreement > 0] = etaplus
        factor[flipped] = etaminus
        step_size *= factor
        xp.clip(step_size, step_size_min, step_size_max, out=step_size)
        xp.copyto(prev, g)
        prev[flipped] = 0
        update = xp.sign(prev, out=agreement)
        update *= step_size
        p -= update
