"""Helpers shared by the op families: operand preparation and undoing broadcasting."""
import numpy as np

from ...autograd import saved_hooks
from ..backend import device_of
from ..dtypes import get_default_dtype, result_type
from ..tensor import Tensor

make = Tensor._make
saved_hooks.wrap_array = make      # saved-tensor hooks get the arrays ops keep as tensors


def arr(x):
    return x._data if isinstance(x, Tensor) else x


def named(out, fn, name, inputs=None):
    """`out`, just made by the Function `fn`, with its graph node named `name` and, given
    `inputs`, its `graph_inputs` set: PyTorch's node for the op that was called, where one
    Function serves several (Permute for t and transpose, Clamp for hardtanh)."""
    node = out.grad_fn
    if node is not None and node.fn is fn:    # not a node that wraps it (a DTensor's)
        node.node_name = name
        if inputs is not None:
            node.graph_inputs = inputs
    return out


def devices_error(x, y):
    return RuntimeError(f"Expected all tensors to be on the same device, but found at least "
                        f"two devices, {device_of(x)} and {device_of(y)}! Move them with "
                        f".to(device) first.")


def binary_operands(a, b, float_result=False):
    """Raw operands of an elementwise binary op, cast to the PyTorch result dtype.

    `a`, `b`: tensors or numbers (NumPy/CuPy arrays are taken as tensors); `float_result`
    makes integer results floating (true division)."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        x, y = a._data, b._data
        # NumPy with NumPy passes at once; CuPy arrays may sit on different GPUs, and an
        # ndarray subclass (np.memmap) is still on the CPU
        if (type(x) is not type(y) or type(x) is not np.ndarray) and \
                device_of(x) != device_of(y):
            raise devices_error(x, y)
        if x.dtype == y.dtype and (not float_result or x.dtype.kind in "fc"):
            return x, y  # the common case: nothing to convert
    elif type(b) in _REAL_NUMBERS and isinstance(a, Tensor) and a._data.dtype.kind == "f":
        return a._data, _scalar(b, a._data.dtype)  # x * 0.5: a real number takes x's dtype
    elif type(a) in _REAL_NUMBERS and isinstance(b, Tensor) and b._data.dtype.kind == "f":
        return _scalar(a, b._data.dtype), b._data
    a, b = _operand(a), _operand(b)
    dt = result_type(a, b)
    if float_result and dt.kind not in "fc":
        dt = get_default_dtype().np
    return _cast(a, dt), _cast(b, dt)


_OPERAND_TYPES = (Tensor, int, float, complex, np.generic)  # bool is an int
_REAL_NUMBERS = frozenset({int, float, bool})


def _operand(v):
    if isinstance(v, _OPERAND_TYPES):
        return v
    if hasattr(v, "__array_interface__") or hasattr(v, "__cuda_array_interface__"):
        return make(v)  # an array operand counts as a tensor (NumPy's __radd__ etc.)
    raise TypeError(f"unsupported operand type {type(v).__name__} for a tensor op; expected "
                    f"a Tensor or a number (wrap data with phalanx.tensor(...))")


def _cast(v, dt):
    if isinstance(v, Tensor):
        d = v._data
        return d if d.dtype == dt else d.astype(dt)
    return _scalar(v, dt)


def _scalar(v, dt):
    # a NumPy scalar of the result dtype keeps NumPy from promoting
    try:
        return dt.type(v)
    except OverflowError:  # e.g. uint8 tensor + (-2): wraps around, as in PyTorch
        return np.array(v).astype(dt)[()]


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
    if lead and len(axes) == lead:  # only leading dims were added: one sum, no reshape
        return grad.sum(dim=axes)
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
    if type(dim) is int and 0 <= dim < ndim:
        return dim  # the common case
    if isinstance(dim, (tuple, list)):
        return tuple(normalize_dim(d, ndim, name) for d in dim)
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return dim % n
