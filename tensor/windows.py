"""Window functions for signal processing (`torch.hann_window`, ...): PyTorch's formulas, a
periodic window being the symmetric one of length N + 1 without its last sample."""
import math

import numpy as np

from .creation import tensor
from .dtypes import get_default_dtype


def _window(name, window_length, periodic, values, dtype, layout, device, requires_grad):
    if window_length < 0:
        raise RuntimeError(f"{name} requires non-negative window_length, got "
                           f"window_length={window_length}")
    if layout is not None and str(layout) != "torch.strided":
        raise NotImplementedError(f"{name}(layout={layout}): only strided tensors exist")
    dtype = dtype or get_default_dtype()
    if not dtype.is_floating_point:
        raise RuntimeError(f"{name} expects floating point dtypes, got: {dtype}")
    if window_length == 0:
        data = np.zeros(0)
    elif window_length == 1:
        data = np.ones(1)
    else:
        n = window_length + 1 if periodic else window_length
        data = values(np.arange(n, dtype=np.float64), n)[:window_length]
    return tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def hann_window(window_length, periodic=True, *, dtype=None, layout=None, device=None,
                requires_grad=False):
    return _window("hann_window", window_length, periodic,
                   lambda k, n: 0.5 - 0.5 * np.cos(2 * math.pi * k / (n - 1)),
                   dtype, layout, device, requires_grad)


def hamming_window(window_length, periodic=True, alpha=0.54, beta=0.46, *, dtype=None,
                   layout=None, device=None, requires_grad=False):
    return _window("hamming_window", window_length, periodic,
                   lambda k, n: alpha - beta * np.cos(2 * math.pi * k / (n - 1)),
                   dtype, layout, device, requires_grad)


def blackman_window(window_length, periodic=True, *, dtype=None, layout=None, device=None,
                    requires_grad=False):
    return _window("blackman_window", window_length, periodic,
                   lambda k, n: (0.42 - 0.5 * np.cos(2 * math.pi * k / (n - 1))
                                 + 0.08 * np.cos(4 * math.pi * k / (n - 1))),
                   dtype, layout, device, requires_grad)


def bartlett_window(window_length, periodic=True, *, dtype=None, layout=None, device=None,
                    requires_grad=False):
    return _window("bartlett_window", window_length, periodic,
                   lambda k, n: 1 - np.abs(2 * k / (n - 1) - 1),
                   dtype, layout, device, requires_grad)


def kaiser_window(window_length, periodic=True, beta=12.0, *, dtype=None, layout=None,
                  device=None, requires_grad=False):
    return _window("kaiser_window", window_length, periodic,
                   lambda k, n: np.kaiser(n, beta),
                   dtype, layout, device, requires_grad)
