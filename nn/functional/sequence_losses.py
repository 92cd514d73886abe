"""Losses over label sets and sequences: multilabel_margin_loss,
triplet_margin_with_distance_loss and ctc_loss.

The first two are composed from tensor ops. CTC is one Function: the forward (alpha) and
backward (beta) recursions of Graves et al. run in log space over the extended target
(blank, l1, blank, l2, ..., blank), vectorised over the batch and looped over time. Its
gradient is PyTorch's: d/d log_probs = exp(log_probs) - exp(log(sum of alpha * beta over the
positions holding that class) + nll - log_probs), which is the true gradient with respect to
the logits once it passes back through log_softmax (as PyTorch's is); like PyTorch's, it is
not itself differentiable.
"""
import numpy as np

from ...autograd import Function, once_differentiable
from ...tensor import Tensor
from ...tensor.backend import array_module, to_host
from .activation import pairwise_distance
from .loss import _check_reduction, _legacy_reduction, _reduce

__all__ = ["ctc_loss", "multilabel_margin_loss", "triplet_margin_with_distance_loss"]


def multilabel_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """Per sample: sum over its target classes j (the indices before the first -1) and its
    other classes i of max(0, 1 - (x[j] - x[i])), over the number of classes."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if input.ndim not in (0, 1, 2) or tuple(target.shape) != tuple(input.shape):
        raise RuntimeError(f"multilabel_margin_loss: expected input of shape (C,) or (N, C) and "
                           f"a target of the same shape, got {list(input.shape)} and "
                           f"{list(target.shape)}")
    rows = input.reshape(1 if input.ndim < 2 else input.shape[0], -1)
    n, c = rows.shape
    labels = to_host(target._data).reshape(n, c).astype(np.int64)
    counts = np.zeros((n, c))           # how often each class is listed as a target
    for r in range(n):
        for j in labels[r]:
            if j < 0:
                break
            if j >= c:
                raise RuntimeError(f"multilabel_margin_loss: target index {j} is out of range "
                                   f"for {c} classes")
            counts[r, j] += 1
    xp = array_module(input._data)
    counts_t = Tensor._make(xp.asarray(counts, dtype=input._data.dtype))
    others = Tensor._make(xp.asarray(counts == 0, dtype=input._data.dtype))
    hinge = (1 - rows.unsqueeze(2) + rows.unsqueeze(1)).relu()       # [r, j, i]
    loss = (hinge * counts_t.unsqueeze(2) * others.unsqueeze(1)).sum((1, 2)) / c
    if input.ndim < 2:
        loss = loss.reshape(())
    return _reduce(loss, reduction)


def triplet_margin_with_distance_loss(anchor, positive, negative, *, distance_function=None,
                                      margin=1.0, swap=False, reduction="mean"):
    """max(0, margin + d(a, p) - d(a, n)) for any distance d (default: the pairwise L2
    distance); with `swap`, d(a, n) is the smaller of d(a, n) and d(p, n)."""
    _check_reduction(reduction)
    if margin <= 0:
        raise ValueError(f"triplet_margin_with_distance_loss: expected margin to be greater "
                         f"than 0, got {margin} instead")
    if not anchor.ndim == positive.ndim == negative.ndim:
        raise RuntimeError(f"The anchor, positive, and negative tensors are expected to have "
                           f"the same number of dimensions, but got: anchor {anchor.ndim}D, "
                           f"positive {positive.ndim}D, and negative {negative.ndim}D inputs")
    distance = distance_function if distance_function is not None else pairwise_distance
    d_pos, d_neg = distance(anchor, positive), distance(anchor, negative)
    if swap:
        d_neg = d_neg.minimum(distance(positive, negative))
    return _reduce((margin + d_pos - d_neg).clamp(min=0), reduction)


# ---- CTC -------------------------------------------------------------------------------------
def _logsumexp(xp, *terms):
    stacked = xp.stack(terms)
    top = stacked.max(0)
    safe = xp.where(xp.isfinite(top), top, 0)
    with np.errstate(divide="ignore"):
        return safe + xp.log(xp.exp(stacked - safe).sum(0))


def _lengths(v, name, n):
    arr = to_host(v._data) if isinstance(v, Tensor) else np.asarray(v)
    arr = arr.reshape(-1).astype(np.int64)
    if arr.shape != (n,):
        raise RuntimeError(f"ctc_loss: {name} must have one entry per batch element ({n}), "
                           f"got {list(arr.shape)}")
    return arr


class _CTC(Function):
    """Per-sample negative log-likelihoods (N,) of (T, N, C) log-probabilities."""

    @staticmethod
    def forward(ctx, log_probs, ext, in_len, ext_len, blank, zero_infinity):
        lp = log_probs._data
        xp = array_module(lp)
        t_max, n, _ = lp.shape
        s_max = ext.shape[1]
        rows = xp.arange(n)[:, None]
        ext_d = xp.asarray(ext)
        valid = xp.asarray(np.arange(s_max)[None, :] < ext_len[:, None])
        # a label may be reached from two back only if it is not a blank or a repeat
        skip = np.zeros(ext.shape, bool)
        skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
        skip = xp.asarray(skip)
        neg_inf = xp.asarray(-np.inf, lp.dtype)
        alpha = xp.full((t_max, n, s_max), -np.inf, lp.dtype)
        emit = lp[0][rows, ext_d]
        alpha[0, :, :2] = xp.where(valid[:, :2], emit[:, :2], neg_inf)
        for t in range(1, t_max):
            prev = alpha[t - 1]
            one = xp.concatenate([xp.full((n, 1), -np.inf, lp.dtype), prev[:, :-1]], 1)
            two = xp.concatenate([xp.full((n, 2), -np.inf, lp.dtype), prev[:, :-2]], 1)
            two = xp.where(skip, two, neg_inf)
            alpha[t] = xp.where(valid, lp[t][rows, ext_d] + _logsumexp(xp, prev, one, two),
                                neg_inf)
        last_t = xp.asarray(in_len - 1)
        end = alpha[last_t, xp.arange(n)]                                  # (N, S)
        last = xp.asarray(ext_len - 1)
        final = end[xp.arange(n), last]
        before = xp.where(last > 0, end[xp.arange(n), xp.maximum(last - 1, 0)], neg_inf)
        nll = -_logsumexp(xp, final, before)
        infinite = ~xp.isfinite(nll)
        if zero_infinity:
            nll = xp.where(infinite, 0, nll)
        ctx.save_for_backward(log_probs)
        ctx.state = (alpha, ext, ext_d, in_len, ext_len, skip, valid, nll, infinite,
                     zero_infinity)
        return Tensor._make(nll)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (log_probs,) = ctx.saved_tensors
        alpha, ext, ext_d, in_len, ext_len, skip, valid, nll, infinite, zero_inf = ctx.state
        lp = log_probs._data
        xp = array_module(lp)
        t_max, n, c = lp.shape
        s_max = ext.shape[1]
        rows = xp.arange(n)[:, None]
        neg_inf = xp.asarray(-np.inf, lp.dtype)
        # skip_from[s]: position s + 2 may be left back to s
        skip_from = xp.concatenate([skip[:, 2:], xp.zeros((n, 2), bool)], 1)
        beta = xp.full((t_max, n, s_max), -np.inf, lp.dtype)
        in_len_d, ext_len_d = xp.asarray(in_len), xp.asarray(ext_len)
        s_idx = xp.arange(s_max)[None, :]
        for t in range(t_max - 1, -1, -1):
            emit = lp[t][rows, ext_d]
            at_end = (in_len_d - 1 == t)[:, None]
            start = xp.where((s_idx >= ext_len_d[:, None] - 2) & valid, emit, neg_inf)
            if t + 1 < t_max:
                nxt = beta[t + 1]
                one = xp.concatenate([nxt[:, 1:], xp.full((n, 1), -np.inf, lp.dtype)], 1)
                two = xp.concatenate([nxt[:, 2:], xp.full((n, 2), -np.inf, lp.dtype)], 1)
                two = xp.where(skip_from, two, neg_inf)
                inner = xp.where(valid, emit + _logsumexp(xp, nxt, one, two), neg_inf)
            else:
                inner = xp.full((n, s_max), -np.inf, lp.dtype)
            beta[t] = xp.where(at_end, start, inner)
        # log of sum over positions holding class k of alpha * beta, per (t, n, k)
        ab = alpha + beta
        top = ab.max(2, keepdims=True)
        top = xp.where(xp.isfinite(top), top, 0)
        weights = xp.exp(ab - top)
        occupancy = xp.zeros((t_max, n, c), lp.dtype)
        for s in range(s_max):
            occupancy[:, xp.arange(n), ext_d[:, s]] += weights[:, :, s]
        with np.errstate(divide="ignore"):
            lcab = xp.log(occupancy) + top
        grad = xp.exp(lp) - xp.exp(lcab + nll[None, :, None] - lp)
        live = xp.asarray(np.arange(t_max)[:, None] < in_len[None, :])[:, :, None]
        grad = xp.where(live, grad, 0)
        if zero_inf:
            grad = xp.where(infinite[None, :, None], 0, grad)
        grad = grad * g._data[None, :, None]
        return Tensor._make(grad.astype(lp.dtype)), None, None, None, None, None


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean",
             zero_infinity=False):
    """Connectionist temporal classification loss of (T, N, C) log-probabilities (or (T, C)
    unbatched) against targets padded to (N, S) or concatenated into one 1-D tensor.
    reduction='mean' divides each loss by its target length, then averages over the batch."""
    _check_reduction(reduction)
    unbatched = log_probs.ndim == 2
    lp = log_probs.unsqueeze(1) if unbatched else log_probs
    if lp.ndim != 3:
        raise RuntimeError(f"ctc_loss: expected log_probs of shape (T, N, C) or (T, C), got "
                           f"{list(log_probs.shape)}")
    t_max, n, c = lp.shape
    if not 0 <= blank < c:
        raise RuntimeError(f"ctc_loss: blank must be in label range [0, {c}), got {blank}")
    in_len = _lengths(input_lengths, "input_lengths", n)
    tgt_len = _lengths(target_lengths, "target_lengths", n)
    if (in_len > t_max).any() or (in_len < 1).any():
        raise RuntimeError(f"ctc_loss: input_lengths {in_len.tolist()} must lie in [1, {t_max}] "
                           f"(the length of log_probs)")
    labels = to_host(targets._data).astype(np.int64)
    if unbatched:
        labels = labels.reshape(1, -1)
    if labels.ndim == 2:
        rows = [labels[i, :tgt_len[i]] for i in range(n)]
        if (tgt_len > labels.shape[1]).any():
            raise RuntimeError(f"ctc_loss: target_lengths {tgt_len.tolist()} exceed the padded "
                               f"target length {labels.shape[1]}")
    else:
        ends = np.cumsum(tgt_len)
        if ends[-1] > labels.size:
            raise RuntimeError(f"ctc_loss: target_lengths sum to {int(ends[-1])} but targets "
                               f"hold {labels.size} labels")
        rows = np.split(labels[:ends[-1]], ends[:-1])
    ext_len = 2 * tgt_len + 1
    ext = np.full((n, int(ext_len.max())), blank, np.int64)
    for i, row in enumerate(rows):
        if ((row < 0) | (row >= c) | (row == blank)).any():
            raise RuntimeError(f"ctc_loss: target {i} holds labels {row.tolist()} outside "
                               f"[0, {c}) or equal to the blank ({blank})")
        ext[i, 1:2 * len(row):2] = row
    nll = _CTC.apply(lp, ext, in_len, ext_len, blank, zero_infinity)
    if reduction == "mean":
        divisor = Tensor._make(array_module(lp._data).asarray(np.maximum(tgt_len, 1),
                                                              dtype=lp._data.dtype))
        return (nll / divisor).mean()
    if reduction == "sum":
        return nll.sum()
    return nll.reshape(()) if unbatched else nll
