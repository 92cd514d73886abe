"""`torch.autograd.forward_ad`: dual tensors, computed with the reverse-mode engine.

    with fwAD.dual_level():
        x = fwAD.make_dual(primal, tangent)
        y = f(x)
        jvp = fwAD.unpack_dual(y).tangent        # J_f(primal) @ tangent

Phalanx has no forward-mode kernels: a dual tensor is its primal, recording the graph, and
the level remembers its tangent. `unpack_dual(y)` gets J t by differentiating twice in
reverse mode: g(u) = J^T u is linear in u, so J t = d(t . g(u))/du, taken at u = 0 (one
backward with `create_graph=True` to the duals, one more to u). The values are those of
forward mode; the costs are two backward passes per unpacked tensor, and ops must be
differentiable twice (every built-in one is). Unlike PyTorch, tangents are not carried
through code that runs under `no_grad`.
"""
from collections import namedtuple

from . import grad as _grad
from .grad_mode import enable_grad

__all__ = ["UnpackedDualTensor", "dual_level", "enter_dual_level", "exit_dual_level",
           "make_dual", "unpack_dual"]

UnpackedDualTensor = namedtuple("UnpackedDualTensor", ["primal", "tangent"])
_levels = []          # per open level: [(dual tensor, its tangent, primal recorded grads)]


def enter_dual_level():
    """Open a new (innermost) level; returns its index."""
    _levels.append([])
    return len(_levels) - 1


def exit_dual_level(*, level=None):
    """Close the innermost level (`level`, if given, must be it); its duals lose their
    tangents."""
    if not _levels:
        raise RuntimeError("exit_dual_level: no dual level is open")
    if level is not None and level != len(_levels) - 1:
        raise RuntimeError(f"Trying to exit a forward AD level that was not the last one that "
                           f"was created. This is not supported (level {level}, innermost "
                           f"{len(_levels) - 1}).")
    _levels.pop()


class dual_level:
    """Context manager of a forward-AD level (`with dual_level():`)."""

    def __enter__(self):
        return enter_dual_level()

    def __exit__(self, *exc):
        exit_dual_level()


def _level(level):
    if not _levels:
        raise RuntimeError("To create or unpack a dual Tensor for forward AD you need to be "
                           "inside a dual level: use `with fwAD.dual_level():`")
    return _levels[-1 if level is None else level]


def make_dual(tensor, tangent, *, level=None):
    """`tensor` as a dual number with `tangent` (same shape): what is computed from it
    carries the tangent through (read it back with `unpack_dual`)."""
    duals = _level(level)
    if tuple(tangent.shape) != tuple(tensor.shape):
        raise RuntimeError(f"Trying to set a forward gradient that has a different size than "
                           f"that of the original Tensor, this is not supported. Tensor is of "
                           f"size {list(tensor.shape)} while the given forward gradient is of "
                           f"size {list(tangent.shape)}.")
    if not (tensor.is_floating_point() or tensor.is_complex()):
        raise ValueError(f"Expected primal to be floating point or complex, but got: "
                         f"{tensor.dtype}")
    with enable_grad():
        dual = tensor.view_as(tensor) if tensor.requires_grad else \
            tensor.detach().requires_grad_(True)
    duals.append((dual, tangent, tensor.requires_grad))
    return dual


def unpack_dual(tensor, *, level=None):
    """(primal, tangent) of `tensor`: the tangent is None when `tensor` does not depend on a
    dual of the level (or is not a tensor computed with gradients recorded), and after the
    level has closed, as PyTorch's."""
    if not _levels:
        return UnpackedDualTensor(tensor, None)
    duals = _level(level)
    for dual, tangent, _ in duals:
        if dual is tensor:
            return UnpackedDualTensor(tensor, tangent)
    if not getattr(tensor, "requires_grad", False) or tensor.grad_fn is None or not duals:
        return UnpackedDualTensor(tensor, None)
    with enable_grad():
        probe = tensor.new_zeros(*tensor.shape).requires_grad_(True)
        pulled = _grad([tensor], [d for d, _, _ in duals], [probe], create_graph=True,
                       allow_unused=True)
        used = [(g, t) for g, (_, t, _) in zip(pulled, duals) if g is not None]
        if not used:
            return UnpackedDualTensor(tensor, None)
        (pushed,) = _grad([g for g, _ in used], [probe], [t for _, t in used],
                          create_graph=True, allow_unused=True)
    if pushed is None:
        pushed = tensor.new_zeros(*tensor.shape)
    if not any(recorded for _, _, recorded in duals):   # not inside a transform: a plain value
        pushed = pushed.detach()
    return UnpackedDualTensor(tensor, pushed)
