"""Weight initialisation, in place and outside the graph (PyTorch's `torch.nn.init`).

Values are drawn on the tensor's device from the given generator (default: that device's,
which `phalanx.manual_seed` seeds) and written into the tensor there.
"""
import math
import warnings

import numpy as np

from ..tensor import backend
from ..tensor.random import _gen


def _write(tensor, values):
    """Write `values` into `tensor`: draws are on its device already; host constants (eye_,
    dirac_) move there."""
    if isinstance(values, np.generic):
        values = np.asarray(values)
    write_whole = getattr(tensor, "_write_whole", None)  # a DTensor keeps its part
    if write_whole is not None:
        write_whole(backend.to_device(values, tensor.device))
    elif tensor.device.type != "meta":           # a meta tensor has nothing to write into
        values = backend.to_device(values, tensor.device)
        tensor._data[...] = values.astype(tensor._data.dtype, copy=False)
    tensor._version[0] += 1
    return tensor


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity (PyTorch's table)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d")
    if nonlinearity in linear or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}; expected one of linear, conv*, "
                     f"sigmoid, tanh, relu, leaky_relu, selu")


def _calculate_fan_in_and_fan_out(tensor):
    if tensor.ndim < 2:
        raise ValueError(f"Fan in and fan out can not be computed for tensor with fewer than 2 "
                         f"dimensions (shape {list(tensor.shape)})")
    receptive = int(np.prod(tensor.shape[2:])) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _calculate_correct_fan(tensor, mode):
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    return _write(tensor, _gen(generator, tensor.device).uniform(a, b, tuple(tensor.shape)))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    return _write(tensor, _gen(generator, tensor.device).normal(mean, std,
                                                                tuple(tensor.shape)))


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Normal(mean, std) truncated to [a, b] (inverse-CDF sampling, as PyTorch does)."""
    def cdf(x):
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0
    lo, hi = cdf((a - mean) / std), cdf((b - mean) / std)
    u = _gen(generator, tensor.device).uniform(2 * lo - 1, 2 * hi - 1, tuple(tensor.shape))
    xp = backend.array_module(u)
    vals = backend.special(xp).erfinv(u) * std * math.sqrt(2.0) + mean
    return _write(tensor, xp.clip(vals, a, b))


def constant_(tensor, val):
    if tensor.device.type != "meta":
        tensor._data[...] = val
    tensor._version[0] += 1
    return tensor


def ones_(tensor):
    return constant_(tensor, 1.0)


def zeros_(tensor):
    return constant_(tensor, 0.0)


def eye_(tensor):
    if tensor.ndim != 2:
        raise ValueError(f"Only tensors with 2 dimensions are supported (got shape "
                         f"{list(tensor.shape)})")
    return _write(tensor, np.eye(*tensor.shape))


def dirac_(tensor, groups=1):
    dims = tensor.ndim
    if dims not in (3, 4, 5):
        raise ValueError(f"Only tensors with 3, 4, or 5 dimensions are supported (got shape "
                         f"{list(tensor.shape)})")
    sizes = tensor.shape
    if sizes[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    out_per_group = sizes[0] // groups
    min_dim = min(out_per_group, sizes[1])
    w = np.zeros(sizes)
    center = tuple(s // 2 for s in sizes[2:])
    for g in range(groups):
        for d in range(min_dim):
            w[(g * out_per_group + d, d) + center] = 1
    return _write(tensor, w)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    a = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)


def _kaiming_std(tensor, a, mode, nonlinearity):
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op")
        return None
    fan = _calculate_correct_fan(tensor, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    return normal_(tensor, 0.0, std, generator)


def orthogonal_(tensor, gain=1, generator=None):
    """A (semi-)orthogonal matrix from the QR decomposition of a normal matrix."""
    if tensor.ndim < 2:
        raise ValueError(f"Only tensors with 2 or more dimensions are supported (got shape "
                         f"{list(tensor.shape)})")
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    flat = _gen(generator, tensor.device).standard_normal((rows, cols))
    xp = backend.array_module(flat)
    if rows < cols:
        flat = flat.T
    q, r = xp.linalg.qr(flat)
    q *= xp.sign(xp.diag(r))  # makes the distribution uniform (Haar)
    if rows < cols:
        q = q.T
    return _write(tensor, (gain * q).reshape(tensor.shape))


def sparse_(tensor, sparsity, std=0.01, generator=None):
    if tensor.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    rows, cols = tensor.shape
    rng = _gen(generator, tensor.device)
    w = rng.normal(0, std, (rows, cols))
    zeros = int(math.ceil(sparsity * rows))
    for c in range(cols):
        w[rng.permutation(rows)[:zeros], c] = 0
    return _write(tensor, w)


def _old_spelling(init):
    """PyTorch's pre-0.4 name for `init` (without the trailing underscore): same effect, with
    PyTorch's FutureWarning."""
    new_name = init.__name__
    old_name = new_name[:-1]

    def old(*args, **kwargs):
        warnings.warn(f"`nn.init.{old_name}` is now deprecated in favor of "
                      f"`nn.init.{new_name}`.", FutureWarning, stacklevel=2)
        return init(*args, **kwargs)
    old.__name__ = old.__qualname__ = old_name
    old.__doc__ = f"Deprecated spelling of `{new_name}`."
    return old


uniform = _old_spelling(uniform_)
normal = _old_spelling(normal_)
constant = _old_spelling(constant_)
eye = _old_spelling(eye_)
dirac = _old_spelling(dirac_)
xavier_uniform = _old_spelling(xavier_uniform_)
xavier_normal = _old_spelling(xavier_normal_)
kaiming_uniform = _old_spelling(kaiming_uniform_)
kaiming_normal = _old_spelling(kaiming_normal_)
orthogonal = _old_spelling(orthogonal_)
sparse = _old_spelling(sparse_)
