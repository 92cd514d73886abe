"""Pooling: max_pool1d/2d, avg_pool1d/2d, adaptive_avg_pool1d/2d.

A pooling window is a set of kernel taps; tap (i, j) of every output is one strided slice of the
padded input. Two linear Functions, each the other's derivative, carry all gradients:

    _TapGather(x)   y = sum over taps of  scale * select_tap * x[tap slice]
    _TapScatter(g)  the adjoint: add scale * select_tap * g back onto each tap slice

Average pooling selects every tap (scale = 1/divisor); max pooling selects, per output, the
tap that held the maximum. Adaptive average pooling is two averaging matrices (one linear
Function).
1-D pooling runs as 2-D pooling with a height of 1.
"""
from typing import NamedTuple

import numpy as np

from ...autograd import Function, dispatch
from ...tensor import Tensor
from ...tensor.backend import array_module, can_check, on_host
from ...tensor.ops._util import named
from .conv import ntuple, padded

make = Tensor._make


class PoolGeometry(NamedTuple):
    kernel: tuple       # (kh, kw)
    stride: tuple
    pad: tuple          # (top, bottom, left, right); bottom/right grow for ceil_mode
    dilation: tuple
    in_hw: tuple
    out_hw: tuple

    @property
    def taps(self):
        return [(i, j) for i in range(self.kernel[0]) for j in range(self.kernel[1])]

    @property
    def disjoint(self):
        """Whether no input element lies in two windows."""
        return all(s >= d * (k - 1) + 1 for s, d, k in zip(self.stride, self.dilation,
                                                             self.kernel))

    def window(self, i, j):
        (sh, sw), (dh, dw), (oh, ow) = self.stride, self.dilation, self.out_hw
        return (Ellipsis, slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
                slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))


def _pool_out(n, k, s, p, d, ceil_mode):
    span = n + 2 * p - d * (k - 1) - 1
    o = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (o - 1) * s >= n + p:  # the last window must start inside the input
        o -= 1
    return o


def pool_geometry(name, x, kernel_size, stride, padding, dilation, ceil_mode):
    kernel = ntuple(kernel_size, 2, "kernel_size")
    stride = kernel if stride is None or stride == () or stride == [] else \
        ntuple(stride, 2, "stride")
    pad, dil = ntuple(padding, 2, "padding"), ntuple(dilation, 2, "dilation")
    if min(kernel) < 1 or min(stride) < 1 or min(dil) < 1:
        raise ValueError(f"{name}: kernel_size {kernel}, stride {stride} and dilation {dil} "
                         f"must be positive")
    for p, k, d in zip(pad, kernel, dil):
        if p < 0 or p > (d * (k - 1) + 1) // 2:
            raise ValueError(f"{name}: padding {pad} should be at most half of the effective "
                             f"kernel size {kernel} (dilation {dil})")
    h, w = x.shape[-2:]
    oh = _pool_out(h, kernel[0], stride[0], pad[0], dil[0], ceil_mode)
    ow = _pool_out(w, kernel[1], stride[1], pad[1], dil[1], ceil_mode)
    if oh < 1 or ow < 1:
        raise RuntimeError(f"{name}: input spatial size ({h}, {w}) is too small for kernel "
                           f"{kernel} with padding {pad} and dilation {dil} (output would be "
                           f"({oh}, {ow}))")
    # windows of ceil_mode may reach past the padding: widen the bottom/right border
    bottom = max(pad[0], (oh - 1) * stride[0] + dil[0] * (kernel[0] - 1) + 1 - h - pad[0])
    right = max(pad[1], (ow - 1) * stride[1] + dil[1] * (kernel[1] - 1) + 1 - w - pad[1])
    return PoolGeometry(kernel, stride, (pad[0], bottom, pad[1], right), dil, (h, w), (oh, ow))


def _planes(d):
    """Any (..., H, W) array as (B, 1, H, W): pooling treats every plane alike."""
    return d.reshape(-1, 1, *d.shape[-2:])


def _selected(sel, t, v):
    if sel is None:
        return v
    return array_module(v).where(sel == t, v, 0)


class _TapGather(Function):
    """y = scale * sum_t [sel == t] x_padded[tap t]; `sel` None selects every tap.

    `sel` and `scale` broadcast against the (B, 1, OH, OW) planes of the output."""

    @staticmethod
    def forward(ctx, x, geo, sel, scale):
        d = x._data
        p = padded(_planes(d), geo.pad)
        out = None
        for t, (i, j) in enumerate(geo.taps):
            v = _selected(sel, t, p[geo.window(i, j)])
            out = v.copy() if out is None else out.__iadd__(v)
        if scale is not None:
            out *= scale
        ctx.geo, ctx.sel, ctx.scale = geo, sel, scale
        return make(out.reshape(*d.shape[:-2], *geo.out_hw))

    @staticmethod
    def backward(ctx, g):
        return _TapScatter.apply(g, ctx.geo, ctx.sel, ctx.scale), None, None, None


class _TapScatter(Function):
    """The adjoint of _TapGather: each output's gradient goes back to its selected taps."""

    @staticmethod
    def forward(ctx, g, geo, sel, scale):
        d = _planes(g._data)
        if scale is not None:
            d = d * scale
        xp = array_module(d)
        (h, w), (top, bottom, left, right) = geo.in_hw, geo.pad
        out = xp.zeros((d.shape[0], 1, h + top + bottom, w + left + right), d.dtype)
        for t, (i, j) in enumerate(geo.taps):
            view = out[geo.window(i, j)]
            if geo.disjoint:  # no two windows share an input: write instead of adding
                if sel is None:
                    view[...] = d
                else:
                    xp.multiply(d, sel == t, out=view)
            else:
                view += _selected(sel, t, d)
        out = xp.ascontiguousarray(out[:, :, top:top + h, left:left + w])
        ctx.geo, ctx.sel, ctx.scale = geo, sel, scale
        return make(out.reshape(*g.shape[:-2], h, w))

    @staticmethod
    def backward(ctx, gg):
        return _TapGather.apply(gg, ctx.geo, ctx.sel, ctx.scale), None, None, None


def _hits(v, best, nan):
    hit = v == best
    if nan:
        hit |= v != v
    return hit


class _MaxPool(Function):
    """The maximum of each window, and which tap held it (the first one wins ties)."""
    node_name = "MaxPool2DWithIndices"      # every max pool is a 2-D one here
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, geo):
        d = x._data
        xp = array_module(d)
        if d.dtype.kind != "f":
            raise RuntimeError(f"max_pool: expected a floating point input, got {x.dtype}")
        p = padded(_planes(d), geo.pad, value=-np.inf)
        taps = [p[geo.window(i, j)] for i, j in geo.taps]
        best = taps[0].copy()
        for v in taps[1:]:
            xp.maximum(best, v, out=best)  # NaN propagates, as in PyTorch
        # which tap held the maximum: the first one that equals it (a NaN equals nothing,
        # so NaNs are matched explicitly: on the host when there are any; on a GPU always,
        # since asking would wait for it, and matching NaNs where there are none is harmless)
        nan = not on_host(best) or bool(xp.isnan(best).any())
        found = _hits(taps[0], best, nan)
        sel = xp.zeros(best.shape, np.uint8 if len(taps) < 256 else np.int32)
        for t, v in enumerate(taps[1:], 1):
            hit = _hits(v, best, nan)
            xp.greater(hit, found, out=hit)  # hit and not found before
            found |= hit
            sel += hit * sel.dtype.type(t)
        ctx.geo, ctx.sel = geo, sel
        ctx.set_materialize_grads(False)
        out = make(best.reshape(*d.shape[:-2], *geo.out_hw))
        index = make(sel)
        ctx.mark_non_differentiable(index)
        return out, index

    @staticmethod
    def backward(ctx, g, _):
        if g is None:
            return None, None
        return _TapScatter.apply(g, ctx.geo, ctx.sel, None), None


def _flat_indices(sel, geo):
    """PyTorch's return_indices: the position h * W + w of each maximum in its input plane."""
    xp = array_module(sel)
    (kh, kw), (sh, sw), (dh, dw), (h, w) = geo.kernel, geo.stride, geo.dilation, geo.in_hw
    oh, ow = geo.out_hw
    sel = sel.astype(np.int64)[:, 0]
    rows = xp.arange(oh).reshape(-1, 1) * sh - geo.pad[0] + (sel // kw) * dh
    cols = xp.arange(ow) * sw - geo.pad[2] + (sel % kw) * dw
    return rows * w + cols


# ---- the functional API -------------------------------------------------------------------
def _check_input(name, x, dims):
    if x.ndim not in (dims + 1, dims + 2):
        want = "(N, C, L) or (C, L)" if dims == 1 else "(N, C, H, W) or (C, H, W)"
        raise RuntimeError(f"{name}: expected a {dims + 1}-D or {dims + 2}-D input {want}, "
                           f"got shape {list(x.shape)}")


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    _check_input("max_pool2d", input, 2)
    geo = pool_geometry("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)
    out, sel = _MaxPool.apply(input, geo)
    if return_indices:
        return out, make(_flat_indices(sel._data, geo).reshape(out.shape))
    return out


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    _check_input("avg_pool2d", input, 2)
    geo = pool_geometry("avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)
    xp = array_module(input._data)
    if divisor_override:
        scale = 1.0 / divisor_override
    else:
        counts = [_window_counts(n, k, s, p, o, count_include_pad) for n, k, s, p, o in
                  zip(geo.in_hw, geo.kernel, geo.stride, geo.pad[::2], geo.out_hw)]
        scale = xp.asarray(1.0 / np.outer(*counts), dtype=input._data.dtype)
    return named(_TapGather.apply(input, geo, None, scale), _TapGather, "AvgPool2D", (0,))


def _window_counts(n, k, s, p, o, count_include_pad):
    """How many elements each window divides by, along one axis (PyTorch's rule)."""
    start = np.arange(o) * s - p
    end = np.minimum(start + k, n + p)
    if count_include_pad:
        return end - start
    return np.minimum(end, n) - np.maximum(start, 0)


def _as_2d(input):
    return input.unsqueeze(-2)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    _check_input("max_pool1d", input, 1)
    one = lambda v, name: (1, ntuple(v, 1, name)[0])  # noqa: E731
    out = max_pool2d(_as_2d(input), one(kernel_size, "kernel_size"),
                     None if stride is None else one(stride, "stride"),
                     (0, ntuple(padding, 1, "padding")[0]), one(dilation, "dilation"),
                     ceil_mode, return_indices)
    if return_indices:
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    _check_input("avg_pool1d", input, 1)
    k = ntuple(kernel_size, 1, "kernel_size")[0]
    s = k if stride is None else ntuple(stride, 1, "stride")[0]
    return avg_pool2d(_as_2d(input), (1, k), (1, s), (0, ntuple(padding, 1, "padding")[0]),
                      ceil_mode, count_include_pad).squeeze(-2)


def _adaptive_windows(n, o):
    """The [start, end) of each of the o windows adaptive pooling takes over n positions:
    [floor(i * n / o), ceil((i + 1) * n / o)), PyTorch's bounds."""
    i = np.arange(o)
    return (i * n) // o, -((-(i + 1) * n) // o)


def adaptive_average_matrix(n, o):
    """(o, n) NumPy: row i averages window i (adaptive average pooling, interpolate's area
    mode)."""
    start, end = _adaptive_windows(n, o)
    cols = np.arange(n)
    inside = (cols >= start[:, None]) & (cols < end[:, None])
    return inside / (end - start)[:, None]


class _AdaptiveAvgPool(Function):
    """y = A x B^T over the last two dims, A (OH, H) and B (OW, W) averaging the adaptive
    windows of each axis: linear in x, so its gradient A^T g B is this Function again."""
    node_name = "AdaptiveAvgPool2D"
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, a, b):
        ctx.a, ctx.b = a, b
        return make(a @ x._data @ b.swapaxes(0, 1))

    @staticmethod
    def backward(ctx, g):
        return _AdaptiveAvgPool.apply(g, ctx.a.swapaxes(0, 1), ctx.b.swapaxes(0, 1)), None, None


def adaptive_avg_pool2d(input, output_size):
    _check_input("adaptive_avg_pool2d", input, 2)
    h, w = input.shape[-2:]
    oh, ow = ntuple(output_size, 2, "output_size") if not isinstance(output_size, (tuple, list)) \
        else tuple(output_size)
    oh, ow = h if oh is None else oh, w if ow is None else ow
    if oh < 1 or ow < 1:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be positive, got "
                         f"{output_size}")
    if (oh, ow) == (1, 1):
        return input.mean(dim=(-2, -1), keepdim=True)
    xp, dt = array_module(input._data), input._data.dtype
    a, b = (xp.asarray(adaptive_average_matrix(n, o), dtype=dt) for n, o in ((h, oh), (w, ow)))
    if dispatch.watching(_AdaptiveAvgPool):   # an observer (ONNX export) sees two matmuls
        return Tensor._make(a) @ input @ Tensor._make(b).mT
    return _AdaptiveAvgPool.apply(input, a, b)


def adaptive_avg_pool1d(input, output_size):
    _check_input("adaptive_avg_pool1d", input, 1)
    o = output_size[0] if isinstance(output_size, (tuple, list)) else output_size
    return adaptive_avg_pool2d(input.unsqueeze(-2), (1, o)).squeeze(-2)


def _window_taps(n, o):
    """(o, K): the positions window i reads, padded to the widest window K by repeating its
    last position (a repeat changes no maximum, nor which position holds it first)."""
    start, end = _adaptive_windows(n, o)
    taps = start[:, None] + np.arange(int((end - start).max()))
    return np.minimum(taps, (end - 1)[:, None])


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over adaptive windows (PyTorch's bounds), all windows gathered at once; with
    return_indices, the flat index of each maximum within its (H, W) plane, as max_pool2d
    gives."""
    _check_input("adaptive_max_pool2d", input, 2)
    h, w = input.shape[-2:]
    oh, ow = tuple(output_size) if isinstance(output_size, (tuple, list)) else \
        (output_size, output_size)
    oh, ow = h if oh is None else oh, w if ow is None else ow
    if oh < 1 or ow < 1:
        raise ValueError(f"adaptive_max_pool2d: output_size must be positive, got "
                         f"{output_size}")
    rows, cols = _window_taps(h, oh), _window_taps(w, ow)      # (oh, KH), (ow, KW)
    kh, kw = rows.shape[1], cols.shape[1]
    xp = array_module(input._data)
    r = Tensor._make(xp.asarray(rows[:, None, :, None]))
    c = Tensor._make(xp.asarray(cols[None, :, None, :]))
    windows = input[..., r, c]                                  # (..., oh, ow, KH, KW)
    best = windows.flatten(-2).max(-1)
    if not return_indices:
        return best.values
    taps = best.indices
    plane = Tensor._make(xp.asarray(rows[:, None, :, None] * w + cols[None, :, None, :])
                         .reshape(oh, ow, kh * kw))
    lead = tuple(input.shape[:-2])
    return best.values, plane.expand(*lead, oh, ow, kh * kw).gather(-1, taps.unsqueeze(-1)) \
        .squeeze(-1)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    _check_input("adaptive_max_pool1d", input, 1)
    o = output_size[0] if isinstance(output_size, (tuple, list)) else output_size
    result = adaptive_max_pool2d(input.unsqueeze(-2), (1, o), return_indices)
    if return_indices:
        return result[0].squeeze(-2), result[1].squeeze(-2)
    return result.squeeze(-2)


def adaptive_max_pool2d_with_indices(input, output_size, return_indices=False):
    return adaptive_max_pool2d(input, output_size, return_indices=True)


def adaptive_max_pool1d_with_indices(input, output_size, return_indices=False):
    return adaptive_max_pool1d(input, output_size, return_indices=True)


def max_pool1d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode=False, return_indices=False):
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool2d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode=False, return_indices=False):
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def _unpool(input, indices, spatial_out, name):
    """Scatter each value to its flat position in a zero plane of the given spatial size."""
    if tuple(indices.shape) != tuple(input.shape):
        raise RuntimeError(f"{name}: indices must have the input's shape "
                           f"{list(input.shape)}, got {list(indices.shape)}")
    k = len(spatial_out)
    lead = tuple(input.shape[:-k])
    plane = int(np.prod(spatial_out))
    if indices.numel() and can_check(indices._data) and (
            int(indices.max().item()) >= plane or int(indices.min().item()) < 0):
        raise RuntimeError(f"{name}: found an invalid max index {int(indices.max().item())} "
                           f"(output volumes are of size {'x'.join(map(str, spatial_out))})")
    out = input.new_zeros(*lead, plane).scatter(-1, indices.flatten(-k), input.flatten(-k))
    return out.reshape(*lead, *spatial_out)


def _unpool_size(input, kernel_size, stride, padding, output_size, k, name):
    kernel = ntuple(kernel_size, k, "kernel_size")
    stride = kernel if stride is None else ntuple(stride, k, "stride")
    padding = ntuple(padding, k, "padding")
    default = tuple((n - 1) * s - 2 * p + kk for n, s, p, kk in
                    zip(input.shape[-k:], stride, padding, kernel))
    if output_size is None:
        return default
    size = tuple(output_size)[-k:]
    for got, d, s in zip(size, default, stride):
        if not d - s < got < d + s:
            raise ValueError(f"{name}: invalid output_size {list(output_size)} (the sizes "
                             f"must lie between {[d - s for d in default]} and "
                             f"{[d + s for d in default]})")
    return size


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The partial inverse of max_pool2d: each value back at its max position, zeros
    elsewhere."""
    size = _unpool_size(input, kernel_size, stride, padding, output_size, 2, "max_unpool2d")
    return _unpool(input, indices, size, "max_unpool2d")


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    size = _unpool_size(input, kernel_size, stride, padding, output_size, 1, "max_unpool1d")
    return _unpool(input, indices, size, "max_unpool1d")


def _lp_finish(out, norm_type, window):
    # sign * relu(|out|): a window whose p-th powers sum to a negative number (odd p) gives 0
    return (out.sign() * out.abs().relu() * window) ** (1.0 / norm_type)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """(sum over each window of x^p)^(1/p); p = inf is max pooling of |x|."""
    kh, kw = ntuple(kernel_size, 2, "kernel_size")
    if norm_type == float("inf"):
        return max_pool2d(input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    if norm_type == -float("inf"):
        return -max_pool2d(-input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    out = avg_pool2d(input ** norm_type, kernel_size, stride, 0, ceil_mode)
    return _lp_finish(out, norm_type, kh * kw)


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    if norm_type == float("inf"):
        return max_pool1d(input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    if norm_type == -float("inf"):
        return -max_pool1d(-input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    out = avg_pool1d(input ** norm_type, kernel_size, stride, 0, ceil_mode)
    return _lp_finish(out, norm_type, ntuple(kernel_size, 1, "kernel_size")[0])


__all__ = ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
           "lp_pool1d", "lp_pool2d",
           "max_pool1d_with_indices", "max_pool2d_with_indices", "max_unpool1d",
           "max_unpool2d",
           "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
           "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices"]
