"""Gradient clipping, in place on `.grad` (outside the graph)."""
import math
import warnings

from ...tensor import Tensor
from ...tensor.backend import array_module, device_of, to_device


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """The norm of the norms of `tensors` (as one tensor on the first tensor's device)."""
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    tensors = list(tensors)
    norm_type = float(norm_type)
    if not tensors:
        from ...tensor import tensor
        return tensor(0.0)
    first = tensors[0]._data
    xp = array_module(first)
    norms = []
    for t in tensors:
        d = to_device(t._data, device_of(first)).astype(xp.float64, copy=False)
        if norm_type == math.inf:
            norms.append(xp.abs(d).max() if d.size else xp.asarray(0.0))
        else:
            norms.append((xp.abs(d) ** norm_type).sum())
    if norm_type == math.inf:
        total = xp.max(xp.stack(norms))
    else:
        total = xp.stack(norms).sum() ** (1.0 / norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from "
                           f"`parameters` is non-finite, so it cannot be clipped. To disable "
                           f"this error and scale the gradients by the non-finite norm anyway, "
                           f"set `error_if_nonfinite=False`")
    return Tensor._make(total.astype(first.dtype))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                    foreach=None):
    """Scale all gradients together so that their total norm is at most `max_norm`; returns
    the total norm before clipping."""
    grads = _grads(parameters)
    total = get_total_norm(grads, norm_type, error_if_nonfinite)
    if not grads:
        return total
    _scale(grads, max_norm, total)
    return total


def _scale(grads, max_norm, total_norm):
    coef = float(max_norm) / (float(total_norm.item() if isinstance(total_norm, Tensor)
                                    else total_norm) + 1e-6)
    if coef < 1.0:
        for g in grads:
            g._data *= g._data.dtype.type(coef)
            g._version[0] += 1


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None):
    """Scale the gradients by max_norm / (total_norm + 1e-6) when that is below 1: the second
    half of clip_grad_norm_, for a total norm computed elsewhere (e.g. across ranks)."""
    _scale(_grads(parameters), max_norm, total_norm)


def clip_grad_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                   foreach=None):
    """The old name of clip_grad_norm_ (deprecated in PyTorch, which still accepts it)."""
    warnings.warn("`torch.nn.utils.clip_grad_norm` is now deprecated in favor of "
                  "`torch.nn.utils.clip_grad_norm_`.", FutureWarning, stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient element into [-clip_value, clip_value]."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        xp = array_module(g._data)
        xp.clip(g._data, -clip_value, clip_value, out=g._data)
        g._version[0] += 1
