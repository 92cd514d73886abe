"""Activation functions. Each is a primitive of the tensor library, a Function here where
PyTorch has one node for it (hardtanh, elu/selu/celu, mish, glu: forward and backward side by
side, composed while an observer watches the dispatch point), or a composite."""
import warnings

import numpy as np

from ...autograd import Function, dispatch
from ...tensor import Tensor, backend, cat
from ...tensor.backend import array_module
from ...tensor.methods import _inplace_apply
from ...tensor.ops._util import named
from ...tensor.ops.elementwise import sigmoid_array
from ...tensor.ops.products import cdist
from ...tensor.random import _gen
from . import fused_activation
from ...tensor.ops.elementwise import leaky_relu as _leaky_relu
from ...tensor import gelu as _gelu, log_softmax as _log_softmax, relu as _relu, \
    sigmoid as _sigmoid, silu as _silu, softmax as _softmax, softplus as _softplus, \
    tanh as _tanh, where


def _inplace(input, compute, inplace):
    """`compute(input)`; with `inplace=True` its values are written into `input` as one
    in-place op, as Tensor.relu_ does (no second node copying them in)."""
    return _inplace_apply(input, compute) if inplace else compute(input)


def relu(input, inplace=False):
    return _inplace(input, _relu, inplace)


def relu6(input, inplace=False):
    return hardtanh(input, 0.0, 6.0, inplace)     # PyTorch's node is Hardtanh's too


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    if _fused(input):
        return _inplace(input, lambda x: Hardtanh.apply(x, min_val, max_val), inplace)
    return _inplace(input, lambda x: x.clamp(min_val, max_val), inplace)


def _fused(input):
    """Whether an activation Function of this module runs (else its composite): on floating
    input, while no observer watches the primitives."""
    return input._data.dtype.kind == "f" and not dispatch.watching()


class Hardtanh(Function):
    """clip(x, min_val, max_val); the gradient passes strictly between the bounds, as
    PyTorch's (clamp's also passes at them: relu6'(0) is 0, clamp(x, 0, 6)'s is 1)."""
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, min_val, max_val):
        d = x._data
        out = Tensor._make(array_module(d).clip(d, min_val, max_val).astype(d.dtype,
                                                                             copy=False))
        ctx.save_for_backward(out)    # inside the bounds exactly where the input is
        ctx.bounds = (min_val, max_val)
        return out

    @staticmethod
    def backward(ctx, g):
        out, = ctx.saved_tensors
        lo, hi = ctx.bounds
        d = out._data
        return g * Tensor._make(((d > lo) & (d < hi)).astype(g._data.dtype)), None, None


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return _inplace(input, lambda x: _leaky_relu(x, negative_slope), inplace)


def elu(input, alpha=1.0, inplace=False):
    if _fused(input):
        return _inplace(input, lambda x: Elu.apply(x, alpha, 1.0, 1.0), inplace)
    # expm1 of min(x, 0): the unused branch stays finite, so its zero gradient stays zero
    return _inplace(input, lambda x: where(x > 0, x, x.clamp(max=0).expm1() * alpha), inplace)


class Elu(Function):
    """scale * (x if x > 0 else alpha * (exp(input_scale * x) - 1)): PyTorch's elu node, which
    selu (its constants) and celu (input_scale 1 / alpha, named Celu there) share. Backward:
    scale, or scale * alpha * input_scale * exp(input_scale * x), in tensor ops."""
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, alpha, scale, input_scale):
        d = x._data
        xp = array_module(d)
        # expm1 of min(x, 0): the branch where x > 0 stays finite
        negative = xp.expm1(xp.minimum(d, 0) * input_scale) * (alpha * scale)
        ctx.save_for_backward(x)
        ctx.params = (alpha, scale, input_scale)
        return Tensor._make(xp.where(d > 0, d * scale, negative).astype(d.dtype, copy=False))

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        alpha, scale, input_scale = ctx.params
        slope = where(x > 0, scale, (x.clamp(max=0) * input_scale).exp() *
                      (alpha * scale * input_scale))
        return g * slope, None, None, None


def gelu(input, approximate="none"):
    fused = fused_activation.gelu(input, approximate)     # on a GPU: one kernel each way
    return fused if fused is not None else _gelu(input, approximate=approximate)


def silu(input, inplace=False):
    return _inplace(input, _silu, inplace)


def mish(input, inplace=False):
    if _fused(input):
        return _inplace(input, Mish.apply, inplace)
    return _inplace(input, lambda x: x * _tanh(_softplus(x)), inplace)


class Mish(Function):
    """x tanh(softplus(x)) in one op (PyTorch's node; composed it was three), softplus
    without overflow for any x. Backward: t + x sigmoid(x) (1 - t^2) with t = tanh(softplus(x)),
    in tensor ops."""
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x):
        d = x._data
        xp = array_module(d)
        softplus_d = xp.maximum(d, 0) + xp.log1p(xp.exp(-xp.abs(d)))
        ctx.save_for_backward(x)
        return Tensor._make((d * xp.tanh(softplus_d)).astype(d.dtype, copy=False))

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        t = _tanh(_softplus(x))
        return g * (t + x * _sigmoid(x) * (1 - t * t))


def sigmoid(input):
    return _sigmoid(input)


def tanh(input):
    return _tanh(input)


def hardsigmoid(input, inplace=False):
    return _inplace(input, lambda x: (x / 6 + 0.5).clamp(0.0, 1.0), inplace)


def hardswish(input, inplace=False):
    return _inplace(input, lambda x: x * (x / 6 + 0.5).clamp(0.0, 1.0), inplace)


def softplus(input, beta=1.0, threshold=20.0):
    return _softplus(input, beta=beta, threshold=threshold)


def logsigmoid(input):
    return -_softplus(-input)


def softsign(input):
    return input / (input.abs() + 1)


def _softmax_dim(ndim, name, stacklevel):
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call "
                  f"to include dim=X as an argument.", stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim(input.ndim, "softmax", _stacklevel)
    return _softmax(input, dim, dtype=dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim(input.ndim, "log_softmax", _stacklevel)
    return _log_softmax(input, dim, dtype=dtype)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim(input.ndim, "softmin", _stacklevel)
    return _softmax(-input, dim, dtype=dtype)


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """input / max(||input||_p along dim, eps)."""
    if out is not None:
        raise NotImplementedError("normalize(out=...) is not supported; use the returned "
                                  "tensor (or out.copy_(F.normalize(...)))")
    return input / input.norm(p, dim, keepdim=True).clamp_min(eps).expand_as(input)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    n1 = x1.norm(2, dim).clamp(min=eps)
    n2 = x2.norm(2, dim).clamp(min=eps)
    return (x1 * x2).sum(dim) / (n1 * n2)


def pdist(input, p=2):
    """The p-norm distance between every pair of rows i < j of a 2-D input, in row-major
    order of the pairs (the upper triangle of cdist; for p = 2 and more than 25 rows, read
    from cdist's matrix-product form rather than a difference per pair)."""
    if input.ndim != 2:
        raise RuntimeError(f"pdist only supports 2D tensors, got: {input.ndim}D")
    i, j = (Tensor._make(backend.to_device(a.astype(np.int64), input.device))
            for a in np.triu_indices(input.shape[0], 1))
    if p == 2 and input.shape[0] > 25:
        return cdist(input, input)[i, j]
    return (input[i] - input[j]).norm(p, -1)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    return (x1 - x2 + eps).norm(p, -1, keepdim=keepdim)


# ---- PyTorch's other activations, composed from the ones above ---------------------------
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def threshold(input, threshold, value, inplace=False):
    """x where x > threshold, else value."""
    return _inplace(input, lambda x: where(x > threshold, x, value), inplace)


def selu(input, inplace=False):
    if _fused(input):
        return _inplace(input, lambda x: Elu.apply(x, _SELU_ALPHA, _SELU_SCALE, 1.0), inplace)
    return _inplace(input, lambda x: elu(x, _SELU_ALPHA) * _SELU_SCALE, inplace)


def celu(input, alpha=1.0, inplace=False):
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError: celu's alpha must not be 0")
    if _fused(input):
        return _inplace(input, lambda x: named(Elu.apply(x, alpha, 1.0, 1.0 / alpha), Elu,
                                               "Celu"), inplace)
    return _inplace(input, lambda x: where(x > 0, x, (x.clamp(max=0) / alpha).expm1() * alpha),
                    inplace)


def glu(input, dim=-1):
    """a * sigmoid(b), where a and b are the two halves of input along dim."""
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    n = input.shape[dim]
    if n % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {dim % input.ndim} "
                           f"is size {n}")
    if _fused(input):
        return Glu.apply(input, dim % input.ndim)
    a, b = input.split(n // 2, dim)
    return a * _sigmoid(b)


class Glu(Function):
    """a * sigmoid(b) of the two halves a, b of the input along `dim`, in one op (PyTorch's
    node; composed it was a split, a sigmoid and a mul). Backward: the halves' gradients
    g sigmoid(b) and g a sigmoid(b) (1 - sigmoid(b)), joined, in tensor ops."""
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dim):
        d = x._data
        xp = array_module(d)
        a, b = xp.split(d, 2, axis=dim)
        ctx.save_for_backward(x)
        ctx.dim = dim
        return Tensor._make(a * sigmoid_array(xp, b))

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        a, b = x.chunk(2, ctx.dim)
        s = _sigmoid(b)
        ga = g * s
        return cat([ga, ga * a * (1 - s)], ctx.dim), None


def hardshrink(input, lambd=0.5):
    return where(input.abs() > lambd, input, 0.0)


def softshrink(input, lambd=0.5):
    if lambd < 0:
        raise RuntimeError(f"lambda must be greater or equal to 0, but found to be {lambd}.")
    shrunk = input - input.clamp(-lambd, lambd)
    return shrunk


def tanhshrink(input):
    return input - _tanh(input)


def prelu(input, weight):
    """x where x > 0, else weight * x; weight has 1 entry or one per channel (dim 1)."""
    if weight.ndim != 1 and weight.numel() != 1:
        raise RuntimeError(f"prelu: weight must be 1-D (one slope, or one per channel), got "
                           f"shape {list(weight.shape)}")
    n = weight.numel()
    if n != 1:
        channels = input.shape[1] if input.ndim >= 2 else (input.shape[0] if input.ndim else 1)
        if channels != n:
            raise RuntimeError(f"Mismatch of parameter numbers and input channel size. Found "
                               f"parameter numbers = {n} and channel size = {channels}.")
        if input.ndim >= 2:
            weight = weight.reshape(n, *([1] * (input.ndim - 2)))
    else:
        weight = weight.reshape(())
    return where(input > 0, input, weight * input)


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False):
    """Leaky ReLU with a slope drawn from U(lower, upper) per element in training, and the
    mean slope (lower + upper) / 2 otherwise."""
    if not training:
        return leaky_relu(input, (lower + upper) / 2, inplace)
    u = _gen(None, input.device).random(tuple(input.shape))
    slope = Tensor._make((lower + (upper - lower) * u).astype(input._data.dtype))
    return _inplace(input, lambda x: where(x >= 0, x, x * slope), inplace)


def gumbel_softmax(logits, tau=1.0, hard=False, eps=1e-10, dim=-1):
    """Samples from the Gumbel-softmax distribution; `hard=True` returns one-hot samples whose
    gradient is the soft sample's (straight-through). `eps` is unused, as in PyTorch."""
    if eps != 1e-10:
        warnings.warn("`eps` parameter is deprecated and has no effect.", stacklevel=2)
    u = _gen(None, logits.device).exponential(size=tuple(logits.shape))
    gumbels = -Tensor._make(backend.array_module(u).log(u).astype(logits._data.dtype))
    y_soft = softmax((logits + gumbels) / tau, dim)
    if not hard:
        return y_soft
    index = y_soft.argmax(dim, keepdim=True)
    y_hard = (y_soft * 0).detach().scatter(dim, index, 1.0)
    return y_hard - y_soft.detach() + y_soft


def relu_(input):
    return relu(input, inplace=True)


def elu_(input, alpha=1.0):
    return elu(input, alpha, inplace=True)


def leaky_relu_(input, negative_slope=0.01):
    return leaky_relu(input, negative_slope, inplace=True)


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    return hardtanh(input, min_val, max_val, inplace=True)


def threshold_(input, threshold_value, value):
    return threshold(input, threshold_value, value, inplace=True)


def selu_(input):
    return selu(input, inplace=True)


def celu_(input, alpha=1.0):
    return celu(input, alpha, inplace=True)


def rrelu_(input, lower=1.0 / 8, upper=1.0 / 3, training=False):
    return rrelu(input, lower, upper, training, inplace=True)

