"""bfloat16 ops compute in float32 and round back, as PyTorch's CPU kernels do.

NumPy's ufuncs run on `ml_dtypes.bfloat16` arrays, but much of the op library cannot use them:
`np.einsum` refuses them, sums and matmuls would accumulate in bfloat16, and the ops' "is it
floating?" tests read NumPy's kind 'f' (bfloat16's kind is 'V'). So every op that gets a
bfloat16 tensor computes on float32 copies of its bfloat16 inputs, and each float32 output is
rounded back to bfloat16 when all its floating inputs were bfloat16 (an op of bfloat16 and
float32 returns float32 by promotion anyway). Results are those of PyTorch's CPU kernels, which
also compute in float32 and round each op's result. The casts are ordinary `ToCopy` nodes, so
gradients flow through them.

Exempt, because they move no values or must keep sharing memory: the views (reshape, permute,
expand, basic indexing, unbind), clone and dtype/device conversion itself. A conversion that
would put bfloat16 on a GPU is refused with the reason (CuPy has no bfloat16 arrays).

This is one interceptor at the dispatch point (autograd/dispatch.py), placed innermost, so
autocast's casts happen before it. It is installed when the first bfloat16 tensor is made
(`dtypes._bfloat16_in_use`); a program that never uses bfloat16 never pays for it.
"""
import numpy as np

from ..autograd import dispatch
from . import backend, dtypes
from .ops.conversion import Clone, ToCopy, to_copy
from .ops.indexing import GetItem
from .ops.shape import Expand, Permute, Reshape, Unbind
from .tensor import Tensor

BF16 = dtypes.BF16_NP
F32 = np.dtype(np.float32)
EXEMPT = frozenset({ToCopy, Clone, Reshape, Permute, Expand, GetItem, Unbind})


def compute_in_float32(cls, args, kwargs, proceed):
    """Interceptor: run `cls` on float32 copies of its bfloat16 inputs (see module doc)."""
    if cls in EXEMPT:
        if cls is ToCopy:
            _refuse_bfloat16_on_gpu(*args[:3])   # ToCopy.apply(x, np_dtype, device, ...)
        return proceed(args, kwargs)
    has_bf16 = other_float = False
    for a in args:
        if isinstance(a, Tensor):
            dt = a._data.dtype
            if dt == BF16:
                has_bf16 = True
            elif dt.kind in "fc":
                other_float = True
        elif isinstance(a, (np.dtype, dtypes.dtype)):
            other_float = True  # an explicit result dtype (sum(dtype=...)) decides
    if not has_bf16:
        return proceed(args, kwargs)
    args = tuple(to_copy(a, F32) if isinstance(a, Tensor) and a._data.dtype == BF16 else a
                 for a in args)
    out = proceed(args, kwargs)
    if other_float:
        return out
    if isinstance(out, tuple):
        return tuple(_round_back(o) for o in out)
    return _round_back(out)


def _refuse_bfloat16_on_gpu(x, np_dtype, device):
    on_gpu = device.type == "cuda" if device is not None else backend.is_cupy_array(x._data)
    if on_gpu and (np_dtype == BF16 or (np_dtype is None and x._data.dtype == BF16)):
        raise NotImplementedError(
            f"a bfloat16 tensor on {device or backend.device_of(x._data)}: CuPy has no "
            f"bfloat16 arrays, so Phalanx keeps bfloat16 on the CPU. Convert first "
            f"(x.float() or x.half()) and move that to the GPU; on CUDA use float16 for mixed "
            f"precision (px.autocast('cuda', dtype=px.float16) with px.amp.GradScaler)")


def _round_back(t):
    if isinstance(t, Tensor) and t._data.dtype == F32:
        return to_copy(t, BF16)
    return t


compute_in_float32.transparent = True    # fused Functions need not fall back for it


def install():
    """Make `compute_in_float32` the innermost interceptor, for the rest of the process."""
    if compute_in_float32 not in dispatch.interceptors:
        dispatch.interceptors.insert(0, compute_in_float32)


def uninstall():
    """Take the interceptor out again (tests use this to leave the dispatch list as found);
    the next bfloat16 tensor installs it anew."""
    if compute_in_float32 in dispatch.interceptors:
        dispatch.interceptors.remove(compute_in_float32)
    dtypes._bf16_compute_on.clear()
