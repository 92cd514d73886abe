"""interpolate / upsample: nearest and (bi)linear resizing of the spatial dims.

Both modes are separable: one spatial axis at a time, nearest picks source rows
(`index_select`) and linear multiplies by a (out, in) interpolation matrix. Both are composites
of differentiable ops, so they need no backward of their own.
"""
import math
import warnings

import numpy as np

from ...tensor import Tensor
from ...tensor.backend import array_module

_LINEAR_MODES = {"linear": 1, "bilinear": 2}


def _scale(in_size, out_size, scale_factor):
    """Source step per output step, as PyTorch computes it (1/scale_factor when given)."""
    return 1.0 / scale_factor if scale_factor is not None else in_size / out_size


def _nearest_index(in_size, out_size, scale_factor):
    # float32 arithmetic, like PyTorch's nearest kernel
    scale = np.float32(_scale(in_size, out_size, scale_factor))
    src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)


def _linear_matrix(in_size, out_size, scale_factor, align_corners):
    """(out, in): row o mixes the two source pixels around o's source coordinate."""
    dst = np.arange(out_size, dtype=np.float64)
    if align_corners:
        src = dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        src = np.maximum((dst + 0.5) * _scale(in_size, out_size, scale_factor) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    m = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def _output_sizes(x, size, scale_factor, spatial, recompute_scale_factor):
    in_sizes = tuple(x.shape[2:])
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    if size is not None:
        sizes = (size,) * spatial if isinstance(size, int) else tuple(size)
        if len(sizes) != spatial:
            raise ValueError(f"interpolate: size {size} must have {spatial} entries for an "
                             f"input of shape {list(x.shape)} ({spatial} spatial dims)")
        return sizes, (None,) * spatial
    factors = (scale_factor,) * spatial if not isinstance(scale_factor, (tuple, list)) \
        else tuple(scale_factor)
    if len(factors) != spatial:
        raise ValueError(f"interpolate: scale_factor {scale_factor} must have {spatial} entries "
                         f"for an input of shape {list(x.shape)}")
    sizes = tuple(int(math.floor(n * f)) for n, f in zip(in_sizes, factors))
    return sizes, ((None,) * spatial if recompute_scale_factor else factors)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    spatial = input.ndim - 2
    if spatial < 1:
        raise ValueError(f"interpolate: expected an input (N, C, spatial...) of 3 to 5 dims, "
                         f"got shape {list(input.shape)}")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    if mode == "nearest":
        if align_corners is not None:
            raise ValueError("interpolate: align_corners only applies to the linear modes, "
                             "not to mode='nearest'")
    elif mode in _LINEAR_MODES:
        if _LINEAR_MODES[mode] != spatial:
            raise ValueError(f"interpolate: mode={mode!r} expects a "
                             f"{_LINEAR_MODES[mode] + 2}-D input, got shape "
                             f"{list(input.shape)}")
    else:
        raise NotImplementedError(f"interpolate: mode {mode!r} is not supported; use "
                                  f"'nearest', 'linear' or 'bilinear'")
    sizes, factors = _output_sizes(input, size, scale_factor, spatial, recompute_scale_factor)
    if min(sizes) < 1:
        raise ValueError(f"interpolate: output size {sizes} must be positive")
    xp = array_module(input._data)
    out = input
    for axis, (n, o, f) in enumerate(zip(input.shape[2:], sizes, factors)):
        dim = 2 + axis
        if mode == "nearest":
            if n != o:
                index = Tensor._make(xp.asarray(_nearest_index(n, o, f)))
                out = out.index_select(dim, index)
        else:
            m = Tensor._make(xp.asarray(_linear_matrix(n, o, f, bool(align_corners)),
                                        dtype=input._data.dtype))
            # contract the matrix with axis `dim`: move it last, multiply, move it back
            out = (out.movedim(dim, -1) @ m.mT).movedim(-1, dim)
    return out


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    warnings.warn("`nn.functional.upsample_nearest` is deprecated. Use "
                  "`nn.functional.interpolate` instead.", stacklevel=2)
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    """Bilinear upsampling with align_corners=True (what this deprecated name always did)."""
    warnings.warn("`nn.functional.upsample_bilinear` is deprecated. Use "
                  "`nn.functional.interpolate` instead.", stacklevel=2)
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


__all__ = ["interpolate", "upsample", "upsample_nearest", "upsample_bilinear"]
