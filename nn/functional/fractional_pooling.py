"""Fractional max pooling (Graham, 2014): max over windows whose start positions follow a
pseudo-random sequence, so the output may shrink the input by a non-integer ratio.

Per batch element and channel, one uniform sample u per spatial axis (`_random_samples`,
drawn when not given) fixes the window starts along that axis, by PyTorch's rule:
start[i] = int((i + u) * alpha) - int(u * alpha) with alpha = (in - k) / (out - 1), and the
last window ends at the border. The windows are picked with integer arrays; the maxima are
then gathered from the input, so the gradient is that of the gather (to each window's max).
"""
import math

import numpy as np

from ...tensor import Tensor
from ...tensor.backend import array_module, to_host
from ...tensor.random import _gen
from .conv import ntuple

__all__ = ["fractional_max_pool2d", "fractional_max_pool2d_with_indices",
           "fractional_max_pool3d", "fractional_max_pool3d_with_indices"]


def _starts(samples, in_size, out_size, k):
    """(N, C) samples in the input's float dtype -> (N, C, out) window starts."""
    dtype = samples.dtype.type
    starts = np.empty(samples.shape + (out_size,), np.int64)
    if out_size > 1:
        alpha = dtype(in_size - k) / dtype(out_size - 1)
        i = np.arange(out_size - 1, dtype=samples.dtype)
        # computed in the input's precision, as PyTorch does, so the truncations agree
        starts[..., :-1] = (np.trunc((i + samples[..., None]) * alpha).astype(np.int64)
                            - np.trunc(samples[..., None] * alpha).astype(np.int64))
    starts[..., -1] = in_size - k
    return starts


def _fractional_max_pool(name, input, kernel_size, output_size, output_ratio, return_indices,
                         random_samples, dims):
    batched = input.ndim == dims + 2
    if input.ndim not in (dims + 1, dims + 2):
        raise RuntimeError(f"{name}: expected a {dims + 1}-D or {dims + 2}-D input, got shape "
                           f"{list(input.shape)}")
    x = input if batched else input.unsqueeze(0)
    n, c = x.shape[:2]
    spatial = tuple(x.shape[2:])
    kernel = ntuple(kernel_size, dims, "kernel_size")
    if output_size is None:
        if output_ratio is None:
            raise ValueError(f"{name} requires specifying either an output_size or an "
                             f"output_ratio")
        ratio = output_ratio if isinstance(output_ratio, (tuple, list)) else \
            (output_ratio,) * dims
        output_size = tuple(int(s * r) for s, r in zip(spatial, ratio))
    out = ntuple(output_size, dims, "output_size")
    for axis, (size, k, o) in enumerate(zip(spatial, kernel, out)):
        if o + k - 1 > size:
            raise RuntimeError(f"{name}: output size {o} plus kernel size {k} - 1 exceeds the "
                               f"input size {size} along spatial dim {axis} (input shape "
                               f"{list(input.shape)})")
    if random_samples is None:
        np_dtype = np.float32 if x._data.dtype == np.float32 else np.float64
        samples = to_host(_gen(None, x.device).random((n, c, dims), dtype=np_dtype))
    else:
        if tuple(random_samples.shape) != (n, c, dims):
            raise RuntimeError(f"{name}: _random_samples must have shape {[n, c, dims]}, got "
                               f"{list(random_samples.shape)}")
        samples = to_host(random_samples._data)
    samples = samples.astype(x._data.dtype if x._data.dtype in (np.float32, np.float64)
                             else np.float64)
    # PyTorch's sample order: (w, h) in 2-D, (t, h, w) in 3-D
    axis_sample = (1, 0) if dims == 2 else (0, 1, 2)
    flat = np.zeros((n, c) + out + kernel, np.int64)
    stride = 1
    for axis in reversed(range(dims)):
        starts = _starts(samples[..., axis_sample[axis]], spatial[axis], out[axis],
                         kernel[axis])
        pos = starts[..., None] + np.arange(kernel[axis])             # (N, C, out, k)
        shape = [n, c] + [1] * (2 * dims)
        shape[2 + axis], shape[2 + dims + axis] = out[axis], kernel[axis]
        flat += pos.reshape(shape) * stride
        stride *= spatial[axis]
    windows = flat.reshape(n, c, -1, math.prod(kernel))
    xp = array_module(x._data)
    plane = x._data.reshape(n, c, -1)
    values = xp.take_along_axis(plane, xp.asarray(windows.reshape(n, c, -1)), 2)
    best = xp.argmax(values.reshape(windows.shape), -1)                # NaN wins, as in PyTorch
    index = xp.take_along_axis(xp.asarray(windows), best[..., None], -1)[..., 0]
    index_t = Tensor._make(index)
    result = x.flatten(2).gather(2, index_t).reshape(n, c, *out)
    index_t = index_t.reshape(n, c, *out)
    if not batched:
        result, index_t = result.squeeze(0), index_t.squeeze(0)
    return (result, index_t) if return_indices else result


def fractional_max_pool2d(input, kernel_size, output_size=None, output_ratio=None,
                          return_indices=False, _random_samples=None):
    return _fractional_max_pool("fractional_max_pool2d", input, kernel_size, output_size,
                                output_ratio, return_indices, _random_samples, 2)


def fractional_max_pool3d(input, kernel_size, output_size=None, output_ratio=None,
                          return_indices=False, _random_samples=None):
    return _fractional_max_pool("fractional_max_pool3d", input, kernel_size, output_size,
                                output_ratio, return_indices, _random_samples, 3)


def fractional_max_pool2d_with_indices(input, kernel_size, output_size=None,
                                       output_ratio=None, return_indices=False,
                                       _random_samples=None):
    return fractional_max_pool2d(input, kernel_size, output_size, output_ratio, True,
                                 _random_samples)


def fractional_max_pool3d_with_indices(input, kernel_size, output_size=None,
                                       output_ratio=None, return_indices=False,
                                       _random_samples=None):
    return fractional_max_pool3d(input, kernel_size, output_size, output_ratio, True,
                                 _random_samples)
