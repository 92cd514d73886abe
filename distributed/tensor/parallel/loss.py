"""`loss_parallel()`: cross entropy of logits sharded over the classes, without gathering
them (PyTorch's `torch.distributed.tensor.parallel.loss_parallel`).

Inside the context, `F.cross_entropy(input, target)` with `input` a DTensor sharded on its
class dim (what `ColwiseParallel(use_local_output=False)` gives for an output layer) computes
the log-sum-exp over the classes from each rank's columns: a max and a sum all-reduced, and
the target's logit from the rank holding it. Backward gives each rank the gradient of its
columns. The loss is the same plain tensor on every rank.
"""
import contextlib

from ....autograd.function import Function
from ....tensor import Tensor
from ....tensor.backend import array_module
from .. import dtensor
from ..dtensor import DTensor, chunk_bounds
from ..placement_types import Shard


@contextlib.contextmanager
def loss_parallel():
    """Within it, F.cross_entropy takes logits sharded over the class dim (dim 1, or 0 for
    one sample)."""
    previous = dtensor.parallel_losses.get("CrossEntropy")
    dtensor.parallel_losses["CrossEntropy"] = _cross_entropy
    try:
        yield
    finally:
        if previous is None:
            del dtensor.parallel_losses["CrossEntropy"]
        else:
            dtensor.parallel_losses["CrossEntropy"] = previous


def _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing):
    class_dim = 1 if input.ndim > 1 else 0
    if input.placements != (Shard(class_dim),):
        raise ValueError(f"loss_parallel: cross_entropy needs logits sharded on the class "
                         f"dim {class_dim} (Shard({class_dim})), got {input.placements}; "
                         f"give the output layer use_local_output=False")
    if target._data.dtype.kind not in "iu":
        raise NotImplementedError("loss_parallel: class-probability targets are not "
                                  "supported; pass class indices")
    if label_smoothing and weight is not None:
        raise NotImplementedError("loss_parallel: label_smoothing with a class weight is not "
                                  "supported; pass one of them")
    if isinstance(target, DTensor):
        target = target.full_tensor()
    if isinstance(weight, DTensor):
        weight = weight.full_tensor()
    return _ParallelCrossEntropy.apply(input, target, weight, ignore_index, reduction,
                                       label_smoothing)


class _ParallelCrossEntropy(Function):
    dtensor_aware = True

    @staticmethod
    def forward(ctx, input, target, weight, ignore_index, reduction, smoothing):
        from ...collectives import all_reduce
        from ...reduce_op import ReduceOp
        mesh, group = input.device_mesh, input.device_mesh.get_group()
        x = input._data if input.ndim > 1 else input._data[None]
        xp = array_module(x)
        ctx.dtype = x.dtype        # float16 sums overflow: computed in float32 at least
        x = xp.moveaxis(x, 1, -1).astype(xp.promote_types(x.dtype, xp.float32), copy=False)
        t = target._data if input.ndim > 1 else target._data[None]
        n_classes = input.shape[1 if input.ndim > 1 else 0]
        start, stop = chunk_bounds(n_classes, mesh.size(), mesh.get_local_rank())

        def reduced(arr, op=ReduceOp.SUM):
            arr = xp.ascontiguousarray(arr)
            all_reduce(Tensor._make(arr), op=op, group=group)
            return arr

        m = reduced(x.max(axis=-1) if stop > start else
                    xp.full(x.shape[:-1], -xp.inf, x.dtype), ReduceOp.MAX)
        e = xp.exp(x - m[..., None])
        lse = xp.log(reduced(e.sum(axis=-1))) + m
        valid = t != ignore_index
        if ((t < 0) | (t >= n_classes))[valid].any():
            raise IndexError(f"cross_entropy: a target is outside [0, {n_classes})")
        safe = xp.where(valid, t, 0)
        mine = valid & (safe >= start) & (safe < stop)
        local = xp.clip(safe - start, 0, max(stop - start - 1, 0))
        picked = xp.where(mine, xp.take_along_axis(x, local[..., None], axis=-1)[..., 0], 0) \
            if stop > start else xp.zeros(t.shape, x.dtype)    # all-reduced in x's dtype
        loss = lse - reduced(picked)
        if smoothing:
            loss = (1 - smoothing) * loss + smoothing * (
                lse - reduced(x.sum(axis=-1)) / n_classes)
        w = (weight._data[safe] if weight is not None else xp.ones_like(loss)) * valid
        loss = (loss * w).astype(x.dtype, copy=False)
        total = w.sum()
        ctx.saved = (e / xp.exp(lse - m)[..., None], local, mine, w, total)
        ctx.layout = (input.device_mesh, input.placements, input.shape, input.ndim)
        ctx.reduction, ctx.smoothing, ctx.n_classes = reduction, smoothing, n_classes
        if reduction == "none":
            return Tensor._make((loss if input.ndim > 1 else loss[0]).astype(ctx.dtype))
        out = loss.sum() if reduction == "sum" else loss.sum() / total
        return Tensor._make(xp.asarray(out, ctx.dtype))

    @staticmethod
    def backward(ctx, grad):
        softmax, local, mine, w, total = ctx.saved
        mesh, placements, shape, ndim = ctx.layout
        xp = array_module(softmax)
        g = grad._data if ctx.reduction == "none" else xp.broadcast_to(grad._data, w.shape)
        if ctx.reduction == "none" and ndim == 1:
            g = g[None]
        if ctx.reduction == "mean":
            g = g / total
        columns = xp.arange(softmax.shape[-1])
        onehot = ((columns == local[..., None]) & mine[..., None]).astype(softmax.dtype)
        smooth = ctx.smoothing
        d = softmax - (1 - smooth) * onehot - smooth / ctx.n_classes
        d = xp.moveaxis(d * (g * w)[..., None], -1, 1)
        d = xp.ascontiguousarray(d if ndim > 1 else d[0], dtype=ctx.dtype)
        return DTensor._wrap(d, mesh, placements, shape), None, None, None, None, None
