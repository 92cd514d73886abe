"""Attention, composed from tensor primitives (matmul, softmax, dropout): it needs no backward
of its own. The one exception is multi-head *self*-attention without attention weights asked
for (what transformer layers run): there the heads' attention is one Function,
`_SelfAttention`, because composed it pays the per-op overhead some fifty times per call on
what are usually small arrays. While an observer watches the dispatch point (autocast, the
profiler, ONNX export) it runs composed, so that they see the ops they know.

`scaled_dot_product_attention` follows torch's conventions: a bool mask marks the positions
that *take part* in attention, a float mask is added to the scores, and a query row whose keys
are all masked out gives zeros (not NaN). `multi_head_attention_forward` follows
`torch.nn.functional.multi_head_attention_forward`: inputs are (L, N, E), and there a bool mask
marks the positions that are *masked out*.
"""
import math

import numpy as np

from ...autograd import Function, dispatch, is_grad_enabled
from ...tensor import Tensor
from ...tensor.backend import array_module, on_host
from ...tensor.ops.shape import cat, pad
from ..attention import _check_kernel
from . import cuda_kernels, fused_loss
from .dropout import _check_p, _mask as _dropout_mask, dropout
from .linear import linear as _linear


def _shape(t):
    return list(t.shape)


def _float_mask(mask, dtype, name, masked_value):
    """An additive float mask: bool `mask` gives -inf where it equals `masked_value`."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(mask).__name__}")
    d = mask._data
    if d.dtype.kind == "b":
        xp = array_module(d)
        return Tensor._make(xp.where(d == masked_value, dtype.type(-np.inf), dtype.type(0)))
    if d.dtype.kind != "f":
        raise TypeError(f"only bool and floating types of {name} are supported, got "
                        f"{mask.dtype}")
    return mask if d.dtype == dtype else mask.to(dtype)


def _dead_rows(mask):
    """Bool array (..., L, 1): query rows whose every key is masked out, or None if none is.
    On a GPU the array is returned without asking whether any row is dead (that would wait
    for the GPU); masking by an all-False array changes nothing."""
    d = mask._data
    dead = (d == -np.inf).all(axis=-1, keepdims=True)
    return dead if not on_host(dead) or bool(dead.any()) else None


def _attend(q, k, v, mask, dropout_p, scale, keep=None):
    """softmax(q k^T * scale + mask) (dropped out) @ v; returns (output, attention weights).

    `mask` is None or an additive float mask broadcastable to (..., L, S). `keep`, when given,
    is the dropout's scaled keep-mask to use instead of drawing one.
    """
    attn = (q * scale) @ k.mT  # scaling q (L x E) is cheaper than scaling the scores (L x S)
    dead = None
    if mask is not None:
        dead = _dead_rows(mask)
        if dead is not None:
            # a fully masked row would give NaN; unmask it here and zero its output below
            mask = mask.masked_fill(Tensor._make(dead), 0.0)
        attn = attn + mask
    attn = attn.softmax(-1)
    if dead is not None:
        attn = attn.masked_fill(Tensor._make(dead), 0.0)
    if keep is not None:
        attn = attn * keep
    elif dropout_p > 0.0:
        attn = dropout(attn, dropout_p, training=True)
    return attn @ v, attn


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False):
    """softmax(Q K^T / sqrt(E) + mask) V over the last two dims; leading dims broadcast.

    query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev). `attn_mask` is
    bool (True = take part in attention) or float (added to the scores), broadcastable to
    (..., L, S). `is_causal` applies a lower-triangular mask (and excludes `attn_mask`).
    """
    _check_qkv(query, key, value, enable_gqa)
    if type(attn_mask).__name__ == "CausalBias":    # nn.attention.bias: made here, when used
        attn_mask = attn_mask._mask_like(query)
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"dropout_p must be in [0, 1], got {dropout_p}")
    _check_kernel(query.shape, key.shape, value.shape, dropout_p,
                  not on_host(query._data))
    L, S = query.shape[-2], key.shape[-2]
    dtype = query._data.dtype
    if is_causal:
        if attn_mask is not None:
            raise RuntimeError("scaled_dot_product_attention: explicit attn_mask should not "
                               "be set when is_causal=True; fold the causal mask into "
                               "attn_mask or drop one of them")
        xp = array_module(query._data)
        attn_mask = Tensor._make(xp.tril(xp.ones((L, S), dtype=bool)))
    mask = _float_mask(attn_mask, dtype, "attn_mask", False)
    scores = tuple(query.shape[:-2]) + (L, S)
    if mask is not None:
        try:
            fits = np.broadcast_shapes(tuple(mask.shape), scores) == scores
        except ValueError:
            fits = False
        if not fits:     # broadcast *to* the scores, as PyTorch's: never widening them
            raise RuntimeError(f"attn_mask of shape {_shape(attn_mask)} cannot be broadcast to "
                               f"the attention scores' shape {list(scores)}")
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(rep, dim=-3)
        value = value.repeat_interleave(rep, dim=-3)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    if (query.shape[:-2] == key.shape[:-2] == value.shape[:-2] and query._data.size and
            key._data.size and (mask is None or not mask.requires_grad) and
            not dispatch.watching(_Attention)):
        return _Attention.apply(query, key, value, mask, scale, dropout_p)
    return _attend(query, key, value, mask, dropout_p, scale)[0]


def _check_qkv(q, k, v, gqa):
    for name, t in (("query", q), ("key", k), ("value", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"scaled_dot_product_attention: {name} must be a Tensor, got "
                            f"{type(t).__name__}")
        if t.ndim < 2:
            raise RuntimeError(f"scaled_dot_product_attention: {name} must have at least 2 "
                               f"dims (..., seq, features), got shape {_shape(t)}")
        if not t.is_floating_point():
            raise RuntimeError(f"scaled_dot_product_attention: {name} must be floating point, "
                               f"got {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise RuntimeError(f"scaled_dot_product_attention: query, key and value must have the "
                           f"same dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    if q.shape[-1] != k.shape[-1]:
        raise RuntimeError(f"scaled_dot_product_attention: query's last dim ({q.shape[-1]}) "
                           f"must equal key's ({k.shape[-1]}); shapes {_shape(q)} and "
                           f"{_shape(k)}")
    if k.shape[-2] != v.shape[-2]:
        raise RuntimeError(f"scaled_dot_product_attention: key and value must have the same "
                           f"sequence length (dim -2), got shapes {_shape(k)} and {_shape(v)}")
    if gqa and q.ndim >= 3 and (k.shape[-3] == 0 or q.shape[-3] % k.shape[-3]):
        raise RuntimeError(f"scaled_dot_product_attention: with enable_gqa, query's heads "
                           f"({q.shape[-3]}) must be a multiple of key's ({k.shape[-3]})")


# ---- multi-head attention ------------------------------------------------------------------
def multi_head_attention_forward(query, key, value, embed_dim_to_check, num_heads,
                                 in_proj_weight, in_proj_bias, bias_k, bias_v, add_zero_attn,
                                 dropout_p, out_proj_weight, out_proj_bias, training=True,
                                 key_padding_mask=None, need_weights=True, attn_mask=None,
                                 use_separate_proj_weight=False, q_proj_weight=None,
                                 k_proj_weight=None, v_proj_weight=None, static_k=None,
                                 static_v=None, average_attn_weights=True, is_causal=False,
                                 batch_first=False):
    """Multi-head attention on (L, N, E) inputs (or (L, E) unbatched), as torch's.

    `batch_first=True` (not in torch's functional signature; used by `MultiheadAttention`)
    takes (N, L, E) inputs and returns (N, L, E), saving the two transposes.
    Returns (output, weights): weights are (N, L, S) averaged over heads, (N, H, L, S) with
    `average_attn_weights=False`, or None when `need_weights` is False.
    """
    batched = query.ndim == 3
    same_qkv, same_kv = query is key and key is value, key is value
    _check_mha_inputs(query, key, value, embed_dim_to_check, num_heads, key_padding_mask,
                      attn_mask, batched)
    if not batched:  # unbatched: a batch of one
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
        batch_first = False
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the "
                           "Transformer module method `generate_square_subsequent_mask` to "
                           "create this mask.")
    seq_dim = 1 if batch_first else 0
    E, H = embed_dim_to_check, num_heads
    D = E // H
    N = query.shape[1 - seq_dim]
    L = query.shape[seq_dim]
    if not need_weights:   # PyTorch runs this through scaled_dot_product_attention's kernels
        S = key.shape[seq_dim]
        _check_kernel((N, H, L, D), (N, H, S, D), (N, H, S, D), dropout_p if training else 0.0,
                      not on_host(query._data))
    if same_qkv and not (use_separate_proj_weight or need_weights or add_zero_attn or
                         bias_k is not None or bias_v is not None or static_k is not None or
                         static_v is not None or query._data.size == 0 or
                         dispatch.watching(_SelfAttention)):
        out = _fused_self_attention(query, in_proj_weight, in_proj_bias, out_proj_weight,
                                    out_proj_bias, attn_mask, key_padding_mask,
                                    dropout_p if training else 0.0, (L, N, H, D, batch_first))
        if out is not None:
            return (out if batched else out.squeeze(1)), None

    # input projections, split into heads (N, H, L, D): one matmul for self-attention,
    # two when key is value
    def heads(x, w, b, n=1):
        return _heads(_linear(x, w, b), n, H, D, seq_dim)

    if not use_separate_proj_weight:
        if same_qkv:
            q, k, v = heads(query, in_proj_weight, in_proj_bias, 3)
        else:
            wq, wkv = in_proj_weight.split([E, 2 * E])
            bq, bkv = (None, None) if in_proj_bias is None else in_proj_bias.split([E, 2 * E])
            q, = heads(query, wq, bq)
            if same_kv:
                k, v = heads(key, wkv, bkv, 2)
            else:
                wk, wv = wkv.chunk(2)
                bk, bv = (None, None) if bkv is None else bkv.chunk(2)
                (k,), (v,) = heads(key, wk, bk), heads(value, wv, bv)
    else:
        bq = bk = bv = None
        if in_proj_bias is not None:
            bq, bk, bv = in_proj_bias.chunk(3)
        (q,), (k,), (v,) = (heads(query, q_proj_weight, bq), heads(key, k_proj_weight, bk),
                            heads(value, v_proj_weight, bv))
    if static_k is not None:
        k = _static(static_k, N, H, D, "static_k")
    if static_v is not None:
        v = _static(static_v, N, H, D, "static_v")

    attn_mask, key_padding_mask = _float_masks(attn_mask, key_padding_mask, q._data.dtype,
                                               N, H, L, key.shape[seq_dim])

    extra = []  # one learned (bias_k/v) and/or one all-zero key/value position
    if bias_k is not None and bias_v is not None:
        if static_k is not None or static_v is not None:
            raise RuntimeError("bias_k/bias_v cannot be used together with static_k/static_v")
        extra.append((bias_k.reshape(1, H, 1, D).expand(N, H, 1, D),
                      bias_v.reshape(1, H, 1, D).expand(N, H, 1, D)))
    if add_zero_attn:
        zeros = k.new_zeros(N, H, 1, D)
        extra.append((zeros, zeros))
    for ek, ev in extra:
        k, v = cat([k, ek], dim=2), cat([v, ev], dim=2)
        attn_mask = _pad_last(attn_mask)
        key_padding_mask = _pad_last(key_padding_mask)

    mask = _combined_mask(attn_mask, key_padding_mask, N, k.shape[-2])
    out, weights = _attend(q, k, v, mask, dropout_p if training else 0.0, 1.0 / math.sqrt(D))
    # (N, H, L, D) -> (L, N, E) or (N, L, E)
    out = out.permute(0, 2, 1, 3) if batch_first else out.permute(2, 0, 1, 3)
    out = _linear(out.reshape(out.shape[0], out.shape[1], E), out_proj_weight, out_proj_bias)
    if not need_weights:
        weights = None
    elif average_attn_weights:
        weights = weights.mean(dim=1)
    if not batched:
        out = out.squeeze(1)
        if weights is not None:
            weights = weights.squeeze(0)
    return out, weights


def _float_masks(attn_mask, key_padding_mask, dtype, N, H, L, S):
    """Both masks as additive float masks, attn_mask checked and shaped (L, S) or (N, H, L, S)."""
    attn_mask = _float_mask(attn_mask, dtype, "attn_mask", True)
    key_padding_mask = _float_mask(key_padding_mask, dtype, "key_padding_mask", True)
    if attn_mask is not None:
        want = [L, S] if attn_mask.ndim == 2 else [N * H, L, S]
        if _shape(attn_mask) != want:
            raise RuntimeError(f"The shape of the {attn_mask.ndim}D attn_mask is "
                               f"{_shape(attn_mask)}, but should be {want}")
        if attn_mask.ndim == 3:
            attn_mask = attn_mask.reshape(N, H, L, S)
    return attn_mask, key_padding_mask


def _combined_mask(attn_mask, key_padding_mask, N, S):
    """One additive mask broadcastable to (N, H, L, S), or None."""
    if key_padding_mask is None:
        return attn_mask
    if tuple(key_padding_mask.shape) != (N, S):
        raise RuntimeError(f"key_padding_mask should have shape {[N, S]} (batch, source "
                           f"length), got {_shape(key_padding_mask)}")
    kpm = key_padding_mask.reshape(N, 1, 1, S)
    return kpm if attn_mask is None else attn_mask + kpm


# ---- fused self-attention -------------------------------------------------------------------
def _fused_self_attention(x, in_w, in_b, out_w, out_b, attn_mask, key_padding_mask, dropout_p,
                          geom):
    """Self-attention of x (L, N, E) (or (N, L, E) with batch_first) as three Functions: the
    input projection, `_SelfAttention` and the output projection. None where a mask wants a
    gradient (the composed form gives it)."""
    L, N, H = geom[:3]
    mask = _combined_mask(*_float_masks(attn_mask, key_padding_mask, x._data.dtype, N, H, L,
                                        L), N, L)
    if mask is not None and mask.requires_grad:
        return None
    _check_p(dropout_p)
    proj = _linear(x, in_w, in_b)                                  # (L, N, 3E) or (N, L, 3E)
    return _linear(_SelfAttention.apply(proj, mask, geom, dropout_p), out_w, out_b)


def _split_heads(proj, geom):
    """(L, N, 3E) or (N, L, 3E) -> q, k, v views (N, H, L, D)."""
    L, N, H, D, batch_first = geom
    if batch_first:
        return proj.reshape(N, L, 3, H, D).transpose(2, 0, 3, 1, 4)
    return proj.reshape(L, N, 3, H, D).transpose(2, 1, 3, 0, 4)


def _merge_heads(out, geom):
    """(N, H, L, D) -> (L, N, E) or (N, L, E)."""
    L, N, H, D, batch_first = geom
    out = out.transpose((0, 2, 1, 3) if batch_first else (2, 0, 1, 3))
    return out.reshape(out.shape[:2] + (H * D,))


class _SelfAttention(Function):
    """softmax(q k^T / sqrt(D) + mask), dropped out, times v, for every head at once: from the
    packed input projection `proj` (L, N, 3E) to the heads' concatenated output (L, N, E)
    ((N, L, ...) with batch_first). Composed, this is a dozen ops forward and three dozen
    backward (head splits, transposes, two matmuls and their gradients, softmax, dropout),
    each paying the per-op overhead on small arrays; here forward and backward are array
    code. `mask` is an additive float mask (no gradient) broadcastable to (N, H, L, L); query
    rows with every key masked give zeros, as in `_attend`. Under create_graph the backward
    differentiates the composed form with the same dropout mask."""

    @staticmethod
    def forward(ctx, proj, mask, geom, dropout_p):
        q, k, v = _split_heads(proj._data, geom)
        keep = None
        if dropout_p > 0.0:     # drawn as `dropout` draws it, so the composed form agrees
            keep = _keep_mask(proj, q.shape[:-1] + k.shape[-2:-1], dropout_p)
        out, ctx.qs, ctx.p, ctx.pk = _attention_arrays(q, k, v, mask, 1.0 / math.sqrt(geom[3]),
                                                       keep)
        ctx.save_for_backward(proj, mask)
        ctx.geom, ctx.keep = geom, keep
        return Tensor._make(_merge_heads(out, geom))

    @staticmethod
    def backward(ctx, g):
        proj, mask = ctx.saved_tensors
        geom = ctx.geom
        if is_grad_enabled():   # create_graph: differentiate the composed form instead
            keep = None if ctx.keep is None else Tensor._make(ctx.keep)
            return cuda_kernels.differentiate(
                lambda pr: _self_attention_composed(pr, mask, geom, keep), (proj,),
                ctx.needs_input_grad[:1], g) + (None, None, None)
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        L, N, H, D, batch_first = geom
        d = proj._data
        _, k, v = _split_heads(d, geom)
        go = g._data.reshape((N, L, H, D) if batch_first else (L, N, H, D))
        go = go.transpose((0, 2, 1, 3) if batch_first else (1, 2, 0, 3))     # (N, H, L, D)
        grads = array_module(d).empty((N, L, 3, H, D) if batch_first else (L, N, 3, H, D),
                                      dtype=d.dtype)
        gq, gk, gv = _split_heads(grads, geom)      # views into the packed gradient
        gq[...], gk[...], gv[...] = _attention_grads(go, k, v, ctx.qs, ctx.p, ctx.pk, ctx.keep,
                                                     1.0 / math.sqrt(D))
        return Tensor._make(grads.reshape(d.shape)), None, None, None


def _softmax_rows(p):
    """softmax over the last axis of the scores `p`, in place where the dtype allows. Half
    precision runs in float32 (as PyTorch's kernels accumulate), stored back in its dtype; on a
    GPU float32/float64 rows take the fused kernel (one pass instead of five)."""
    xp = array_module(p)
    if p.dtype.itemsize < 4:
        return _softmax_rows(p.astype(np.float32)).astype(p.dtype)
    kernels = fused_loss.kernels_for(xp)
    if kernels is not None and cuda_kernels.fusable(p):
        return kernels.softmax(p)
    p -= p.max(axis=-1, keepdims=True)
    xp.exp(p, out=p)
    p /= p.sum(axis=-1, keepdims=True)
    return p


def _attention_arrays(q, k, v, mask, scale, keep):
    """softmax(q k^T * scale + mask) (times the dropout keep-mask `keep`) @ v on arrays, for
    q (..., L, D), k (..., S, D), v (..., S, Dv) and an additive float mask Tensor or None;
    query rows with every key masked give zeros. Returns (output, q * scale, the attention
    weights, the weights after dropout): what `_attention_grads` needs."""
    xp = array_module(q)
    qs = q * scale              # scaling q (L x D) is cheaper than scaling the scores (L x S)
    p = qs @ k.swapaxes(-1, -2)
    dead = None
    if mask is not None:
        m = mask._data
        dead = _dead_rows(mask)
        p += m if dead is None else xp.where(dead, 0, m)
    p = _softmax_rows(p)
    if dead is not None:
        p *= ~dead
    pk = p if keep is None else p * keep
    return pk @ v, qs, p, pk


def _attention_grads(go, k, v, qs, p, pk, keep, scale):
    """(gq, gk, gv) of `_attention_arrays` for the output gradient `go`."""
    gv = pk.swapaxes(-1, -2) @ go
    gp = go @ v.swapaxes(-1, -2)
    if keep is not None:
        gp *= keep
    # softmax: gs = p * (gp - sum(gp * p)); rows zeroed by a dead mask stay 0 through p
    gp -= (gp * p).sum(axis=-1, keepdims=True, dtype=np.float32 if gp.dtype.itemsize < 4
                       else None).astype(gp.dtype, copy=False)
    gp *= p
    gq = gp @ k
    gq *= scale
    return gq, gp.swapaxes(-1, -2) @ qs, gv


class _Attention(Function):
    """`scaled_dot_product_attention` of q, k, v (..., L, D) with the same leading dims and an
    additive float mask (no gradient) as one Function: composed it is a dozen ops forward and
    more backward, each a pass over the (..., L, S) scores. Under create_graph the backward
    differentiates the composed form with the same dropout mask. Its node is PyTorch's CPU
    flash kernel's where PyTorch picks that kernel (4-D inputs of one head size, no dropout);
    elsewhere PyTorch's math kernel makes a dozen nodes, where this stays one."""
    graph_inputs = (0, 1, 2)        # the mask is no input of PyTorch's flash node

    @staticmethod
    def forward(ctx, q, k, v, mask, scale, dropout_p):
        if dropout_p == 0.0 and q.ndim == k.ndim == v.ndim == 4 and \
                q.shape[-1] == k.shape[-1] == v.shape[-1]:
            ctx.node_name = "ScaledDotProductFlashAttentionForCpu"
        keep = None
        if dropout_p > 0.0:
            keep = _keep_mask(q, tuple(q.shape[:-1]) + tuple(k.shape[-2:-1]), dropout_p)
        out, ctx.qs, ctx.p, ctx.pk = _attention_arrays(q._data, k._data, v._data, mask, scale,
                                                       keep)
        ctx.save_for_backward(q, k, v, mask)
        ctx.scale, ctx.keep = scale, keep
        return Tensor._make(_in_layout_of(out, q._data))

    @staticmethod
    def backward(ctx, g):
        q, k, v, mask = ctx.saved_tensors
        if is_grad_enabled():   # create_graph: differentiate the composed form instead
            keep = None if ctx.keep is None else Tensor._make(ctx.keep)
            return cuda_kernels.differentiate(
                lambda q_, k_, v_: _attend(q_, k_, v_, mask, 0.0, ctx.scale, keep)[0],
                (q, k, v), ctx.needs_input_grad[:3], g) + (None, None, None)
        grads = _attention_grads(g._data, k._data, v._data, ctx.qs, ctx.p, ctx.pk, ctx.keep,
                                 ctx.scale)
        return tuple(Tensor._make(a) if need else None
                     for a, need in zip(grads, ctx.needs_input_grad[:3])) + (None, None, None)


def _in_layout_of(out, like):
    """`out` laid out in memory as the query is, as PyTorch's CPU kernel returns it: a query
    that is a (B, H, L, E) view of (B, L, H, E) memory gives an output whose
    `.transpose(1, 2).view(B, L, H * E)` works without `.contiguous()`."""
    if like.flags.c_contiguous or like.shape != out.shape:
        return out
    xp = array_module(out)
    laid = xp.empty_like(like, dtype=out.dtype)
    laid[...] = out
    return laid


def _keep_mask(proj, shape, dropout_p):
    """dropout's scaled keep-mask for the attention weights (none drawn when p is 1)."""
    if dropout_p >= 1.0:
        return array_module(proj._data).zeros(shape, dtype=proj._data.dtype)
    return _dropout_mask(proj, shape, dropout_p, None)._data


def _self_attention_composed(proj, mask, geom, keep):
    """`_SelfAttention` composed of primitives (the dropout mask `keep` given)."""
    L, N, H, D, batch_first = geom
    seq_dim = 1 if batch_first else 0
    q, k, v = _heads(proj, 3, H, D, seq_dim)
    out = _attend(q, k, v, mask, 0.0, 1.0 / math.sqrt(D), keep)[0]
    out = out.permute(0, 2, 1, 3) if batch_first else out.permute(2, 0, 1, 3)
    return out.reshape(proj.shape[:2] + (H * D,))


def _heads(x, n, H, D, seq_dim):
    """(L, N, n*E) or (N, L, n*E) -> n views (N, H, L, D)."""
    a, b = x.shape[0], x.shape[1]
    order = (1, 2, 0, 3) if seq_dim == 0 else (0, 2, 1, 3)
    if n == 1:
        return (x.reshape(a, b, H, D).permute(*order),)
    x = x.reshape(a, b, n, H, D).permute(2, *(i + (i >= 2) for i in order))
    return x.unbind(0)


def _static(t, N, H, D, name):
    if tuple(t.shape[0:1]) != (N * H,) or t.shape[-1] != D:
        raise RuntimeError(f"{name} should have shape (batch * num_heads, S, head_dim) = "
                           f"({N * H}, S, {D}), got {_shape(t)}")
    return t.reshape(N, H, t.shape[1], D)


def _pad_last(mask):
    """One more key position, not masked, for an additive mask."""
    if mask is None:
        return None
    return pad(mask, (0, 1))


def _check_mha_inputs(query, key, value, E, H, key_padding_mask, attn_mask, batched):
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"multi-head attention: {name} must be a Tensor, got "
                            f"{type(t).__name__}")
    if query.ndim not in (2, 3):
        raise RuntimeError(f"multi-head attention: query should be 3-D (batched) or 2-D "
                           f"(unbatched), got shape {_shape(query)}")
    want = query.ndim
    if key.ndim != want or value.ndim != want:
        raise RuntimeError(f"multi-head attention: for {'' if batched else 'un'}batched "
                           f"{want}-D query, key and value should be {want}-D too, got shapes "
                           f"{_shape(key)} and {_shape(value)}")
    if query.shape[-1] != E:
        raise RuntimeError(f"multi-head attention: was expecting embedding dimension of {E}, "
                           f"but got query of shape {_shape(query)}")
    if E % H:
        raise RuntimeError(f"embed_dim ({E}) must be divisible by num_heads ({H})")
    if key.shape[:-1] != value.shape[:-1]:
        raise RuntimeError(f"multi-head attention: key and value must agree on sequence and "
                           f"batch dims, got shapes {_shape(key)} and {_shape(value)}")
    if key_padding_mask is not None and key_padding_mask.ndim != (2 if batched else 1):
        raise RuntimeError(f"multi-head attention: key_padding_mask should be "
                           f"{'2-D (batch, source length)' if batched else '1-D (source length)'}"
                           f", got shape {_shape(key_padding_mask)}")
    if attn_mask is not None and attn_mask.ndim not in (2, 3):
        raise RuntimeError(f"multi-head attention: attn_mask should be 2-D (L, S) or 3-D "
                           f"(batch * num_heads, L, S), got shape {_shape(attn_mask)}")
