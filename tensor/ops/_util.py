"""Helpers shared by the op families: operand preparation and undoing broadcasting."""
import numpy as np

from ..backend import device_of
from ..dtypes import get_default_dtype, result_type
from ..tensor import Tensor

make = Tensor._make


def arr(x):
    return x._data if isinstance(x, Tensor) else x


def devices_error(x, y):
    return RuntimeError(f"Expected all tensors to be on the same device, but found at least "
                        f"two devices, {device_of(x)} and {device_of(y)}! Move them with "
                        f".to(device) first.")


def binary_operands(a, b, float_result=False):
    """Raw operands of an elementwise binary op, cast to the PyTorch result dtype."""
    x = a._data if isinstance(a, Tensor) else a
    y = b._data if isinstance(b, Tensor) else b
    xa, ya = hasattr(x, "dtype") and not np.isscalar(x), hasattr(y, "dtype") and not np.isscalar(y)
    if xa and ya:
        if type(x) is not type(y):
            raise devices_error(x, y)
        if x.dtype == y.dtype and (not float_result or x.dtype.kind == "f"):
            return x, y
    dt = result_type(a, b)
    if float_result and dt.kind != "f":
        dt = get_default_dtype().np
    if xa:
        if x.dtype != dt:
            x = x.astype(dt)
    else:
        x = _scalar(x, dt)
    if ya:
        if y.dtype != dt:
            y = y.astype(dt)
    else:
        y = _scalar(y, dt)
    return x, y


def _scalar(v, dt):
    # a NumPy scalar of the result dtype keeps NumPy from promoting
    return dt.type(v)


def shape_of(x):
    return x._data.shape if isinstance(x, Tensor) else ()


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing broadcasting (used by every broadcasting op)."""
    gshape = grad._data.shape
    if gshape == shape:
        return grad
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and gshape[i + lead] != 1)
    if axes:
        grad = grad.sum(dim=axes, keepdim=True)
    if lead:
        grad = grad.reshape(shape)
    elif grad._data.shape != shape:
        grad = grad.reshape(shape)
    return grad


def normalize_dim(dim, ndim, name="dim"):
    """A dim (or tuple of dims) in [0, ndim), with PyTorch's error for out-of-range values."""
    if dim is None:
        return None
    if isinstance(dim, (tuple, list)):
        return tuple(normalize_dim(d, ndim, name) for d in dim)
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return dim % n
