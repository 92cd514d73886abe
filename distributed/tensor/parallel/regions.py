"""The differentiable steps between tensor-parallel layers (Megatron-LM's "regions"): each is
one Function whose backward is the collective its forward implies.

- `CopyToRegion`: a replicated input entering sharded layers: the same values forward; the
  gradient, which each rank computed for its own columns, summed over the ranks backward.
- `ReduceFromRegion`: partial sums of a row-sharded product summed over the ranks forward;
  backward each rank's part gets the whole gradient as it is.
- `SplitToRegion` / `GatherFromRegion`: a tensor sliced to this rank's chunk along a dim
  (backward: the chunks' gradients gathered), and the inverse.
"""
from ....autograd.function import Function
from ....tensor import Tensor
from ...collectives import all_reduce
from ..dtensor import DTensor, _whole, local_part
from ..placement_types import Shard


class CopyToRegion(Function):
    @staticmethod
    def forward(ctx, x, mesh):
        ctx.mesh = mesh
        return Tensor._make(x._data.view())

    @staticmethod
    def backward(ctx, grad):
        return _summed(grad, ctx.mesh), None


class ReduceFromRegion(Function):
    @staticmethod
    def forward(ctx, x, mesh):
        return _summed(x, mesh)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class SplitToRegion(Function):
    @staticmethod
    def forward(ctx, x, dim, mesh):
        ctx.dim, ctx.mesh, ctx.shape = dim % x.ndim, mesh, tuple(x.shape)
        return Tensor._make(local_part(x._data, ctx.dim, mesh))

    @staticmethod
    def backward(ctx, grad):
        return _gathered(grad._data, ctx.dim, ctx.shape, ctx.mesh), None, None


class GatherFromRegion(Function):
    @staticmethod
    def forward(ctx, x, dim, size, mesh):
        ctx.dim, ctx.mesh = dim % x.ndim, mesh
        shape = list(x.shape)
        shape[ctx.dim] = size
        return _gathered(x._data, ctx.dim, shape, mesh)

    @staticmethod
    def backward(ctx, grad):
        return Tensor._make(local_part(grad._data, ctx.dim, ctx.mesh)), None, None, None


def _summed(t, mesh):
    out = t._data.copy()
    all_reduce(Tensor._make(out), group=mesh.get_group())
    return Tensor._make(out)


def _gathered(local, dim, whole_shape, mesh):
    """Every rank's chunk along `dim` put together (a collective; chunks may be uneven)."""
    return Tensor._make(_whole(DTensor._wrap(local, mesh, (Shard(dim),), whole_shape)))
