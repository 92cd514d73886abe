"""PyTorch's legacy constructors: `Tensor(2, 3)`, `Tensor([1, 2])`, `FloatTensor(...)`,
`LongTensor(...)`, ... and `t.new(...)`.

All follow one rule (PyTorch's `legacy_new`): integer sizes (or one `Size`) give an
uninitialised tensor of that shape; one sequence or array gives a copy of the data cast to the
type's dtype; one tensor of the same dtype gives a tensor sharing its memory; no argument gives
an empty 1-D tensor. `Tensor(...)` uses the default dtype; `FloatTensor` and its siblings are
not classes of their own (their tensors are plain `Tensor`s, as in PyTorch) but
`isinstance(t, FloatTensor)` checks the dtype, and `t.type(LongTensor)` casts.
"""
import numbers

import numpy as np

from . import backend, dtypes
from .creation import _to_array
from .tensor import Size, Tensor, as_device


def legacy_tensor(args, dtype, device, who):
    """The tensor a legacy constructor of `dtype` builds from its positional `args`."""
    return Tensor._make(legacy_array(args, dtype, device, who)) if not (
        len(args) == 1 and isinstance(args[0], Tensor)) else _alias(args[0], dtype, device, who)


def _alias(data, dtype, device, who):
    """A view of the whole of `data` (memory and autograd shared, as PyTorch's alias)."""
    if data.dtype is not dtype:
        raise TypeError(f"{who}(): expected a {dtype} tensor to share memory with, got "
                        f"{data.dtype}; convert it with .to({dtype}) first")
    device = as_device(device)
    if device is not None and data.device != device:
        raise RuntimeError(f"{who}(): the tensor is on {data.device}, not on {device}")
    return data.view(tuple(data.shape))


def legacy_array(args, dtype, device, who):
    """The new array a legacy constructor of `dtype` builds from sizes or data."""
    np_dtype = dtype.np
    device = as_device(device)
    if len(args) == 0:
        return backend.to_device(np.empty((0,), np_dtype), device or "cpu")
    if all(isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in args) or \
            (len(args) == 1 and isinstance(args[0], Size)):
        shape = tuple(int(s) for s in (args[0] if isinstance(args[0], Size) else args))
        if any(s < 0 for s in shape):
            raise RuntimeError(f"{who}: negative dimension in size {list(shape)}")
        return backend.to_device(np.empty(shape, np_dtype), device or "cpu")
    if len(args) != 1:
        raise TypeError(f"{who}() takes integer sizes or one sequence of data, got "
                        f"{', '.join(type(a).__name__ for a in args)}")
    data = args[0]
    if isinstance(data, (numbers.Number, str)):
        raise TypeError(f"{who}(): a single {type(data).__name__} is neither a size nor data; "
                        f"pass integer sizes or a sequence, e.g. {who}([{data!r}])")
    return _to_array(data, dtype, device)


class _LegacyTensorType(type):
    """The metaclass of FloatTensor & co.: calling one builds a Tensor of its dtype (on a GPU
    for the `phalanx.cuda.` ones); `t.type(FloatTensor)` casts through `_legacy_type_name`."""

    def __call__(cls, *args, device=None):
        if cls.is_cuda:
            if device is not None and as_device(device).type != "cuda":
                raise RuntimeError(f"{cls._legacy_type_name}: device must be a CUDA device, "
                                   f"got {device!r}")
            device = device if device is not None else "cuda"
        return legacy_tensor(args, cls.dtype, device, cls.__name__)

    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and obj.dtype is cls.dtype and \
            obj.device.type == ("cuda" if cls.is_cuda else "cpu")

    def __repr__(cls):
        return f"<class '{cls._legacy_type_name}'>"


def _legacy_type(name, dtype, cuda=False):
    prefix = "phalanx.cuda." if cuda else "phalanx."
    return _LegacyTensorType(name, (), {
        "dtype": dtype, "is_cuda": cuda, "_legacy_type_name": prefix + name,
        "__doc__": f"Legacy constructor of {dtype} tensors{' on a GPU' if cuda else ''}."})


FloatTensor = _legacy_type("FloatTensor", dtypes.float32)
DoubleTensor = _legacy_type("DoubleTensor", dtypes.float64)
HalfTensor = _legacy_type("HalfTensor", dtypes.float16)
BFloat16Tensor = _legacy_type("BFloat16Tensor", dtypes.bfloat16)
ByteTensor = _legacy_type("ByteTensor", dtypes.uint8)
CharTensor = _legacy_type("CharTensor", dtypes.int8)
ShortTensor = _legacy_type("ShortTensor", dtypes.int16)
IntTensor = _legacy_type("IntTensor", dtypes.int32)
LongTensor = _legacy_type("LongTensor", dtypes.int64)
BoolTensor = _legacy_type("BoolTensor", dtypes.bool_)


class cuda:
    """The `phalanx.cuda.` legacy types (phalanx.cuda exports them): cuda.FloatTensor, ..."""
    FloatTensor = _legacy_type("FloatTensor", dtypes.float32, cuda=True)
    DoubleTensor = _legacy_type("DoubleTensor", dtypes.float64, cuda=True)
    HalfTensor = _legacy_type("HalfTensor", dtypes.float16, cuda=True)
    BFloat16Tensor = _legacy_type("BFloat16Tensor", dtypes.bfloat16, cuda=True)
    ByteTensor = _legacy_type("ByteTensor", dtypes.uint8, cuda=True)
    CharTensor = _legacy_type("CharTensor", dtypes.int8, cuda=True)
    ShortTensor = _legacy_type("ShortTensor", dtypes.int16, cuda=True)
    IntTensor = _legacy_type("IntTensor", dtypes.int32, cuda=True)
    LongTensor = _legacy_type("LongTensor", dtypes.int64, cuda=True)
    BoolTensor = _legacy_type("BoolTensor", dtypes.bool_, cuda=True)


def tensor_init(self, args, device):
    """`Tensor(*args, device=None)`: the legacy constructor in the default dtype."""
    t = legacy_tensor(args, dtypes.get_default_dtype(), device, "Tensor")
    self._init(t._data)
    self._view, self._version = t._view, t._version
    self.requires_grad, self.grad_fn, self._output_nr = t.requires_grad, t.grad_fn, t._output_nr


def new(self, *args, device=None):
    """`t.new(...)`: the legacy constructor in t's dtype, on t's device unless given."""
    return legacy_tensor(args, self.dtype, device or self.device, "new")


__all__ = ["BFloat16Tensor", "BoolTensor", "ByteTensor", "CharTensor", "DoubleTensor",
           "FloatTensor", "HalfTensor", "IntTensor", "LongTensor", "ShortTensor"]
