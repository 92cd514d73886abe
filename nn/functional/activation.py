"""Activation functions. Each is a primitive of the tensor library or a composite of them."""
import warnings

from ...tensor import gelu as _gelu, log_softmax as _log_softmax, relu as _relu, \
    sigmoid as _sigmoid, silu as _silu, softmax as _softmax, softplus as _softplus, \
    tanh as _tanh, where


def _inplace(input, out, inplace):
    """The functional `inplace=True` form: write `out` into `input` (autograd-aware)."""
    return input.copy_(out) if inplace else out


def relu(input, inplace=False):
    return _inplace(input, _relu(input), inplace)


def relu6(input, inplace=False):
    return hardtanh(input, 0.0, 6.0, inplace)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    return _inplace(input, input.clamp(min_val, max_val), inplace)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return _inplace(input, where(input > 0, input, input * negative_slope), inplace)


def elu(input, alpha=1.0, inplace=False):
    # expm1 of min(x, 0): the unused branch stays finite, so its zero gradient stays zero
    neg = input.clamp(max=0).expm1() * alpha
    return _inplace(input, where(input > 0, input, neg), inplace)


def gelu(input, approximate="none"):
    return _gelu(input, approximate=approximate)


def silu(input, inplace=False):
    return _inplace(input, _silu(input), inplace)


def mish(input, inplace=False):
    return _inplace(input, input * _tanh(_softplus(input)), inplace)


def sigmoid(input):
    return _sigmoid(input)


def tanh(input):
    return _tanh(input)


def hardsigmoid(input, inplace=False):
    return _inplace(input, (input / 6 + 0.5).clamp(0.0, 1.0), inplace)


def hardswish(input, inplace=False):
    return _inplace(input, input * (input / 6 + 0.5).clamp(0.0, 1.0), inplace)


def softplus(input, beta=1.0, threshold=20.0):
    return _softplus(input, beta=beta, threshold=threshold)


def logsigmoid(input):
    return -_softplus(-input)


def softsign(input):
    return input / (input.abs() + 1)


def _softmax_dim(ndim, name):
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call "
                  f"to include dim=X as an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim(input.ndim, "softmax")
    return _softmax(input, dim, dtype=dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim(input.ndim, "log_softmax")
    return _log_softmax(input, dim, dtype=dtype)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    return softmax(-input, dim, dtype=dtype)


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """input / max(||input||_p along dim, eps)."""
    return input / input.norm(p, dim, keepdim=True).clamp(min=eps).expand_as(input)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    n1 = x1.norm(2, dim).clamp(min=eps)
    n2 = x2.norm(2, dim).clamp(min=eps)
    return (x1 * x2).sum(dim) / (n1 * n2)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    return (x1 - x2 + eps).norm(p, -1, keepdim=keepdim)

