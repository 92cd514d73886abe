"""Creation functions: tensor, as_tensor, from_numpy, from_dlpack, zeros, ones, full, empty,
arange, linspace, eye (and *_like)."""
import numpy as np

from . import backend, dtypes
from .memory_formats import check_memory_format
from .tensor import Tensor, _size, as_device


def _infer_np_dtype(data, arr):
    """Python data follows PyTorch: floats -> default dtype, ints -> int64, bools -> bool;
    NumPy scalars, arrays and tensors inside lists keep their dtypes (torch.tensor([np.float64
    (.5)]) is float64), promoted with the rest by PyTorch's rule."""
    if isinstance(data, (np.ndarray, np.generic)) or backend.is_cupy_array(data):
        if arr.dtype == dtypes.BF16_NP:
            dtypes.from_numpy_dtype(arr.dtype)   # the first bfloat16 turns on its compute
        return arr.dtype
    if isinstance(data, (list, tuple)):
        typed = _leaf_dtypes(data)
        if typed:
            found = None
            for d in typed:
                found = d if found is None else dtypes._promote(found, d)
            return found
    k = arr.dtype.kind
    if k == "f":
        return dtypes.get_default_dtype().np
    if k in "iu":
        return np.dtype(np.int64)
    if k == "b":
        return np.dtype(np.bool_)
    if k == "c":
        return dtypes.get_default_complex_np()
    raise TypeError(f"can't build a tensor from data of type {type(data).__name__} "
                    f"(array dtype {arr.dtype}); pass numbers, nested lists or arrays")


_PYTHON_SCALARS = {bool: "bool", int: "int", float: "float", complex: "complex"}


def _leaf_dtypes(data):
    """The NumPy dtypes the leaves of nested lists stand for, or () when every leaf is a
    Python number (then NumPy's own inference of the array is PyTorch's too)."""
    found = set()
    has_typed = False
    stack = [data]
    while stack:
        seq = stack.pop()
        for leaf_type in set(map(type, seq)):
            if leaf_type in _PYTHON_SCALARS:
                found.add(leaf_type)
            elif leaf_type in (list, tuple):
                stack.extend(x for x in seq if type(x) is leaf_type)
            else:
                has_typed = True
                for x in seq:
                    if type(x) is leaf_type:
                        found.add(_dtype_of_leaf(x))
    if not has_typed:
        return ()
    return [np.dtype(np.bool_) if d is bool else np.dtype(np.int64) if d is int else
            dtypes.get_default_dtype().np if d is float else
            dtypes.get_default_complex_np() if d is complex else d for d in found]


def _dtype_of_leaf(x):
    if isinstance(x, Tensor):
        return x._data.dtype
    if isinstance(x, (np.ndarray, np.generic)) or backend.is_cupy_array(x):
        return x.dtype
    if isinstance(x, bool):  # subclasses of Python numbers count as those numbers
        return bool
    if isinstance(x, int):
        return int
    if isinstance(x, float):
        return float
    if isinstance(x, complex):
        return complex
    raise TypeError(f"can't build a tensor from an element of type {type(x).__name__}; pass "
                    f"numbers, nested lists, arrays or tensors")


def _unwrap_nested(data):
    if isinstance(data, Tensor):
        return backend.to_device(data._data, "cpu")
    if isinstance(data, (list, tuple)):
        return [_unwrap_nested(d) for d in data]
    return data


def _to_array(data, dtype=None, device=None, copy=True):
    device = as_device(device)
    if isinstance(data, Tensor):
        arr = data._data
        if dtype is not None:
            arr = arr.astype(dtypes.to_numpy_dtype(dtype), copy=False)
        if device is not None:
            arr = backend.to_device(arr, device)
        return arr.copy() if copy and arr is data._data else arr
    if backend.is_cupy_array(data):
        arr = data
    else:
        src = _unwrap_nested(data) if isinstance(data, (list, tuple)) else data
        arr = np.array(src, copy=copy) if isinstance(src, np.ndarray) else np.asarray(src)
        if arr.dtype == object:
            raise TypeError("can't build a tensor from ragged or non-numeric data; every row "
                            "must have the same length")
    np_dtype = dtypes.to_numpy_dtype(dtype) if dtype is not None else _infer_np_dtype(data, arr)
    if arr.dtype != np_dtype:
        arr = arr.astype(np_dtype)
    if device is not None:
        arr = backend.to_device(arr, device)
    return arr


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor that copies `data` (numbers, nested lists, arrays or tensors)."""
    return Tensor._make(_to_array(data, dtype, device), requires_grad)


def as_tensor(data, dtype=None, device=None):
    """Like `tensor`, but shares memory with `data` when no conversion is needed."""
    if isinstance(data, Tensor) and dtype is None and device is None:
        return data
    return Tensor._make(_to_array(data, dtype, device, copy=False))


def from_numpy(arr):
    """A tensor that shares memory with the NumPy array `arr`."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(arr).__name__})")
    dtypes.from_numpy_dtype(arr.dtype)  # raises for unsupported dtypes
    return Tensor._make(arr)


def from_dlpack(ext):
    """A tensor sharing memory with any object implementing `__dlpack__` (NumPy, CuPy, torch)."""
    dev_type, _ = ext.__dlpack_device__()
    if dev_type == 1:  # kDLCPU
        return Tensor._make(np.from_dlpack(ext))
    return Tensor._make(backend.cupy().from_dlpack(ext))


def _factory(name):
    def make(*shape, size=None, dtype=None, device=None, requires_grad=False):
        xp, place = backend.placed_on(as_device(device))
        np_dtype = dtypes.to_numpy_dtype(dtype) if dtype is not None \
            else dtypes.get_default_dtype().np
        with place:
            arr = getattr(xp, name)(_size(shape, size), np_dtype)
        return Tensor._make(arr, requires_grad)
    make.__name__ = name
    make.__doc__ = f"A tensor of the given size filled by numpy/cupy `{name}`."
    return make


zeros = _factory("zeros")
ones = _factory("ones")
empty = _factory("empty")


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    device = as_device(device)
    if dtype is None:
        dtype = (dtypes.bool_ if isinstance(fill_value, bool) else
                 dtypes.int64 if isinstance(fill_value, int) else dtypes.get_default_dtype())
    xp, place = backend.placed_on(device)
    with place:
        arr = xp.full(_size((size,)), fill_value, dtypes.to_numpy_dtype(dtype))
    return Tensor._make(arr, requires_grad)


def _like(fn):
    def make(input, dtype=None, device=None, requires_grad=False, memory_format=None, **kw):
        check_memory_format(memory_format, make.__name__)
        return fn(*input.shape, **kw, dtype=dtype or input.dtype,
                  device=input.device if device is None else device, requires_grad=requires_grad)
    make.__name__ = fn.__name__ + "_like"
    return make


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False,
              memory_format=None):
    check_memory_format(memory_format, "full_like")
    return full(input.shape, fill_value, dtype=dtype or input.dtype,
                device=input.device if device is None else device, requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    device = as_device(device)
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end, step))
        dtype = dtypes.int64 if is_int else dtypes.get_default_dtype()
    xp, place = backend.placed_on(device)
    with place:
        arr = xp.arange(start, end, step).astype(dtypes.to_numpy_dtype(dtype))
    return Tensor._make(arr, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    device = as_device(device)
    xp, place = backend.placed_on(device)
    np_dtype = dtypes.to_numpy_dtype(dtype or dtypes.get_default_dtype())
    with place:
        arr = xp.linspace(start, end, steps).astype(np_dtype)
    return Tensor._make(arr, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    device = as_device(device)
    xp, place = backend.placed_on(device)
    np_dtype = dtypes.to_numpy_dtype(dtype or dtypes.get_default_dtype())
    with place:
        arr = xp.eye(n, m, dtype=np_dtype)
    return Tensor._make(arr, requires_grad)
