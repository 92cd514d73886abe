"""Dropout: zero elements (or whole channels) with probability p and scale the rest by 1/(1-p).

The mask is drawn where the input lives, from the given generator (default: that device's, which
`phalanx.manual_seed` seeds), so a seed reproduces it on the same device.
"""
import warnings

import numpy as np

from ...tensor import Tensor
from ...tensor.random import _gen


def _check_p(p):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _mask(input, shape, p, generator):
    dtype = input._data.dtype
    # draw in the input's precision (float32 draws are half the work of float64 ones)
    u = _gen(generator, input.device).random(shape, dtype=np.float32 if dtype == np.float32
                                             else np.float64)
    scale = (u >= p).astype(dtype)
    scale *= 1.0 / (1.0 - p)
    return Tensor._make(scale)


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


def _feature_dropout(input, p, training, inplace, generator, batched):
    """Zero whole channels: the mask keeps the batch and channel dims (N, C, 1, ...), or only
    the channel dim (C, 1, ...) of an unbatched input."""
    lead = 2 if batched else 1
    if input.ndim < lead:
        raise RuntimeError(f"Feature dropout requires at least 2 dimensions in the input, got "
                           f"shape {list(input.shape)}")
    shape = tuple(input.shape[:lead]) + (1,) * (input.ndim - lead)
    return _apply_mask(input, shape, p, training, inplace, generator)


def _warn_rank(name, ndim, spatial):
    # PyTorch deprecates, but still runs, these ranks; we warn the same way
    warnings.warn(f"{name}: Received a {ndim}-D input to {name}, which is deprecated and will "
                  f"result in an error in a future release. To retain the behavior and silence "
                  f"this warning, please use dropout instead. Note that {name} exists to "
                  f"provide channel-wise dropout on inputs with {spatial} spatial dimensions, "
                  f"a channel dimension, and an optional batch dimension (i.e. {spatial + 1}D "
                  f"or {spatial + 2}D inputs).", stacklevel=3)


def dropout1d(input, p=0.5, training=True, inplace=False, *, generator=None):
    _check_p(p)
    if input.ndim not in (2, 3):
        raise RuntimeError(f"dropout1d: Expected 2D or 3D input, but received a {input.ndim}D "
                           f"input of shape {list(input.shape)}. Note that dropout1d exists to "
                           f"provide channel-wise dropout on inputs with 1 spatial dimension, a "
                           f"channel dimension, and an optional batch dimension (i.e. 2D or 3D "
                           f"inputs).")
    return _feature_dropout(input, p, training, inplace, generator, input.ndim == 3)


def dropout2d(input, p=0.5, training=True, inplace=False, *, generator=None):
    """As PyTorch: a 3-D input is read as (N, C, L) (with a warning), not as unbatched."""
    _check_p(p)
    if input.ndim not in (3, 4):
        _warn_rank("dropout2d", input.ndim, 2)
    if input.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that "
                      "channel-wise 1D dropout behavior is desired - input is interpreted as "
                      "shape (N, C, L), where C is the channel dim. This behavior will change "
                      "in a future release to interpret the input as one without a batch "
                      "dimension, i.e. shape (C, H, W). To maintain the 1D channel-wise dropout "
                      "behavior, please switch to using dropout1d instead.", stacklevel=2)
    return _feature_dropout(input, p, training, inplace, generator, True)


def dropout3d(input, p=0.5, training=True, inplace=False, *, generator=None):
    _check_p(p)
    if input.ndim not in (4, 5):
        _warn_rank("dropout3d", input.ndim, 3)
    return _feature_dropout(input, p, training, inplace, generator, input.ndim == 5)


# SELU's fixed point: alpha dropout sets dropped units to -SELU_ALPHA * SELU_SCALE and then
# rescales so that the mean and variance of a standardised input are kept
_ALPHA_PRIME = -1.7580993408473766


def _alpha_mask(input, p, training, inplace, generator, mask_shape):
    _check_p(p)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input.copy_(input * 0.0) if inplace else input * 0.0
    dtype = input._data.dtype
    u = _gen(generator, input.device).random(mask_shape, dtype=np.float32
                                             if dtype == np.float32 else np.float64)
    keep = (u >= p).astype(dtype)
    a = ((1 - p) * (1 + p * _ALPHA_PRIME ** 2)) ** -0.5
    b = -a * _ALPHA_PRIME * p
    scale = Tensor._make(a * keep)
    shift = Tensor._make((a * _ALPHA_PRIME * (1 - keep) + b).astype(dtype))
    out = input * scale + shift
    return input.copy_(out) if inplace else out


def alpha_dropout(input, p=0.5, training=False, inplace=False):
    """Dropout for SELU networks: keeps zero mean and unit variance (note training=False by
    default, as in PyTorch)."""
    return _alpha_mask(input, p, training, inplace, None, tuple(input.shape))


def feature_alpha_dropout(input, p=0.5, training=False, inplace=False):
    """Alpha dropout of whole channels (dim 1 of a batched input)."""
    if input.ndim < 2:
        raise RuntimeError(f"Feature dropout requires at least 2 dimensions in the input, got "
                           f"shape {list(input.shape)}")
    shape = tuple(input.shape[:2]) + (1,) * (input.ndim - 2)
    return _alpha_mask(input, p, training, inplace, None, shape)

