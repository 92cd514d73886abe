"""Gradient clipping, in place on `.grad` (outside the graph).

Everything stays on the gradients' device: the norm is a device scalar and the scale factor
min(max_norm / (norm + 1e-6), 1) is applied without reading it on the host, as PyTorch does,
so clipping adds no synchronisation to a training step (except `error_if_nonfinite=True`,
which must look at the norm).
"""
import math
import warnings

import numpy as np

from ...tensor import Tensor
from ...tensor.backend import array_module, device_of, host_scalar, to_device


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
    where = device_of(first)
    norms = []
    for t in tensors:
        # each norm in the gradient's precision (float32 at least, as PyTorch accumulates);
        # only the scalar norms move to the first gradient's device
        d = t._data
        acc = np.promote_types(d.dtype, np.float32)
        norms.append(to_device(_norm(array_module(d), d.astype(acc, copy=False), norm_type),
                               where))
    sharded = [i for i, t in enumerate(tensors) if getattr(t, "_whole_norms", None)]
    if sharded:    # a DTensor's norm is over every rank's part (FSDP's sharded gradients)
        whole = tensors[sharded[0]]._whole_norms([norms[i] for i in sharded],
                                                 [tensors[i] for i in sharded], norm_type)
        for i, n in zip(sharded, whole):
            norms[i] = n
    acc = np.result_type(*[n.dtype for n in norms])
    # the same norm of the stacked norms, as PyTorch's vector_norm of them
    total = _norm(xp, xp.stack([n.astype(acc, copy=False) for n in norms]), norm_type)
    if error_if_nonfinite and not math.isfinite(host_scalar(total)):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from "
                           f"`parameters` is non-finite, so it cannot be clipped. To disable "
                           f"this error and scale the gradients by the non-finite norm anyway, "
                           f"set `error_if_nonfinite=False`")
    return Tensor._make(xp.asarray(total).astype(first.dtype))


def _norm(xp, d, norm_type):
    """The `norm_type`-norm of array `d` as a 0-d array on its device."""
    if not d.size:
        return xp.zeros((), d.dtype)
    flat = d.reshape(-1)
    if norm_type == 2.0:
        return xp.sqrt(xp.dot(flat, flat))  # one BLAS call, no temporary of d's size
    if norm_type == math.inf:
        return xp.abs(flat).max()
    if norm_type == -math.inf:
        return xp.abs(flat).min()
    if norm_type == 0:
        return (flat != 0).sum().astype(d.dtype)
    return (xp.abs(flat) ** norm_type).sum() ** (1.0 / norm_type)


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
    """Multiply every gradient by min(max_norm / (total_norm + 1e-6), 1), computed where the
    norm lives (multiplying by 1 changes nothing, and deciding would read the norm)."""
    if not grads:
        return
    if isinstance(total_norm, Tensor):
        total_norm = total_norm._data
    if isinstance(total_norm, (int, float)):
        coef = min(float(max_norm) / (float(total_norm) + 1e-6), 1.0)
        for g in grads:
            g._data *= g._data.dtype.type(coef)
            g._version[0] += 1
        return
    xp = array_module(total_norm)
    coef = xp.minimum(float(max_norm) / (total_norm.astype(np.float64 if total_norm.dtype ==
                                                           np.float64 else np.float32) + 1e-6),
                      1.0)
    for g in grads:
        g._data *= to_device(coef, device_of(g._data)).astype(g._data.dtype)
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
