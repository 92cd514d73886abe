"""Dropout: zero elements (or whole channels) with probability p and scale the rest by 1/(1-p).

The mask is drawn from the given generator (default: the one `phalanx.manual_seed` seeds), so
a seed reproduces it on every device.
"""
import numpy as np

from ...tensor import Tensor, backend
from ...tensor.random import _gen


def _check_p(p):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _mask(input, shape, p, generator):
    dtype = input._data.dtype
    # draw in the input's precision (float32 draws are half the work of float64 ones)
    u = _gen(generator).random(shape, dtype=np.float32 if dtype == np.float32 else np.float64)
    scale = (u >= p).astype(dtype)
    scale *= 1.0 / (1.0 - p)
    return Tensor._make(backend.to_device(scale, input.device))


def _apply_mask(input, mask_shape, p, training, inplace, generator):
    _check_p(p)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        out = input * 0.0
    else:
        out = input * _mask(input, mask_shape, p, generator)
    return input.copy_(out) if inplace else out


def dropout(input, p=0.5, training=True, inplace=False, *, generator=None):
    return _apply_mask(input, tuple(input.shape), p, training, inplace, generator)


def _channel_dropout(input, p, training, inplace, generator, spatial, name):
    """Zero whole channels: the mask has shape (N, C, 1, ...) (or (C, 1, ...) unbatched)."""
    if input.ndim not in (spatial + 1, spatial + 2):
        raise RuntimeError(f"{name}: expected a {spatial + 1}D (unbatched) or {spatial + 2}D "
                           f"(batched) input, got shape {list(input.shape)}")
    lead = input.ndim - spatial
    shape = tuple(input.shape[:lead]) + (1,) * spatial
    return _apply_mask(input, shape, p, training, inplace, generator)


def dropout1d(input, p=0.5, training=True, inplace=False, *, generator=None):
    return _channel_dropout(input, p, training, inplace, generator, 1, "dropout1d")


def dropout2d(input, p=0.5, training=True, inplace=False, *, generator=None):
    return _channel_dropout(input, p, training, inplace, generator, 2, "dropout2d")


def dropout3d(input, p=0.5, training=True, inplace=False, *, generator=None):
    return _channel_dropout(input, p, training, inplace, generator, 3, "dropout3d")
