"""More creation functions: asarray (shares memory unless told to copy), frombuffer (over a
buffer's memory), empty_strided (with the given strides), logspace, and the deprecated but
still accepted `range` (end included)."""
import warnings

import numpy as np

from . import backend, dtypes
from .creation import _to_array, tensor
from .tensor import Tensor, as_device


def _number(v):
    return v.item() if isinstance(v, Tensor) else v


def logspace(start, end, steps, base=10.0, dtype=None, device=None, requires_grad=False):
    """`steps` points base**linspace(start, end), in the default dtype unless `dtype` says
    otherwise (integer dtypes truncate, as in PyTorch)."""
    start, end, base = _number(start), _number(end), _number(base)
    np_dtype = dtypes.to_numpy_dtype(dtype or dtypes.get_default_dtype())
    xp, place = backend.placed_on(as_device(device))
    with place:
        arr = xp.power(float(base), xp.linspace(start, end, int(steps))).astype(np_dtype)
    return Tensor._make(arr, requires_grad)


def range(start=0, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """Deprecated in PyTorch (and warned about the same way): [start, end] with `end`
    included, in the default dtype unless `dtype` says otherwise."""
    warnings.warn("torch.range is deprecated and will be removed in a future release because "
                  "its behavior is inconsistent with Python's range builtin. Instead, use "
                  "phalanx.arange, which produces values in [start, end).", UserWarning,
                  stacklevel=2)
    start, end, step = _number(start), _number(end), _number(step)
    if end is None:
        start, end = 0, start
    if step == 0 or (end - start) * step < 0:
        raise RuntimeError(f"upper bound and larger bound inconsistent with step sign "
                           f"(start={start}, end={end}, step={step})")
    count = int(np.floor((end - start) / step)) + 1
    np_dtype = dtypes.to_numpy_dtype(dtype or dtypes.get_default_dtype())
    xp, place = backend.placed_on(as_device(device))
    with place:
        arr = (start + step * xp.arange(count, dtype=np.float64)).astype(np_dtype)
    return Tensor._make(arr, requires_grad)


def asarray(obj, *, dtype=None, device=None, copy=None, requires_grad=None):
    """A tensor over `obj`: its memory shared when no conversion is needed and `copy` is not
    True; `copy=False` makes any needed copy an error. From a tensor, a conversion or copy is
    part of the graph; `requires_grad` defaults to the tensor's own (as in PyTorch 2.13)."""
    device = as_device(device)
    if isinstance(obj, Tensor):
        same = (dtype is None or dtype is obj.dtype) and (device is None or
                                                           device == obj.device)
        if copy is False and not same:
            raise ValueError(f"can't alias a {obj.dtype} tensor on {obj.device} into "
                             f"dtype {dtype} on device {device} without a copy (copy=False)")
        out = obj.to(dtype=dtype, device=device) if not same else obj
        if copy and out is obj:
            out = obj.clone()
        if requires_grad is False and out.requires_grad:
            out = out.detach()
        elif requires_grad and not out.requires_grad:
            out = (out if out is not obj else obj.detach()).requires_grad_()
        return out
    shareable = isinstance(obj, np.ndarray) or backend.is_cupy_array(obj) or \
        hasattr(obj, "__array_interface__") or hasattr(obj, "__cuda_array_interface__")
    if copy is False and not shareable:
        raise ValueError(f"can't alias a {type(obj).__name__} into a tensor (copy=False); "
                         f"pass an array or a tensor, or allow a copy")
    if shareable and not copy:
        arr = _to_array(obj if backend.is_cupy_array(obj) else np.asarray(obj), dtype, device,
                        copy=False)
        if copy is False and not _shares_memory(arr, obj):
            raise ValueError(f"can't alias an array of dtype {np.asarray(obj).dtype} into "
                             f"dtype {dtype} on device {device} without a copy (copy=False)")
        return Tensor._make(arr, bool(requires_grad))
    return tensor(obj, dtype=dtype, device=device, requires_grad=bool(requires_grad))


def frombuffer(buffer, *, dtype, count=-1, offset=0, requires_grad=False):
    """A 1-D tensor over the bytes of `buffer` from `offset` on (sharing its memory): `count`
    elements of `dtype`, or as many as fit when count is -1."""
    np_dtype = dtypes.to_numpy_dtype(dtype)
    view = memoryview(buffer)
    available = view.nbytes - offset
    if offset < 0 or offset >= view.nbytes:
        raise ValueError(f"both buffer length ({view.nbytes}) and offset ({offset}) must be "
                         f"positive and offset must be less than the buffer length")
    if count == -1:
        if available % np_dtype.itemsize:
            raise ValueError(f"buffer length ({available} bytes after offset) must be a "
                             f"multiple of element size ({np_dtype.itemsize})")
        count = available // np_dtype.itemsize
    elif count <= 0 or count * np_dtype.itemsize > available:
        raise ValueError(f"requested buffer length ({count} * {np_dtype.itemsize} bytes) "
                         f"after offset ({offset}) must not be greater than actual buffer "
                         f"length ({view.nbytes})")
    arr = np.frombuffer(buffer, dtype=np_dtype, count=count, offset=offset)
    if view.readonly:
        warnings.warn("The given buffer is not writable; the tensor shares its memory, and "
                      "writing to it fails. Copy the buffer (bytearray(buffer)) to write.",
                      UserWarning, stacklevel=2)
    return Tensor._make(arr, requires_grad)


def empty_strided(size, stride, *, dtype=None, device=None, requires_grad=False,
                  pin_memory=False):
    """An uninitialised tensor of shape `size` whose elements lie `stride` elements apart."""
    if pin_memory:
        raise NotImplementedError("empty_strided: pin_memory=True is not supported; call "
                                  ".pin_memory() on the result")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise RuntimeError(f"mismatch in length of strides and shape: {list(size)} and "
                           f"{list(stride)}")
    np_dtype = dtypes.to_numpy_dtype(dtype or dtypes.get_default_dtype())
    span = 1 + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else 0
    xp, place = backend.placed_on(as_device(device))
    with place:
        block = xp.empty((span,), np_dtype)
        arr = xp.lib.stride_tricks.as_strided(
            block, size, tuple(s * np_dtype.itemsize for s in stride))
    return Tensor._make(arr, requires_grad)


def _shares_memory(arr, obj):
    if backend.is_cupy_array(arr) != backend.is_cupy_array(obj):
        return False
    if backend.is_cupy_array(arr):
        return arr.data.ptr == obj.data.ptr
    return np.may_share_memory(arr, np.asarray(obj))


__all__ = ["asarray", "empty_strided", "frombuffer", "logspace", "range"]
