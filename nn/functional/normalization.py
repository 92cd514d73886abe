"""Normalization: batch_norm, layer_norm, group_norm (and instance_norm, rms_norm and
local_response_norm composed from them or from plain ops).

All three standardise over some axes with one fused Function, `_Standardize`, then apply the
per-channel affine transform with ordinary tensor ops. `_Standardize` returns the standardised
input and 1/std as two outputs; its backward is written in terms of those outputs, so gradients
of any order flow through it like through any other op.

Batch norm in training runs as one Function, `_BatchNormTrain` (statistics, standardisation
and the affine transform forward; all three gradients backward, on arrays), and so does layer
norm, `_LayerNorm` (float32/float64; on a GPU the fused kernel of fused_normalization). When a
higher-order gradient is asked for, their backward differentiates the composed form above;
while an observer is on the dispatch point (autocast, the profiler, ONNX export), they run the
composed form, whose ops each of them knows.
"""
from ...autograd import Function, dispatch
from ...autograd import grad as autograd_grad
from ...autograd.grad_mode import enable_grad, is_grad_enabled, no_grad
import numpy as np

from ...tensor import Tensor
from ...tensor.backend import array_module
from ...tensor.ops.shape import pad
from . import cuda_kernels, fused_normalization

make = Tensor._make


class _Standardize(Function):
    """xhat = (x - mean) / sqrt(var + eps) over `axes` (biased variance); also returns
    invstd = 1 / sqrt(var + eps) with the reduced axes kept. Puts mean and var in `stats`
    when asked (batch norm's running statistics need them)."""

    @staticmethod
    def forward(ctx, x, axes, eps, stats=None):
        d = x._data
        xp = array_module(d)
        # float16: statistics in float32, as PyTorch's kernels (squares overflow float16)
        work = d if d.dtype.itemsize >= 4 else d.astype(np.float32)
        mean = work.mean(axis=axes, keepdims=True)
        xc = work - mean
        var = (xc * xc).mean(axis=axes, keepdims=True)
        invstd = 1.0 / xp.sqrt(var + eps)
        xc *= invstd
        if stats is not None:
            stats["mean"], stats["var"] = mean, var
        xhat, inv = make(xc.astype(d.dtype, copy=False)), make(invstd.astype(d.dtype, copy=False))
        ctx.save_for_backward(xhat, inv)
        ctx.axes, ctx.count = axes, d.size // invstd.size
        ctx.set_materialize_grads(False)
        return xhat, inv

    @staticmethod
    def backward(ctx, g, g_invstd):
        xhat, invstd = ctx.saved_tensors
        axes = ctx.axes
        gx = None
        if g is not None:
            gx = invstd * (g - g.mean(dim=axes, keepdim=True)
                           - xhat * (g * xhat).mean(dim=axes, keepdim=True))
        if g_invstd is not None:
            # d invstd / dx = -invstd^2 * xhat / count
            gi = g_invstd * invstd * invstd * xhat * (-1.0 / ctx.count)
            gx = gi if gx is None else gx + gi
        return gx, None, None, None


class _BatchNormTrain(Function):
    node_name = "NativeBatchNorm"
    graph_inputs = (0, 1, 2)
    """y = (x - mean) / sqrt(var + eps) * weight + bias, with the batch statistics over every
    dim but the channels (dim 1); puts mean and var in `stats` when asked."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, stats=None):
        d = x._data
        xp = array_module(d)
        shape = (1, d.shape[1]) + (1,) * (d.ndim - 2)
        count = d.size // d.shape[1]
        mean = _channel_sum(d).reshape(shape) / count
        xhat = d - mean
        var = _channel_dot(xhat, xhat).reshape(shape) / count
        invstd = 1.0 / xp.sqrt(var + eps)
        xhat *= invstd
        if weight is not None:
            y = xhat * weight._data.reshape(shape)
        else:
            y = xhat.copy()
        if bias is not None:
            y += bias._data.reshape(shape)
        if stats is not None:
            stats["mean"], stats["var"] = mean, var
        ctx.save_for_backward(x, weight, bias)
        ctx.xhat, ctx.invstd, ctx.eps = xhat, invstd.astype(d.dtype, copy=False), eps
        return Tensor._make(y)

    @staticmethod
    def backward(ctx, g):
        x, weight, bias = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if is_grad_enabled():   # create_graph: differentiate the composed form instead
            return _batch_norm_composed_grads(ctx, x, weight, bias, g)
        gd, xhat = g._data, ctx.xhat
        xp = array_module(gd)
        shape = (1, gd.shape[1]) + (1,) * (gd.ndim - 2)
        count = gd.size // gd.shape[1]
        g_bias = _channel_sum(gd)
        g_weight = _channel_dot(gd, xhat)
        gx = None
        if need_x:
            # gx = weight * invstd * (g - mean(g) - xhat * mean(g * xhat))
            gx = xhat * (g_weight / count).reshape(shape)
            xp.subtract(gd, gx, out=gx)
            gx -= (g_bias / count).reshape(shape)
            scale = ctx.invstd if weight is None else ctx.invstd * weight._data.reshape(shape)
            gx *= scale
            gx = Tensor._make(gx)
        return (gx, Tensor._make(g_weight) if need_w else None,
                Tensor._make(g_bias) if need_b else None, None, None)


def _channel_sum(a):
    """Sum over every dim but dim 1, as (C,). einsum does it in one pass; a sum over the
    axes (0, 2, 3) of a small map walks the array several times slower."""
    n, c = a.shape[:2]
    return array_module(a).einsum("ncl->c", a.reshape(n, c, -1))


def _channel_dot(a, b):
    """sum(a * b) over every dim but dim 1, without the product as a temporary."""
    n, c = a.shape[:2]
    return array_module(a).einsum("ncl,ncl->c", a.reshape(n, c, -1), b.reshape(n, c, -1))


def _batch_norm_composed_grads(ctx, x, weight, bias, g):
    inputs = (x, weight, bias)
    needs = ctx.needs_input_grad[:3]
    wanted = [t for t, need in zip(inputs, needs) if need]
    with enable_grad():
        axes = (0,) + tuple(range(2, x.ndim))
        y, _ = _Standardize.apply(x, axes, ctx.eps)
        y = _affine(y, weight, bias, (1, x.shape[1]) + (1,) * (x.ndim - 2))
    res = iter(autograd_grad([y], wanted, [g], create_graph=True, allow_unused=True))
    return tuple(next(res) if need else None for need in needs) + (None, None)


def _affine(y, weight, bias, shape):
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise each channel (dim 1) over the batch and spatial dims. In training the batch
    statistics are used and, when given, the running ones are updated in place:
    running = (1 - momentum) * running + momentum * batch (unbiased variance)."""
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected an input of at least 2 dims (N, C, ...), got "
                         f"shape {list(input.shape)}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise RuntimeError(f"batch_norm: {name} has shape {list(t.shape)} but the input "
                               f"{list(input.shape)} has {c} channels; expected [{c}]")
    shape = (1, c) + (1,) * (input.ndim - 2)
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when "
                             "training=False")
        if _eval_in_one_node(input, running_mean, running_var, weight, bias):
            return _BatchNormEval.apply(input, weight, bias, running_mean, running_var, eps)
        # fold the statistics into one scale and shift per channel
        scale = (running_var + eps).rsqrt()
        if weight is not None:
            scale = scale * weight
        shift = -running_mean * scale
        if bias is not None:
            shift = shift + bias
        return input * scale.reshape(shape) + shift.reshape(shape)
    axes = (0,) + tuple(range(2, input.ndim))
    count = input.numel() // max(c, 1)
    if count <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input "
                         f"size {list(input.shape)}")
    stats = {} if running_mean is not None or running_var is not None else None
    if dispatch.watching():
        y, _ = _Standardize.apply(input, axes, eps, stats)
        y = _affine(y, weight, bias, shape)
    else:
        y = _BatchNormTrain.apply(input, weight, bias, eps, stats)
    if stats is not None:
        _update_running(running_mean, stats["mean"].reshape(c), momentum)
        _update_running(running_var, stats["var"].reshape(c) * (count / (count - 1)), momentum)
    return y


def _eval_in_one_node(input, *tensors):
    """Whether batch norm with running statistics runs as `_BatchNormEval`: one dtype, no
    gradient for the statistics, and no observer on the dispatch point (which knows the
    composed form's ops)."""
    return not dispatch.watching() and all(
        t is None or (t.dtype == input.dtype and type(t._data) is type(input._data))
        for t in tensors) and not (tensors[0].requires_grad or tensors[1].requires_grad)


class _BatchNormEval(Function):
    """Batch norm with running statistics: y = x * scale + shift per channel (dim 1), scale =
    weight / sqrt(running_var + eps), shift = bias - running_mean * scale, as one node (as
    PyTorch's; composed it is eight). The backward is written in tensor ops, so gradients of
    any order flow through it."""
    node_name = "NativeBatchNorm"
    graph_inputs = (0, 1, 2)

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps):
        d = x._data
        xp = array_module(d)
        shape = (1, d.shape[1]) + (1,) * (d.ndim - 2)
        invstd = 1.0 / xp.sqrt(running_var._data + eps)
        scale = invstd if weight is None else invstd * weight._data
        shift = -running_mean._data * scale
        if bias is not None:
            shift += bias._data
        ctx.save_for_backward(x, weight)
        ctx.mean, ctx.invstd = running_mean._data.reshape(shape), invstd.reshape(shape)
        return make(d * scale.reshape(shape) + shift.reshape(shape))

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        invstd = make(ctx.invstd)
        axes = (0,) + tuple(range(2, g.ndim))
        gx = gw = gb = None
        if need_x:
            gx = g * (invstd if weight is None else invstd * weight.reshape(invstd.shape))
        if need_w:
            gw = (g * ((x - make(ctx.mean)) * invstd)).sum(axes)
        if need_b:
            gb = g.sum(axes)
        return gx, gw, gb, None, None, None


def _update_running(running, batch, momentum):
    if running is None or running.device.type == "meta":    # meta: no statistics to keep
        return
    with no_grad():
        d = running._data
        d *= 1.0 - momentum
        d += (momentum * batch).astype(d.dtype, copy=False)
        running._version[0] += 1


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else \
        tuple(normalized_shape)
    k = len(shape)
    if tuple(input.shape[input.ndim - k:]) != shape or input.ndim < k:
        raise RuntimeError(f"layer_norm: given normalized_shape={list(shape)}, expected input "
                           f"with shape [*, {', '.join(map(str, shape))}], but got input of "
                           f"size {list(input.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise RuntimeError(f"layer_norm: {name} has shape {list(t.shape)}, expected "
                               f"{list(shape)} (the normalized_shape)")
    if dispatch.watching(fused_normalization.FusedLayerNorm) or input.numel() == 0:
        return _layer_norm(input, shape, weight, bias, eps)   # observers see the primitives
    fused = fused_normalization.layer_norm(input, shape, weight, bias, eps, _layer_norm)
    if fused is not None:
        return fused
    if cuda_kernels.fusable(*(t._data for t in (input, weight, bias) if t is not None)):
        return _LayerNorm.apply(input, weight, bias, shape, eps)
    return _layer_norm(input, shape, weight, bias, eps)  # float16: statistics in float32


class _LayerNorm(Function):
    node_name = "NativeLayerNorm"
    graph_inputs = (0, 1, 2)
    """Layer norm over the trailing dims with its affine transform, forward and all three
    gradients on arrays (the composed form is five ops forward and more backward, each paying
    the per-op overhead on what are usually small rows), for float32/float64 with one dtype.
    Row statistics are matrix-vector products: a BLAS gemv beats a reduction over a short last
    axis. Under create_graph the backward differentiates the composed form instead."""

    @staticmethod
    def forward(ctx, x, weight, bias, shape, eps):
        d = x._data
        xp = array_module(d)
        width = _prod(shape)
        rows = d.reshape(-1, width)
        averager = xp.full(width, 1.0 / width, dtype=d.dtype)
        xhat = rows - (rows @ averager)[:, None]
        rstd = (xhat * xhat) @ averager
        rstd += eps
        xp.sqrt(rstd, out=rstd)
        xp.reciprocal(rstd, out=rstd)
        xhat *= rstd[:, None]
        y = xhat.copy() if weight is None else xhat * weight._data.reshape(width)
        if bias is not None:
            y += bias._data.reshape(width)
        ctx.save_for_backward(x, weight, bias)
        ctx.xhat, ctx.rstd, ctx.averager = xhat, rstd, averager
        ctx.shape, ctx.eps = shape, eps
        return Tensor._make(y.reshape(d.shape))

    @staticmethod
    def backward(ctx, g):
        x, weight, bias = ctx.saved_tensors
        needs = ctx.needs_input_grad[:3]
        if is_grad_enabled():   # create_graph: differentiate the composed form instead
            return cuda_kernels.differentiate(
                lambda a, w, b: _layer_norm(a, ctx.shape, w, b, ctx.eps), (x, weight, bias),
                needs, g) + (None, None)
        xhat, rstd, averager = ctx.xhat, ctx.rstd, ctx.averager
        xp = array_module(xhat)
        gy = g._data.reshape(xhat.shape)
        gx = gw = gb = None
        if needs[1]:
            gw = Tensor._make(xp.einsum("ij,ij->j", gy, xhat).reshape(weight.shape))
        if bias is not None and needs[2]:
            gb = Tensor._make(gy.sum(0).reshape(bias.shape))
        if needs[0]:
            # gx = rstd * (h - mean(h) - xhat * mean(h * xhat)), h = gy * weight
            h = gy if weight is None else gy * weight._data.reshape(-1)
            gxd = xhat * (xp.einsum("ij,ij->i", h, xhat) / averager.size)[:, None]
            xp.subtract(h, gxd, out=gxd)
            gxd -= (h @ averager)[:, None]
            gxd *= rstd[:, None]
            gx = Tensor._make(gxd.reshape(x.shape))
        return gx, gw, gb, None, None


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _layer_norm(input, shape, weight, bias, eps):
    """Layer norm composed of `_Standardize` and the affine ops (the CPU path)."""
    axes = tuple(range(input.ndim - len(shape), input.ndim))
    y, _ = _Standardize.apply(input, axes, eps)
    return _affine(y, weight, bias, shape)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    if input.ndim < 2:
        raise RuntimeError(f"group_norm: expected an input of at least 2 dims (N, C, ...), got "
                           f"shape {list(input.shape)}")
    n, c = input.shape[:2]
    if c % num_groups:
        raise RuntimeError(f"group_norm: the number of channels ({c}) must be divisible by "
                           f"num_groups ({num_groups})")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise RuntimeError(f"group_norm: {name} has shape {list(t.shape)}, expected [{c}]")
    y, _ = _Standardize.apply(input.reshape(n, num_groups, -1), (2,), eps)
    return _affine(y.reshape(input.shape), weight, bias, (1, c) + (1,) * (input.ndim - 2))


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Normalise each (sample, channel) over its spatial dims. As in PyTorch, this is batch
    norm over the input seen as one sample of N * C channels; running statistics, when given,
    are updated with the mean over the batch of the per-instance ones."""
    if input.ndim < 3:
        raise ValueError(f"instance_norm: expected an input of at least 3 dims (N, C, ...), "
                         f"got shape {list(input.shape)}")
    n, c = input.shape[:2]
    repeat = (lambda t: None if t is None else t.repeat(n))  # noqa: E731
    rm, rv = repeat(running_mean), repeat(running_var)
    out = batch_norm(input.reshape(1, n * c, *input.shape[2:]), rm, rv, repeat(weight),
                     repeat(bias), training=use_input_stats, momentum=momentum, eps=eps)
    with no_grad():
        for running, updated in ((running_mean, rm), (running_var, rv)):
            if running is not None and use_input_stats:
                running.copy_(updated.reshape(n, c).mean(0))
    return out.reshape(input.shape)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """x / sqrt(mean(x^2 over the normalized dims) + eps) * weight; eps defaults to the
    machine epsilon of the input's dtype."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else \
        tuple(normalized_shape)
    k = len(shape)
    if input.ndim < k or tuple(input.shape[input.ndim - k:]) != shape:
        raise RuntimeError(f"rms_norm: given normalized_shape={list(shape)}, expected input "
                           f"with shape [*, {', '.join(map(str, shape))}], but got input of "
                           f"size {list(input.shape)}")
    if weight is not None and tuple(weight.shape) != shape:
        raise RuntimeError(f"rms_norm: weight has shape {list(weight.shape)}, expected "
                           f"{list(shape)} (the normalized_shape)")
    if eps is None:
        eps = float(np.finfo(input._data.dtype).eps)
    axes = tuple(range(input.ndim - k, input.ndim))
    y = input * (input.square().mean(axes, keepdim=True) + eps).rsqrt()
    return y if weight is None else y * weight


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """x / (k + alpha / size * sum of x^2 over `size` neighbouring channels)^beta, the window
    centred on each channel and zero-padded at the ends (AlexNet's LRN)."""
    if input.ndim < 3:
        raise ValueError(f"Expected 3D or higher dimensionality input (got {input.ndim} "
                         f"dimensions)")
    if input.numel() == 0:
        return input
    sq = input.square()
    c = input.shape[1]
    # zero-pad the channel dim by (size // 2, (size - 1) // 2) and sum each window
    padding = [0, 0] * (input.ndim - 2) + [size // 2, (size - 1) // 2]
    padded = pad(sq, padding)
    window = sum(padded[:, i:i + c] for i in range(size))
    div = (window * (alpha / size) + k) ** beta
    return input / div


__all__ = ["batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm",
           "local_response_norm"]
