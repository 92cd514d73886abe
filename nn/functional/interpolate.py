"""interpolate / upsample: resizing of the spatial dims in every mode of PyTorch's.

Every mode is separable: one spatial axis at a time, the nearest modes pick source rows
(`index_select`), and the others multiply by an (out, in) matrix whose row o mixes the source
pixels output pixel o reads: two for (bi/tri)linear, four for bicubic (Keys' cubic with
a = -0.75, borders replicated, as PyTorch), the averaged window for area (adaptive average
pooling). The whole resize is one linear Function, `_Resample`, whose gradient is its adjoint:
the same steps in reverse order, each replaced by its adjoint (a matrix by its transpose, a
pick of rows by adding them back), so gradients of any order are this Function again.
"""
import math
import warnings

import numpy as np

from ...autograd import Function, dispatch
from ...tensor import Tensor
from ...tensor.backend import add_at, array_module
from ...tensor.ops._util import named
from .pooling import adaptive_average_matrix, adaptive_avg_pool1d, adaptive_avg_pool2d

# modes that need a given number of spatial dims; the others (nearest, nearest-exact, area)
# take any
_SPATIAL_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
_CUBIC_A = -0.75


def _scale(in_size, out_size, scale_factor):
    """Source step per output step, as PyTorch computes it (1/scale_factor when given)."""
    return 1.0 / scale_factor if scale_factor is not None else in_size / out_size


def _nearest_index(in_size, out_size, scale_factor, exact):
    # float32 arithmetic, like PyTorch's nearest kernels; nearest-exact reads pixel centres
    scale = np.float32(_scale(in_size, out_size, scale_factor))
    dst = np.arange(out_size, dtype=np.float32) + np.float32(0.5 if exact else 0.0)
    return np.minimum(np.floor(dst * scale).astype(np.int64), in_size - 1)


def _source(in_size, out_size, scale_factor, align_corners, cubic):
    """Each output pixel's source coordinate (PyTorch's area_pixel_compute_source_index)."""
    dst = np.arange(out_size, dtype=np.float64)
    if align_corners:
        return dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    src = (dst + 0.5) * _scale(in_size, out_size, scale_factor) - 0.5
    return src if cubic else np.maximum(src, 0.0)


def _taps_matrix(in_size, out_size, taps, weights):
    """(out, in) with weights[o, k] added at column taps[o, k] (clamped to the border)."""
    m = np.zeros((out_size, in_size))
    rows = np.broadcast_to(np.arange(out_size)[:, None], taps.shape)
    np.add.at(m, (rows, np.clip(taps, 0, in_size - 1)), weights)
    return m


def _linear_matrix(in_size, out_size, scale_factor, align_corners):
    """Row o mixes the two source pixels around o's source coordinate."""
    src = _source(in_size, out_size, scale_factor, align_corners, cubic=False)
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    frac = src - lo
    return _taps_matrix(in_size, out_size, np.stack([lo, lo + 1], 1),
                        np.stack([1.0 - frac, frac], 1))


def cubic_weights(t):
    """Keys' cubic (a = -0.75, PyTorch's) weights of the taps at -1, 0, 1, 2 around a point
    a fraction t past tap 0; plain arithmetic, so for arrays and tensors alike."""
    a = _CUBIC_A

    def near(x):            # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):             # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _cubic_matrix(in_size, out_size, scale_factor, align_corners):
    """Row o mixes the four source pixels around o's source coordinate by Keys' cubic."""
    src = _source(in_size, out_size, scale_factor, align_corners, cubic=True)
    lo = np.floor(src).astype(np.int64)
    weights = np.stack(cubic_weights(src - lo), 1)
    return _taps_matrix(in_size, out_size, lo[:, None] + np.arange(-1, 3), weights)


def _antialias_filter(x, cubic):
    """PIL's (and PyTorch's antialias) kernels: the triangle, or Keys' cubic with a = -0.5."""
    x = np.abs(x)
    if not cubic:
        return np.maximum(0.0, 1.0 - x)
    a = -0.5
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _antialias_matrix(in_size, out_size, scale_factor, align_corners, cubic):
    """antialias=True: the filter stretched over the whole source footprint of each output
    pixel when downsampling (so every source pixel counts), each row normalised; PyTorch's
    weights (its `_compute_indices_min_size_weights_aa`)."""
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    else:
        scale = _scale(in_size, out_size, scale_factor)
    taps = 4 if cubic else 2
    support = taps / 2 * scale if scale >= 1.0 else taps / 2
    stretch = 1.0 / scale if scale >= 1.0 else 1.0
    center = scale * (np.arange(out_size) + 0.5)
    first = np.maximum((center - support + 0.5).astype(np.int64), 0)
    last = np.minimum((center + support + 0.5).astype(np.int64), in_size)
    cols = first[:, None] + np.arange(max(int((last - first).max()), 1))
    inside = cols < last[:, None]
    weights = np.where(inside, _antialias_filter((cols - center[:, None] + 0.5) * stretch,
                                                 cubic), 0.0)
    totals = weights.sum(1, keepdims=True)
    weights = np.divide(weights, totals, out=np.zeros_like(weights), where=totals != 0)
    return _taps_matrix(in_size, out_size, np.where(inside, cols, 0), weights)


def _matrix(mode, in_size, out_size, scale_factor, align_corners, antialias=False):
    if antialias:
        return _antialias_matrix(in_size, out_size, scale_factor, align_corners,
                                 mode == "bicubic")
    if mode == "area":
        return adaptive_average_matrix(in_size, out_size)
    if mode == "bicubic":
        return _cubic_matrix(in_size, out_size, scale_factor, align_corners)
    return _linear_matrix(in_size, out_size, scale_factor, align_corners)


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
    if antialias and (mode not in ("bilinear", "bicubic") or input.ndim != 4):
        raise ValueError("Anti-alias option is restricted to bilinear and bicubic modes and "
                         "requires a 4-D tensor as input")
    if mode in ("nearest", "nearest-exact", "area"):
        if align_corners is not None:
            raise ValueError(f"interpolate: align_corners only applies to the linear and "
                             f"cubic modes, not to mode={mode!r}")
    elif mode in _SPATIAL_DIMS:
        if _SPATIAL_DIMS[mode] != spatial:
            raise ValueError(f"interpolate: mode={mode!r} expects a "
                             f"{_SPATIAL_DIMS[mode] + 2}-D input, got shape "
                             f"{list(input.shape)}")
    else:
        raise ValueError(f"interpolate: unknown mode {mode!r}; PyTorch's are 'nearest', "
                         f"'nearest-exact', 'linear', 'bilinear', 'bicubic', 'trilinear' "
                         f"and 'area'")
    sizes, factors = _output_sizes(input, size, scale_factor, spatial, recompute_scale_factor)
    if min(sizes) < 1:
        raise ValueError(f"interpolate: output size {sizes} must be positive")
    if mode == "area" and spatial < 3:     # PyTorch's area is its adaptive average pool
        return (adaptive_avg_pool1d if spatial == 1 else adaptive_avg_pool2d)(input, sizes)
    xp = array_module(input._data)
    steps = []
    for axis, (n, o, f) in enumerate(zip(input.shape[2:], sizes, factors)):
        if mode.startswith("nearest"):
            if n != o:
                steps.append(("take", 2 + axis, xp.asarray(_nearest_index(n, o, f,
                                                                          mode != "nearest"))))
        else:
            steps.append(("matrix", 2 + axis, xp.asarray(
                _matrix(mode, n, o, f, bool(align_corners), bool(antialias)),
                dtype=input._data.dtype)))
    if dispatch.watching(_Resample):    # an observer (ONNX export) sees the ops composed
        return _composed(input, steps)
    return named(_Resample.apply(input, tuple(steps)), _Resample,
                 _node_name(mode, spatial, antialias))


def _composed(input, steps):
    """`_Resample`'s forward in differentiable ops (picks of rows and matrix products)."""
    out = input
    for kind, dim, a in steps:
        if kind == "take":
            out = out.index_select(dim, Tensor._make(a))
        else:
            out = (out.movedim(dim, -1) @ Tensor._make(a).mT).movedim(-1, dim)
    return out


def _node_name(mode, spatial, antialias):
    """PyTorch's node of the resize: Upsample<Mode><N>D (Aa with antialias); 3-D area's is
    the adaptive average pool's."""
    if mode == "area":
        return f"AdaptiveAvgPool{spatial}D"
    name = {"nearest": "Nearest", "nearest-exact": "NearestExact", "linear": "Linear",
            "bilinear": "Bilinear", "bicubic": "Bicubic", "trilinear": "Trilinear"}[mode]
    return f"Upsample{name}{spatial}D" + ("Aa" if antialias else "")


class _Resample(Function):
    """x resized one axis at a time by `steps`: ("take", dim, rows) picks rows of `dim`,
    ("put", dim, rows, n) adds rows back into n zero rows (take's adjoint), ("matrix", dim,
    m) mixes rows by the (out, in) matrix m. Linear in x; the gradient is the adjoint."""
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, steps):
        d = x._data
        xp = array_module(d)
        for step in steps:
            kind, dim = step[:2]
            if kind == "take":
                d = xp.take(d, step[2], axis=dim)
            elif kind == "put":
                shape = list(d.shape)
                shape[dim] = step[3]
                out = xp.zeros(shape, d.dtype)
                add_at(xp, out, (slice(None),) * dim + (step[2],), d)
                d = out
            else:
                d = xp.moveaxis(xp.moveaxis(d, dim, -1) @ step[2].T, -1, dim)
        ctx.steps, ctx.in_shape = steps, tuple(x.shape)
        return Tensor._make(xp.ascontiguousarray(d))

    @staticmethod
    def backward(ctx, g):
        adjoint = []
        for step in reversed(ctx.steps):
            kind, dim = step[:2]
            if kind == "take":
                adjoint.append(("put", dim, step[2], ctx.in_shape[dim]))
            elif kind == "put":
                adjoint.append(("take", dim, step[2]))
            else:
                adjoint.append(("matrix", dim, step[2].T))
        return _Resample.apply(g, tuple(adjoint)), None


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
