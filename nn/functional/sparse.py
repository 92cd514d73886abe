"""embedding (one Function: a row gather whose gradient skips padding_idx), embedding_bag
(sums and means: a sparse (bags x num_embeddings) matrix times the table; max: per bag) and
one_hot."""
import numpy as np

from ...autograd import Function
from ...tensor import Tensor, backend, stack, where, zeros
from ...tensor.backend import array_module, can_check
from ...tensor.ops.indexing import IndexAdd, one_hot as _one_hot


class Embedding(Function):
    graph_inputs = (0,)       # the weight; the indices are not an input of PyTorch's node

    @staticmethod
    def forward(ctx, weight, index, padding_idx, scale_grad_by_freq=False):
        w, idx = weight._data, index._data
        if idx.dtype.kind not in "iu":
            raise RuntimeError(f"embedding: indices must be an integer tensor (int64 or "
                               f"int32), got {index.dtype}; convert with .long()")
        _check_indices(idx, w.shape[0])
        ctx.index, ctx.shape, ctx.padding_idx = index, w.shape, padding_idx
        ctx.scale_grad_by_freq = scale_grad_by_freq
        return Tensor._make(w[idx])

    @staticmethod
    def backward(ctx, g):
        idx = ctx.index._data
        if ctx.padding_idx is not None:  # the padding row gets no gradient
            g = where((ctx.index != ctx.padding_idx).unsqueeze(-1), g, 0.0)
        if ctx.scale_grad_by_freq:       # each row's gradient over its count in the batch
            xp = array_module(idx)
            counts = xp.bincount(idx.reshape(-1), minlength=ctx.shape[0])[idx]
            g = g * Tensor._make((1.0 / counts).astype(g._data.dtype)[..., None])
        return IndexAdd.apply(g, ctx.shape, (idx, Ellipsis), False), None, None, None


def _check_indices(idx, n):
    if idx.size and can_check(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise IndexError(f"embedding: index out of range: indices span "
                         f"[{int(idx.min())}, {int(idx.max())}] but the table has {n} rows "
                         f"(num_embeddings={n})")


def _renorm_(weight, index, max_norm, norm_type):
    """Rescale (in place, no graph) the looked-up rows whose norm exceeds max_norm."""
    w = weight._data
    xp = array_module(w)
    rows = xp.unique(index._data.reshape(-1))
    norms = xp.linalg.norm(w[rows], ord=norm_type, axis=1) if norm_type != 2 else \
        xp.sqrt((w[rows] ** 2).sum(1))
    scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(w.dtype)
    w[rows] *= scale[:, None]
    weight._version[0] += 1


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    if weight.ndim != 2:
        raise RuntimeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), "
                           f"got shape {list(weight.shape)}")
    if sparse:
        raise NotImplementedError("embedding: sparse gradients are not supported; use "
                                  "sparse=False (a dense gradient of the same values)")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += weight.shape[0]
    if max_norm is not None:
        _renorm_(weight, input, max_norm, norm_type)
    return Embedding.apply(weight, input, padding_idx, bool(scale_grad_by_freq))


def one_hot(tensor, num_classes=-1):
    return _one_hot(tensor, num_classes)


def _bags(input, offsets, include_last_offset):
    """(flat indices, [(start, end)] per bag) from a 2-D input or a 1-D input with offsets."""
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError(f"if input is 2D, then offsets has to be None, as input is treated "
                             f"is a mini-batch of fixed length sequences. However, found "
                             f"offsets of type {type(offsets).__name__}")
        b, n = input.shape
        return input.reshape(-1), [(i * n, (i + 1) * n) for i in range(b)]
    if input.ndim != 1:
        raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension "
                         f"{input.ndim}")
    if offsets is None:
        raise ValueError("offsets has to be a 1D Tensor but got None")
    if offsets.ndim != 1:
        raise ValueError(f"offsets has to be a 1D Tensor, got shape {list(offsets.shape)}")
    starts = [int(v) for v in backend.to_device(offsets._data, "cpu").tolist()]
    n = input.shape[0]
    if starts and starts[0] != 0:
        raise RuntimeError(f"offsets[0] has to be 0, i.e., the first sequence in the "
                           f"mini-batch has to start from position 0. However, got "
                           f"{starts[0]}")
    if any(b < a for a, b in zip(starts, starts[1:])) or (starts and starts[-1] > n):
        raise RuntimeError(f"offsets must be non-decreasing and at most the input length "
                           f"{n}, got {starts}")
    ends = starts[1:] if include_last_offset else starts[1:] + [n]
    if include_last_offset:
        starts = starts[:-1]
    return input, list(zip(starts, ends))


def embedding_bag(input, weight, offsets=None, max_norm=None, norm_type=2,
                  scale_grad_by_freq=False, mode="mean", sparse=False,
                  per_sample_weights=None, include_last_offset=False, padding_idx=None):
    """Sum, mean or max of the embeddings of each bag. Entries equal to padding_idx are left
    out (and not counted by 'mean'); an empty bag gives zeros."""
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"mode has to be one of sum, mean or max, got {mode!r}")
    if per_sample_weights is not None:
        if mode != "sum":
            raise NotImplementedError(f"embedding_bag: per_sample_weights was not None. "
                                      f"per_sample_weights is only supported for mode='sum' "
                                      f"(got mode='{mode}'). Please open a feature request "
                                      f"on GitHub.")
        if tuple(per_sample_weights.shape) != tuple(input.shape):
            raise ValueError(f"embedding_bag: If per_sample_weights "
                             f"({list(per_sample_weights.shape)}) is not None, then it must "
                             f"have the same shape as the input ({list(input.shape)})")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += weight.shape[0]
    flat, bags = _bags(input, offsets, include_last_offset)
    keep = backend.to_device(flat._data, "cpu") != (-1 if padding_idx is None else padding_idx)
    if mode != "max" and not scale_grad_by_freq and not sparse:
        if max_norm is not None:
            _renorm_(weight, flat, max_norm, norm_type)
        return _bag_sums(flat, weight, bags, keep, mode, per_sample_weights)
    rows = embedding(flat, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq,
                     sparse)
    if mode == "max":
        out = []
        for start, end in bags:
            members = [i for i in range(start, end) if keep[i]]
            out.append(rows[members].max(0).values if members else
                       zeros(weight.shape[1], dtype=weight.dtype, device=weight.device))
        return stack(out) if out else zeros(0, weight.shape[1], dtype=weight.dtype,
                                            device=weight.device)
    # sum and mean with scale_grad_by_freq: the gathered rows, weighted by bag
    counts = np.add.reduceat(keep, [s for s, _ in bags]) if bags and len(keep) else None
    matrix = np.zeros((len(bags), flat.shape[0]), dtype=weight._data.dtype)
    for b, (start, end) in enumerate(bags):
        if start < end and counts[b]:
            matrix[b, start:end] = keep[start:end] / (counts[b] if mode == "mean" else 1)
    return Tensor._make(backend.to_device(matrix, weight.device)) @ rows


def _bag_sums(flat, weight, bags, keep, mode, per_sample_weights):
    """Each bag's sum or mean as a sparse (bags x num_embeddings) matrix times the table: no
    gathered rows, and the table's gradient is that matrix's transpose times the output's."""
    from ...tensor.sparse_coo import SparseTensor, mm
    xp = array_module(weight._data)
    _check_indices(flat._data, weight.shape[0])
    lengths = np.array([end - start for start, end in bags], dtype=np.int64)
    bag_of = np.repeat(np.arange(len(bags)), lengths)[keep]
    kept = np.flatnonzero(keep)
    if per_sample_weights is not None:
        vals = per_sample_weights.reshape(-1)[Tensor._make(xp.asarray(kept))]
        vals = vals.to(weight.dtype)
    else:
        scale = np.ones(len(bags)) if mode == "sum" else \
            1.0 / np.maximum(np.bincount(bag_of, minlength=len(bags)), 1)
        vals = Tensor._make(xp.asarray(scale[bag_of], dtype=weight._data.dtype))
    idx = xp.stack([xp.asarray(bag_of), flat._data.reshape(-1)[xp.asarray(kept)]]).astype(
        np.int64)
    return mm(SparseTensor._of(idx, vals, (len(bags), weight.shape[0])), weight)

