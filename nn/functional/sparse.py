"""embedding (one Function: a row gather whose gradient skips padding_idx) and one_hot."""
from ...autograd import Function
from ...tensor import Tensor, where
from ...tensor.backend import array_module
from ...tensor.ops.indexing import IndexAdd, one_hot as _one_hot


class Embedding(Function):
    @staticmethod
    def forward(ctx, weight, index, padding_idx):
        w, idx = weight._data, index._data
        if idx.dtype.kind not in "iu":
            raise RuntimeError(f"embedding: indices must be an integer tensor (int64 or "
                               f"int32), got {index.dtype}; convert with .long()")
        n = w.shape[0]
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise IndexError(f"embedding: index out of range: indices span "
                             f"[{int(idx.min())}, {int(idx.max())}] but the table has {n} rows "
                             f"(num_embeddings={n})")
        ctx.index, ctx.shape, ctx.padding_idx = index, w.shape, padding_idx
        return Tensor._make(w[idx])

    @staticmethod
    def backward(ctx, g):
        if ctx.padding_idx is not None:  # the padding row gets no gradient
            g = where((ctx.index != ctx.padding_idx).unsqueeze(-1), g, 0.0)
        return IndexAdd.apply(g, ctx.shape, (ctx.index._data, Ellipsis), False), None, None


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
    if scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: scale_grad_by_freq and sparse gradients are not "
                                  "supported")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += weight.shape[0]
    if max_norm is not None:
        _renorm_(weight, input, max_norm, norm_type)
    return Embedding.apply(weight, input, padding_idx)


def one_hot(tensor, num_classes=-1):
    return _one_hot(tensor, num_classes)

