"""Loss functions. `cross_entropy` is one fused Function (log-softmax and NLL in one pass over
the logits, and a backward that needs no second softmax), and `nll_loss` is one Function
(composed while an observer watches the dispatch point). The losses that are one node in
PyTorch (mse, smooth L1 / Huber, binary cross entropy with and without logits, soft margin)
are one Function each, forward and backward side by side, and carry PyTorch's node names;
observers see them composed. The others are composites."""
import math
import warnings

import numpy as np

from ...autograd import Function, dispatch
from ...tensor import Tensor, softplus, where
from ...tensor.ops._util import named
from ...tensor.backend import array_module, can_check
from .activation import log_softmax, pairwise_distance
from . import cuda_kernels, fused_loss

_REDUCTIONS = ("none", "mean", "sum")


def _legacy_reduction(size_average, reduce, reduction):
    """PyTorch's deprecated size_average/reduce pair, honoured as PyTorch does: when either is
    given it decides the reduction (with PyTorch's warning)."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    legacy = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn(f"size_average and reduce args will be deprecated, please use "
                  f"reduction='{legacy}' instead.", UserWarning, stacklevel=3)
    return legacy


def _check_reduction(reduction, extra=()):
    if reduction not in _REDUCTIONS + tuple(extra):
        raise ValueError(f"{reduction!r} is not a valid value for reduction; expected one of "
                         f"{', '.join(_REDUCTIONS + tuple(extra))}")


def _reduce(loss, reduction):
    _check_reduction(reduction)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _reduced(loss, reduction):
    """The array of elementwise losses reduced as `reduction` says (the mean of none: nan)."""
    if reduction == "mean":
        loss = loss.mean() if loss.size else loss.dtype.type(np.nan)
    elif reduction == "sum":
        loss = loss.sum()
    return Tensor._make(array_module(loss).asarray(loss, dtype=loss.dtype))


def _mean_scale(reduction, count):
    """What a reduction scales each element's gradient by: 1 / count for the mean."""
    return 1.0 / count if reduction == "mean" and count else 1.0


def _needs_grad(t):
    return t is not None and t.requires_grad


def _check_same_size(input, target, name):
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"{name}: target size ({list(target.shape)}) must be the same as input "
                         f"size ({list(input.shape)})")


# ---- regression ------------------------------------------------------------------------
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_same_size(input, target, "mse_loss")
    if weight is None and not dispatch.watching():
        _check_reduction(reduction)
        return MseLoss.apply(input, target, reduction)
    d = input - target
    loss = d * d
    return _reduce(loss if weight is None else loss * weight, reduction)


class MseLoss(Function):
    """(input - target)^2, reduced, in one op (PyTorch's MseLossBackward0; composed it was a
    sub, a mul and a mean). Backward: 2 (input - target), in tensor ops."""
    graph_inputs = (0, 1)

    @staticmethod
    def forward(ctx, x, t, reduction):
        d = x._data - t._data
        ctx.save_for_backward(x, t)
        ctx.reduction, ctx.count = reduction, d.size
        return _reduced(d * d, reduction)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        gx = g * (x - t) * (2.0 * _mean_scale(ctx.reduction, ctx.count))
        nx, nt = ctx.needs_input_grad[:2]
        return (gx if nx else None), (-gx if nt else None), None


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_same_size(input, target, "l1_loss")
    return _reduce((input - target).abs(), reduction)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_same_size(input, target, "smooth_l1_loss")
    if beta < 0:
        raise ValueError(f"smooth_l1_loss does not support negative values for beta (got {beta})")
    if beta == 0.0:
        return l1_loss(input, target, reduction=reduction)
    if not dispatch.watching():
        _check_reduction(reduction)
        return named(Huber.apply(input, target, beta, 1.0 / beta, reduction), Huber,
                     "SmoothL1Loss")
    d = (input - target).abs()
    return _reduce(where(d < beta, d * d * (0.5 / beta), d - 0.5 * beta), reduction)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    _check_same_size(input, target, "huber_loss")
    if weight is None and not dispatch.watching():
        _check_reduction(reduction)
        return named(Huber.apply(input, target, delta, 1.0, reduction), Huber, "HuberLoss")
    d = (input - target).abs()
    loss = where(d < delta, d * d * 0.5, (d - 0.5 * delta) * delta)
    return _reduce(loss if weight is None else loss * weight, reduction)


class Huber(Function):
    """scale * huber_delta(input - target), reduced, in one op (smooth L1 is the Huber loss
    over beta: an RL script pays it once per action); its node is PyTorch's SmoothL1Loss or
    HuberLoss, as called. Observers see the composed form.
    Backward: scale * clamp(input - target, -delta, delta), in tensor ops."""
    graph_inputs = (0, 1)

    @staticmethod
    def forward(ctx, x, t, delta, scale, reduction):
        d = x._data - t._data
        xp = array_module(d)
        a = xp.abs(d)
        loss = xp.where(a < delta, (0.5 * scale) * d * d, (scale * delta) * (a - 0.5 * delta))
        ctx.save_for_backward(x, t)
        ctx.delta, ctx.scale, ctx.reduction, ctx.count = delta, scale, reduction, d.size
        return _reduced(loss.astype(d.dtype, copy=False), reduction)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        scale = ctx.scale * _mean_scale(ctx.reduction, ctx.count)
        gx = g * (x - t).clamp(-ctx.delta, ctx.delta) * scale
        nx, nt = ctx.needs_input_grad[:2]
        return (gx if nx else None), (-gx if nt else None), None, None, None


# ---- binary ----------------------------------------------------------------------------
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_same_size(input, target, "binary_cross_entropy")
    d = input._data
    if d.size and can_check(d) and (float(d.min()) < 0 or float(d.max()) > 1):
        raise RuntimeError("binary_cross_entropy: all elements of input should be between 0 "
                           "and 1 (did you mean binary_cross_entropy_with_logits?)")
    _check_reduction(reduction)
    if _needs_grad(weight):     # PyTorch refuses this gradient; composed, it is there
        return _reduce(BinaryCrossEntropy.apply(input, target) * weight, reduction)
    return BinaryCrossEntropy.apply(input, target, weight, reduction)


class BinaryCrossEntropy(Function):
    """-weight (y log x + (1 - y) log(1 - x)), reduced, with both logs clamped at -100 and the
    input gradient weight (x - y) / max(x (1 - x), 1e-12), as in PyTorch: finite loss and
    gradient at x = 0 and 1 (a composite's log would give inf * 0 = nan there)."""
    graph_inputs = (0, 1)     # the weight is not an input of PyTorch's node

    @staticmethod
    def forward(ctx, input, target, weight=None, reduction="none"):
        x, y = input._data, target._data
        xp = array_module(x)
        with np.errstate(divide="ignore"):  # log(0) = -inf, clamped next (CuPy never warns)
            log_p = xp.maximum(xp.log(x), -100)
            log_q = xp.maximum(xp.log(1 - x), -100)
        loss = (y - 1) * log_q - y * log_p
        if weight is not None:
            loss = loss * weight._data
        ctx.save_for_backward(input, target, weight)
        ctx.reduction = reduction
        return _reduced(loss, reduction)

    @staticmethod
    def backward(ctx, g):
        input, target, weight = ctx.saved_tensors
        g = g * _mean_scale(ctx.reduction, input.numel())
        if weight is not None:
            g = g * weight
        gx = gy = None
        if ctx.needs_input_grad[0]:
            gx = g * (input - target) / (input * (1 - input)).clamp(min=1e-12)
        if ctx.needs_input_grad[1]:
            # unclamped, as in PyTorch: +-inf at x = 0 or 1
            gy = g * ((1 - input).log() - input.log())
        return gx, gy, None, None


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction="mean", pos_weight=None):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_same_size(input, target, "binary_cross_entropy_with_logits")
    if not (dispatch.watching() or _needs_grad(weight) or _needs_grad(pos_weight)):
        _check_reduction(reduction)
        return BinaryCrossEntropyWithLogits.apply(input, target, weight, pos_weight, reduction)
    # log(1 + exp(-x)) as softplus(-x) without its linear cut-off: exact for large |x|, and
    # its gradient is sigmoid (a relu/abs split would have the wrong subgradient at x = 0)
    sp = _softplus_exact(-input)
    if pos_weight is None:
        loss = (1 - target) * input + sp
    else:
        loss = (1 - target) * input + (1 + (pos_weight - 1) * target) * sp
    return _reduce(loss if weight is None else loss * weight, reduction)


class BinaryCrossEntropyWithLogits(Function):
    """weight ((1 - y) x + (1 + (pos_weight - 1) y) log(1 + exp(-x))), reduced, in one op
    (PyTorch's node; composed it was seven). log(1 + exp(-x)) is computed without overflow
    for any x. Backward in tensor ops: the input gradient is
    weight (l sigmoid(x) - pos_weight y) with l = 1 + (pos_weight - 1) y, the target's
    weight (pos_weight log(1 + exp(-x)) - log(1 + exp(x))), as PyTorch's."""
    graph_inputs = (0, 1)     # weight and pos_weight are not inputs of PyTorch's node

    @staticmethod
    def forward(ctx, input, target, weight, pos_weight, reduction):
        x, y = input._data, target._data
        xp = array_module(x)
        softplus_neg = xp.maximum(-x, 0) + xp.log1p(xp.exp(-xp.abs(x)))   # log(1 + exp(-x))
        if pos_weight is None:
            loss = (1 - y) * x + softplus_neg
        else:
            loss = (1 - y) * x + (1 + (pos_weight._data - 1) * y) * softplus_neg
        if weight is not None:
            loss = loss * weight._data
        ctx.save_for_backward(input, target, weight, pos_weight)
        ctx.reduction = reduction
        return _reduced(loss, reduction)

    @staticmethod
    def backward(ctx, g):
        input, target, weight, pos_weight = ctx.saved_tensors
        g = g * _mean_scale(ctx.reduction, input.numel())
        if weight is not None:
            g = g * weight
        gx = gy = None
        if ctx.needs_input_grad[0]:
            s = input.sigmoid()
            gx = g * (s - target) if pos_weight is None else \
                g * ((1 + (pos_weight - 1) * target) * s - pos_weight * target)
        if ctx.needs_input_grad[1]:
            gy = -g * input if pos_weight is None else \
                g * (pos_weight * _softplus_exact(-input) - _softplus_exact(input))
        return gx, gy, None, None, None


def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """log(1 + exp(-y x)) for labels y in {1, -1}."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_same_size(input, target, "soft_margin_loss")
    if not (dispatch.watching() or target.requires_grad):    # PyTorch gives target none
        _check_reduction(reduction)
        return SoftMarginLoss.apply(input, target, reduction)
    return _reduce(_softplus_exact(-target * input), reduction)


class SoftMarginLoss(Function):
    """log(1 + exp(-y x)), reduced, in one op (PyTorch's node), without overflow for any
    y x. Backward: -y sigmoid(-y x), in tensor ops."""
    graph_inputs = (0,)       # the target is not an input of PyTorch's node

    @staticmethod
    def forward(ctx, input, target, reduction):
        z = -target._data * input._data
        xp = array_module(z)
        ctx.save_for_backward(input, target)
        ctx.reduction = reduction
        return _reduced(xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z))), reduction)

    @staticmethod
    def backward(ctx, g):
        input, target = ctx.saved_tensors
        g = g * _mean_scale(ctx.reduction, input.numel())
        return -g * target * (-target * input).sigmoid(), None, None


def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None,
                                reduction="mean"):
    """Binary cross entropy with logits per class, averaged over the classes of each sample."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_same_size(input, target, "multilabel_soft_margin_loss")
    loss = target * _softplus_exact(-input) + (1 - target) * _softplus_exact(input)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss.sum(-1) / input.shape[-1], reduction)


def _softplus_exact(x):
    """log(1 + exp(x)) for every x, with gradient sigmoid(x) everywhere (no cut-off)."""
    return softplus(x, 1.0, math.inf)


# ---- ranking and embedding -------------------------------------------------------------
def margin_ranking_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None,
                        reduction="mean"):
    """max(0, -y (x1 - x2) + margin) for labels y in {1, -1}."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if not (input1.ndim == input2.ndim == target.ndim):
        raise RuntimeError(f"margin_ranking_loss : All input tensors should have same "
                           f"dimension but got sizes: input1: {list(input1.shape)}, input2: "
                           f"{list(input2.shape)}, target: {list(target.shape)} ")
    return _reduce((-target * (input1 - input2) + margin).clamp_min(0), reduction)


def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None,
                         reduction="mean"):
    """x where y = 1, max(0, margin - x) where y = -1 (both terms where y is neither)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    hinge = where(target != 1, (margin - input).clamp_min(0), 0.0)
    return _reduce(hinge + where(target != -1, input, 0.0), reduction)


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False,
                        size_average=None, reduce=None, reduction="mean"):
    """max(0, margin + d(a, p) - d(a, n)), d the p-norm pairwise distance; with `swap`, d(a, n)
    is the smaller of d(a, n) and d(p, n)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if not anchor.ndim == positive.ndim == negative.ndim:
        raise RuntimeError(f"The anchor, positive, and negative tensors are expected to have "
                           f"the same number of dimensions, but got: anchor {anchor.ndim}D, "
                           f"positive {positive.ndim}D, and negative {negative.ndim}D inputs")
    if margin <= 0:
        raise ValueError(f"triplet_margin_loss: expected margin to be greater than 0, got "
                         f"{margin} instead")
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = d_neg.minimum(pairwise_distance(positive, negative, p, eps))
    return _reduce((margin + d_pos - d_neg).clamp_min(0), reduction)


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None,
                      reduce=None, reduction="mean"):
    """Per sample: sum over classes i != y of max(0, margin - x[y] + x[i])^p, over C
    (times weight[y])."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if p not in (1, 2):
        raise ValueError(f"only p == 1 and p == 2 supported, got {p}")
    if input.ndim not in (1, 2):
        raise RuntimeError(f"multi_margin_loss: expected input of shape (C,) or (N, C), got "
                           f"{list(input.shape)}")
    rows = input if input.ndim == 2 else input.unsqueeze(0)
    idx = target.reshape(-1, 1)
    _check_range(idx._data, rows.shape[1])
    picked = rows.gather(1, idx)
    z = margin - picked + rows
    margins = where(z > 0, z, 0.0)  # no gradient at z = 0 exactly (PyTorch's kernel)
    if p == 2:
        margins = margins * margins
    if weight is not None:
        margins = margins * weight[target.reshape(-1)].unsqueeze(1)
    # the target class itself contributes nothing
    not_target = Tensor._make(array_module(idx._data).arange(rows.shape[1])[None, :]
                              != idx._data)
    loss = where(not_target, margins, 0.0).sum(1) / rows.shape[1]
    return _reduce(loss if input.ndim == 2 else loss.squeeze(0), reduction)


# ---- count and likelihood losses ---------------------------------------------------------
def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8,
                     reduce=None, reduction="mean"):
    """Poisson negative log-likelihood of `target` counts with rate exp(input) (log_input) or
    input; `full` adds Stirling's term for targets above 1."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if log_input:
        loss = input.exp() - target * input
    else:
        loss = input - target * (input + eps).log()
    if full:
        safe = where(target > 1, target, 1.0)  # Stirling's term only where target > 1
        stirling = safe * safe.log() - safe + 0.5 * (2 * math.pi * safe).log()
        loss = loss + where(target > 1, stirling, 0.0)
    return _reduce(loss, reduction)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """0.5 (log var + (input - target)^2 / var) with var clamped below at eps for the value
    but not for the gradient (as in PyTorch); var may match input or miss (or be 1 in) one
    dimension (homoscedastic)."""
    if isinstance(var, (int, float)):
        if var < 0:
            raise ValueError("var has negative entry/entries")
        var = input.detach() * 0 + float(var)
    elif can_check(var._data) and bool((var < 0).any()):
        raise ValueError("var has negative entry/entries")
    if tuple(var.shape) != tuple(input.shape):
        if tuple(input.shape[:-1]) == tuple(var.shape):
            var = var.unsqueeze(-1)
        elif not (input.ndim == var.ndim and sum(
                y for x, y in zip(input.shape, var.shape) if x != y) == 1):
            raise ValueError(f"var is of incorrect size: {list(var.shape)} for input of size "
                             f"{list(input.shape)}")
    if reduction not in _REDUCTIONS:
        raise ValueError(reduction + " is not valid")
    var = var + (var.clamp(min=eps) - var).detach()
    loss = 0.5 * (var.log() + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


# ---- distributions ---------------------------------------------------------------------
def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """KL(target || exp(input)) pointwise; `input` holds log-probabilities."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, ("batchmean",))
    if log_target:
        loss = target.exp() * (target - input)
    else:
        # target * log(target) with 0 * log(0) = 0 (xlogy)
        safe = where(target > 0, target, 1.0)
        loss = where(target > 0, target * safe.log(), 0.0) - target * input
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)


def cosine_embedding_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None,
                          reduction="mean"):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    eps = 1e-12
    dim = input1.ndim - 1
    prod = (input1 * input2).sum(dim)
    mag = ((input1 * input1).sum(dim) + eps) * ((input2 * input2).sum(dim) + eps)
    cos = prod / mag.sqrt()
    loss = where(target == 1, 1 - cos, 0.0) + where(target == -1, (cos - margin).clamp_min(0),
                                                     0.0)
    return _reduce(loss, reduction)


# ---- classification --------------------------------------------------------------------
def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """-input[i, target[i]] (weighted); mean divides by the summed weights of kept targets."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    _check_class_target(input, target, "nll_loss")
    c = input.shape[0] if input.ndim == 1 else input.shape[1]
    if weight is not None and tuple(weight.shape) != (c,):
        raise RuntimeError(f"nll_loss: weight tensor should be defined either for all {c} "
                           f"classes or no classes but got weight tensor of shape: "
                           f"{list(weight.shape)}")
    # one Function unless an observer must see the primitives (or weight wants a gradient,
    # which only the composed form gives)
    if not dispatch.watching() and (weight is None or not weight.requires_grad):
        return NLLLoss.apply(input, target, weight, ignore_index, reduction)
    valid = target != ignore_index
    safe = where(valid, target, 0)
    _check_range(safe._data, c)
    idx = safe.unsqueeze(0 if input.ndim == 1 else 1)
    picked = -input.gather(0 if input.ndim == 1 else 1, idx).squeeze(0 if input.ndim == 1
                                                                      else 1)
    w = valid.to(input.dtype)
    if weight is not None:
        w = w * weight[safe]
    loss = picked * w
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    # ignored targets get gradient 0 even when every target is ignored (then the mean is nan,
    # 0 / 0, as in PyTorch); a kept target of weight 0 among only such gets 0 / 0 = nan
    coef = where(valid, w / w.sum(), 0.0)
    return (picked * coef).sum() + where(valid.any(), 0.0, math.nan)


class _NLLRows:
    """What the fused NLL loss keeps: over the rows (N*d..., C) of the input, the target class
    of each row (0 where ignored), which rows count, and each row's coefficient, so that
    loss = sum over rows of -coef * input[row, target] (per row for reduction='none')."""
    __slots__ = ("rows", "target", "valid", "coef", "layout", "out_shape")


class NLLLoss(Function):
    node_name = "NllLoss"
    graph_inputs = (0,)
    """nll_loss in one pass over the picked entries (the composed form took a dozen ops to
    gather one value per row). `_NLLScatter` is its gradient and `_NLLPick` the gradient of
    that: each is linear, and each is the other's derivative, so every order is available."""

    @staticmethod
    def forward(ctx, input, target, weight, ignore_index, reduction):
        x = input._data
        xp = array_module(x)
        c = x.shape[0] if x.ndim == 1 else x.shape[1]
        t = target._data.reshape(-1)
        st = _NLLRows()
        st.valid = t != ignore_index
        st.target = xp.where(st.valid, t, 0)
        _check_range(st.target, c)
        st.rows = xp.arange(t.size)
        st.layout, st.out_shape = x.shape, tuple(target.shape) if reduction == "none" else None
        w_t = st.valid.astype(x.dtype) if weight is None else \
            xp.where(st.valid, weight._data[st.target], 0).astype(x.dtype, copy=False)
        empty = None
        if reduction == "mean":
            # over the summed weights of the kept rows; ignored rows get coefficient 0 even
            # when nothing is kept (the loss is then nan, 0 / 0, as in PyTorch)
            denom = w_t.sum()
            with np.errstate(divide="ignore", invalid="ignore"):
                st.coef = xp.where(st.valid, w_t / denom, 0).astype(x.dtype, copy=False)
            empty = denom == 0
        else:
            st.coef = w_t
        ctx.state = st
        out = _pick(x, st)
        if empty is not None:
            out = xp.where(empty, xp.nan, out).astype(x.dtype, copy=False)
        return Tensor._make(out)

    @staticmethod
    def backward(ctx, g):
        gx = _NLLScatter.apply(g, ctx.state) if ctx.needs_input_grad[0] else None
        return gx, None, None, None, None


class _NLLPick(Function):
    """x -> sum over rows of -coef * x[row, target] (per row for reduction='none')."""

    @staticmethod
    def forward(ctx, x, st):
        ctx.state = st
        return Tensor._make(_pick(x._data, st))

    @staticmethod
    def backward(ctx, g):
        return _NLLScatter.apply(g, ctx.state), None


class _NLLScatter(Function):
    """g -> an input-shaped gradient, -coef * g at each row's target and 0 elsewhere."""

    @staticmethod
    def forward(ctx, g, st):
        ctx.state = st
        gd = g._data
        xp = array_module(gd)
        s = gd if st.out_shape is None else gd.reshape(-1)
        c = st.layout[0] if len(st.layout) == 1 else st.layout[1]
        gx = xp.zeros((st.rows.size, c), dtype=gd.dtype)
        gx[st.rows, st.target] = -(st.coef * s)
        return Tensor._make(_from_rows(gx, st.layout))

    @staticmethod
    def backward(ctx, gg):
        return _NLLPick.apply(gg, ctx.state), None


def _pick(x, st):
    """sum over rows of -coef * x[row, target] (per row, in the target's shape, when
    `st.out_shape` is set: reduction='none')."""
    xp = array_module(x)
    # ignored rows are left out, not multiplied by 0 (their entry may be -inf)
    picked = xp.where(st.valid, _to_rows(x, x.ndim)[st.rows, st.target], 0)
    per_row = (-st.coef * picked).astype(x.dtype, copy=False)
    return per_row.sum() if st.out_shape is None else per_row.reshape(st.out_shape)


def _check_class_target(input, target, name):
    if target._data.dtype.kind not in "iu":
        raise RuntimeError(f"{name}: expected target of class indices (int64) with shape "
                           f"{_expected_target(input)}, got dtype {target.dtype} and shape "
                           f"{list(target.shape)}")
    want = [] if input.ndim == 1 else [input.shape[0]] + list(input.shape[2:])
    if list(target.shape) != want:
        raise ValueError(f"{name}: expected target of shape {want} for input of shape "
                         f"{list(input.shape)} (N, C, d1, ...), got {list(target.shape)}")


def _expected_target(input):
    return [] if input.ndim == 1 else [input.shape[0]] + list(input.shape[2:])


def _check_range(t, c):
    """Class indices in [0, c); on a GPU in debug mode only (reading them waits for it)."""
    if t.size and can_check(t) and (int(t.min()) < 0 or int(t.max()) >= c):
        bad = int(t.max()) if int(t.max()) >= c else int(t.min())
        raise IndexError(f"Target {bad} is out of bounds: class indices must be in [0, {c}) "
                         f"(or equal to ignore_index)")


class _CrossEntropyState:
    """What the fused cross entropy keeps for its gradient: all arrays over (rows, classes)."""
    __slots__ = ("p", "rows", "target", "valid", "w", "w_t", "coef", "scale", "eps", "probs",
                 "layout", "lsm")


def _to_rows(a, ndim):
    """(N, C, d...) -> (N*d..., C); (C,) -> (1, C)."""
    if ndim == 1:
        return a[None]
    if ndim == 2:
        return a
    return array_module(a).moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def _from_rows(a, shape):
    if len(shape) == 1:
        return a[0]
    if len(shape) == 2:
        return a
    moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
    return array_module(a).moveaxis(a.reshape(moved), -1, 1)


class CrossEntropy(Function):
    node_name = "NllLoss"         # the last node of PyTorch's log_softmax + nll_loss
    graph_inputs = (0,)
    """Fused log-softmax + NLL with class weights, ignore_index and label smoothing, for class
    indices or class probabilities. The gradient is s * (A * softmax - a) per row, with `a`
    the per-class coefficients and A their sum, so backward reuses the softmax of forward."""

    @staticmethod
    def forward(ctx, input, target, weight, ignore_index, reduction, label_smoothing):
        x = input._data
        xp = array_module(x)
        c = x.shape[0] if x.ndim == 1 else x.shape[1]
        z = _to_rows(x, x.ndim)
        fused = fused_loss.kernels_for(xp)
        if fused is not None and cuda_kernels.fusable(z):   # on a GPU: one pass per row
            lsm = fused.softmax(z, log=True)
            e = xp.exp(lsm)  # the softmax, kept for backward
        else:
            z = z - z.max(axis=1, keepdims=True)
            e = xp.exp(z)
            se = e.sum(axis=1, keepdims=True)
            lsm = z - xp.log(se)
            e /= se  # the softmax, kept for backward
        st = _CrossEntropyState()
        st.p, st.layout, st.eps = e, x.shape, label_smoothing
        w = None if weight is None else weight._data
        st.w = w
        eps = label_smoothing
        st.probs = target._data.dtype.kind == "f"
        if st.probs:
            t = _to_rows(target._data, x.ndim)
            if eps:
                t = t * (1 - eps) + eps / c
            a = t if w is None else t * w
            loss = -(a * lsm).sum(axis=1)
            st.coef = a
            st.lsm = lsm if target.requires_grad else None
            denom = lsm.shape[0]
        else:
            t = target._data.reshape(-1)
            valid = t != ignore_index
            tc = xp.where(valid, t, 0)
            _check_range(tc, c)
            rows = xp.arange(tc.size)
            w_t = valid.astype(x.dtype) if w is None else w[tc] * valid
            loss = -lsm[rows, tc] * w_t * (1 - eps)
            if eps:
                smooth = -(lsm.sum(axis=1) if w is None else (lsm * w).sum(axis=1))
                loss = loss + smooth * valid * (eps / c)
            st.rows, st.target, st.valid, st.w_t = rows, tc, valid, w_t
            denom = w_t.sum()
        st.scale = None
        if reduction == "none":
            out = loss.reshape(x.shape[:1] + x.shape[2:] if x.ndim > 1 else ())
        elif reduction == "sum":
            out = loss.sum()
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                # no weight to divide by: nan, as PyTorch's 0 / 0 of the NLL part gives
                out = xp.where(denom == 0, xp.nan, loss.sum() / denom)
                st.scale = 1.0 / denom
        ctx.state, ctx.reduction = st, reduction
        ctx.save_for_backward(input, target if st.probs else None)
        return Tensor._make(xp.asarray(out, dtype=x.dtype))

    @staticmethod
    def backward(ctx, g):
        input, target = ctx.saved_tensors
        gx = CrossEntropyGrad.apply(g, input, ctx.state, ctx.reduction) \
            if ctx.needs_input_grad[0] else None
        gt = None
        if ctx.needs_input_grad[1]:
            gt = _prob_target_grad(g, input, ctx.state, ctx.reduction)
        return gx, gt, None, None, None, None


def _row_scale(g, st, reduction):
    """The per-row factor s of the gradient, as a raw (rows, 1) array or a scalar."""
    gd = g._data
    if reduction == "none":
        return gd.reshape(-1, 1)
    return gd * st.scale if st.scale is not None else gd


def _grad_rows(st, s):
    """s * (A p - a) over rows, from the saved softmax."""
    xp = array_module(st.p)
    if st.probs:
        a = st.coef
        return s * (a.sum(axis=1, keepdims=True) * st.p - a)
    eps, c = st.eps, st.p.shape[1]
    s_rows = xp.broadcast_to(xp.asarray(s, dtype=st.p.dtype).reshape(-1, 1),
                             (st.p.shape[0], 1))
    # ignored rows get 0 even when the mean's scale is 1 / 0 (every target ignored)
    s_rows = xp.where(st.valid[:, None], s_rows, 0)
    total = st.w_t * (1 - eps)
    if eps:
        wsum = c if st.w is None else st.w.sum()
        total = total + st.valid * (eps / c) * wsum
    gr = st.p * (s_rows * total[:, None])
    gr[st.rows, st.target] -= s_rows[:, 0] * st.w_t * (1 - eps)
    if eps:
        wc = 1.0 if st.w is None else st.w[None, :]
        gr -= s_rows * st.valid[:, None] * (eps / c) * wc
    return gr


def _prob_target_grad(g, input, st, reduction):
    if st.lsm is None:
        raise RuntimeError("cross_entropy: target requires grad but it did not when the loss "
                           "was computed")
    s = _row_scale(g, st, reduction)
    eps = st.eps
    wc = 1.0 if st.w is None else st.w
    return Tensor._make(_from_rows(-(s * (1 - eps)) * wc * st.lsm, st.layout))


class CrossEntropyGrad(Function):
    """The gradient of `CrossEntropy` w.r.t. its logits, as a Function so that it too can be
    differentiated (double backward)."""

    @staticmethod
    def forward(ctx, g, input, st, reduction):
        ctx.state, ctx.reduction = st, reduction
        ctx.save_for_backward(g, input)
        gr = _grad_rows(st, _row_scale(g, st, reduction))
        return Tensor._make(_from_rows(gr, st.layout).astype(input._data.dtype, copy=False))

    @staticmethod
    def backward(ctx, gg):
        g, input = ctx.saved_tensors
        st, reduction = ctx.state, ctx.reduction
        xp = array_module(st.p)
        ggr = _rows_tensor(gg, len(st.layout))
        p = _rows_tensor(input, len(st.layout)).softmax(1)
        # (A p - a): the gradient per unit of the row scale s
        unit = Tensor._make(_grad_rows(st, xp.ones((st.p.shape[0], 1), st.p.dtype)))
        gx = gg_input = None
        if ctx.needs_input_grad[1]:
            a_sum = Tensor._make(_row_totals(st))
            s = _scale_tensor(g, st, reduction)
            u = ggr * p
            gx_rows = s * a_sum * (u - p * u.sum(1, keepdim=True))
            gg_input = _rows_back(gx_rows, st.layout)
        if ctx.needs_input_grad[0]:
            per_row = (ggr * unit).sum(1)
            if reduction == "none":
                gx = per_row.reshape(g.shape)
            else:
                gx = per_row.sum() * (st.scale if st.scale is not None else 1.0)
        return gx, gg_input, None, None


def _row_totals(st):
    """A per row: the sum of the class coefficients, shape (rows, 1)."""
    if st.probs:
        return st.coef.sum(axis=1, keepdims=True)
    eps, c = st.eps, st.p.shape[1]
    total = st.w_t * (1 - eps)
    if eps:
        total = total + st.valid * (eps / c) * (c if st.w is None else st.w.sum())
    return total[:, None]


def _scale_tensor(g, st, reduction):
    if reduction == "none":
        return g.reshape(-1, 1)
    return g * st.scale if st.scale is not None else g


def _rows_tensor(t, ndim):
    if ndim == 1:
        return t.unsqueeze(0)
    if ndim == 2:
        return t
    return t.movedim(1, -1).reshape(-1, t.shape[1])


def _rows_back(t, shape):
    if len(shape) == 1:
        return t.squeeze(0)
    if len(shape) == 2:
        return t
    moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
    return t.reshape(moved).movedim(-1, 1)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0):
    """Cross entropy between logits `input` (N, C, d...) or (C,) and `target`: class indices
    (N, d...) or class probabilities (same shape as input)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    if input.ndim == 0:
        raise ValueError("cross_entropy: input must have at least one dimension (classes)")
    c = input.shape[0] if input.ndim == 1 else input.shape[1]
    if weight is not None and tuple(weight.shape) != (c,):
        raise RuntimeError(f"cross_entropy: weight must have shape [{c}] (one per class), got "
                           f"{list(weight.shape)}")
    if target._data.dtype.kind == "f":
        if tuple(target.shape) != tuple(input.shape):
            raise ValueError(f"cross_entropy: class-probability target must have the input's "
                             f"shape {list(input.shape)}, got {list(target.shape)}")
    else:
        _check_class_target(input, target, "cross_entropy")
    if weight is not None and weight._data.dtype != input._data.dtype:
        weight = weight.to(input.dtype)
    fused = None if hasattr(input, "_placements") else fused_loss.cross_entropy(
        input, target, weight, ignore_index, reduction, label_smoothing,  # GPU: one kernel
        lambda i, t, w: CrossEntropy.apply(i, t, w, ignore_index, reduction, 0.0))
    if fused is not None:                   # (a DTensor goes to loss_parallel's op)
        _check_class_range(target._data, c, ignore_index)
        return fused
    return CrossEntropy.apply(input, target, weight, ignore_index, reduction, label_smoothing)


def _check_class_range(t, c, ignore_index):
    """`_check_range` of class targets, ignored ones left out (on a GPU in debug mode only)."""
    if can_check(t):
        _check_range(array_module(t).where(t != ignore_index, t, 0), c)


def cross_entropy_composed(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """log_softmax followed by nll_loss (the unfused reference the benchmark compares with)."""
    return nll_loss(log_softmax(input, 1 if input.ndim > 1 else 0), target, weight,
                    ignore_index=ignore_index, reduction=reduction)
