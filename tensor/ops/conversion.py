"""dtype/device conversion, clone and contiguous (differentiable)."""
from ...autograd import Function
from .. import backend, dtypes
from ..backend import array_module
from ..memory_formats import check_memory_format
from ._util import make
from .complex import real


class ToCopy(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, np_dtype, device, non_blocking=False):
        d = x._data
        ctx.src_dtype, ctx.src_device = d.dtype, backend.device_of(d)
        out = d
        if device is not None:
            out = backend.to_device(out, device, non_blocking)
        if np_dtype is not None and out.dtype != np_dtype:
            out = out.astype(np_dtype)
        if out is d:
            out = d.copy()
        return make(out)

    @staticmethod
    def backward(ctx, g):
        if g._data.dtype.kind == "c" and ctx.src_dtype.kind != "c":
            g = real(g)  # real -> complex cast: the source gets the real part (as PyTorch)
        return to_copy(g, dtype=ctx.src_dtype, device=ctx.src_device), None, None, None


def to_copy(x, dtype=None, device=None, copy=False, non_blocking=False):
    np_dtype = dtypes.to_numpy_dtype(dtype) if dtype is not None else None
    if device is not None:
        device = backend.Device(device)
    same_dtype = np_dtype is None or np_dtype == x._data.dtype
    same_device = device is None or device == backend.device_of(x._data)
    if same_dtype and same_device and not copy:
        return x
    return ToCopy.apply(x, np_dtype, device, non_blocking)


class Clone(Function):
    @staticmethod
    def forward(ctx, x):
        d = x._data
        return make(array_module(d).array(d, copy=True, order="C"))

    @staticmethod
    def backward(ctx, g):
        return g


def clone(input, *, memory_format=None):
    check_memory_format(memory_format, "clone")
    return Clone.apply(input)


def contiguous(input, memory_format=None):
    check_memory_format(memory_format, "contiguous", allow_preserve=False)
    return input if input._data.flags.c_contiguous else Clone.apply(input)
