"""`torch.distributed.nn.functional`: collectives as autograd functions, so a loss computed
from gathered tensors sends gradients back to the ranks that contributed them (contrastive
learning gathers every rank's embeddings this way):

    from phalanx.distributed.nn.functional import all_gather
    everyone = torch.cat(all_gather(embeddings))      # gradients reach each rank's slice

Each backward is the adjoint collective: all_gather <-> reduce_scatter, broadcast <-> reduce,
gather <-> scatter, all_to_all <-> all_to_all, all_reduce <-> all_reduce. Every rank of the
group must call them (and run backward) in the same order, as with any collective. PyTorch
2.13 deprecates this module in favour of its functional collectives; the same FutureWarning
is given here.
"""
import warnings

from ...autograd import Function
from ...tensor import zeros_like
from .. import collectives as dist
from ..reduce_op import ReduceOp
from ..world import get_rank, get_world_size

__all__ = ["all_gather", "all_reduce", "all_to_all", "all_to_all_single", "broadcast",
           "gather", "reduce", "reduce_scatter", "scatter"]


def _deprecated(name):
    warnings.warn(f"torch.distributed.nn.functional.{name} is deprecated, use "
                  f"torch.distributed._functional_collectives.{name} instead.",
                  FutureWarning, stacklevel=3)


def broadcast(tensor, src, group=None):
    """`src`'s tensor on every rank; the gradient is summed back onto `src`."""
    _deprecated("broadcast")
    return _Broadcast.apply(src, group, tensor)


def gather(tensor, dst=0, group=None):
    """Every rank's tensor, on `dst` (zeros elsewhere), as a tuple."""
    _deprecated("gather")
    return _Gather.apply(dst, group, tensor)


def scatter(tensors, src=0, group=None):
    """This rank's tensor of `src`'s list."""
    _deprecated("scatter")
    return _Scatter.apply(src, group, *tensors)


def reduce(tensor, dst, op=ReduceOp.SUM, group=None):
    """The reduction of every rank's tensor, on `dst`."""
    _deprecated("reduce")
    return _Reduce.apply(dst, op, group, tensor)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None):
    """This rank's slot of the reduction of every rank's `input_list`."""
    _deprecated("reduce_scatter")
    return _ReduceScatter.apply(op, group, output, *input_list)


def all_gather(tensor, group=None):
    """Every rank's tensor, as a tuple; each rank's gradient is the sum, over ranks, of the
    gradients of its slot."""
    _deprecated("all_gather")
    return _AllGather.apply(group, tensor)


def all_to_all(output_tensor_list, input_tensor_list, group=None):
    """input_tensor_list[j] goes to rank j; the result holds what each rank sent here."""
    _deprecated("all_to_all")
    return _AllToAll.apply(group, output_tensor_list, *input_tensor_list)


def all_to_all_single(output, input, output_split_sizes=None, input_split_sizes=None,
                      group=None):
    _deprecated("all_to_all_single")
    return _AllToAllSingle.apply(group, output, output_split_sizes, input_split_sizes, input)


def all_reduce(tensor, op=ReduceOp.SUM, group=None):
    """The reduction of every rank's tensor, on every rank (out of place)."""
    _deprecated("all_reduce")
    return _AllReduce.apply(op, group, tensor)


class _Broadcast(Function):
    @staticmethod
    def forward(ctx, src, group, tensor):
        ctx.src, ctx.group = src, group
        out = tensor.clone()
        dist.broadcast(out, src, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        g = _Reduce.apply(ctx.src, ReduceOp.SUM, ctx.group, grad)
        return None, None, g if get_rank() == ctx.src else zeros_like(g)


class _Gather(Function):
    @staticmethod
    def forward(ctx, dst, group, tensor):
        ctx.dst, ctx.group = dst, group
        outs = [zeros_like(tensor) for _ in range(get_world_size(group))]
        here = get_rank() == dst
        dist.gather(tensor.contiguous(), outs if here else None, dst=dst, group=group)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        return None, None, _Scatter.apply(ctx.dst, ctx.group, *grads)


class _Scatter(Function):
    @staticmethod
    def forward(ctx, src, group, *tensors):
        ctx.src, ctx.group = src, group
        out = zeros_like(tensors[0])
        here = get_rank() == src
        dist.scatter(out, [t.contiguous() for t in tensors] if here else None, src=src,
                     group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        return (None, None) + _Gather.apply(ctx.src, ctx.group, grad)


class _Reduce(Function):
    @staticmethod
    def forward(ctx, dst, op, group, tensor):
        ctx.dst, ctx.group = dst, group
        out = tensor.clone()
        dist.reduce(out, dst, op=op, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        return None, None, None, _Broadcast.apply(ctx.dst, ctx.group, grad)


class _ReduceScatter(Function):
    @staticmethod
    def forward(ctx, op, group, output, *inputs):
        ctx.group = group
        out = output.clone()
        dist.reduce_scatter(out, [t.contiguous() for t in inputs], op=op, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        return (None, None, None) + _AllGather.apply(ctx.group, grad)


class _AllGather(Function):
    @staticmethod
    def forward(ctx, group, tensor):
        ctx.group = group
        outs = [zeros_like(tensor) for _ in range(get_world_size(group))]
        dist.all_gather(outs, tensor.contiguous(), group=group)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        mine = zeros_like(grads[0])
        dist.reduce_scatter(mine, [g.contiguous() for g in grads], op=ReduceOp.SUM,
                            group=ctx.group)
        return None, mine


class _AllToAll(Function):
    @staticmethod
    def forward(ctx, group, output_list, *inputs):
        ctx.group = group
        ctx.input_shapes = [t.shape for t in inputs]
        outs = [o.clone() for o in output_list]
        dist.all_to_all(outs, [t.contiguous() for t in inputs], group=group)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        buffers = [grads[0].new_zeros(shape) for shape in ctx.input_shapes]
        return (None, None) + _AllToAll.apply(ctx.group, buffers, *grads)


class _AllToAllSingle(Function):
    @staticmethod
    def forward(ctx, group, output, output_split_sizes, input_split_sizes, input):
        ctx.group, ctx.input_shape = group, input.shape
        ctx.splits = (output_split_sizes, input_split_sizes)
        out = output.clone()
        dist.all_to_all_single(out, input.contiguous(), output_split_sizes,
                               input_split_sizes, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        out_splits, in_splits = ctx.splits
        buffer = grad.new_zeros(ctx.input_shape)
        return (None, None, None, None,
                _AllToAllSingle.apply(ctx.group, buffer, in_splits, out_splits, grad))


class _AllReduce(Function):
    @staticmethod
    def forward(ctx, op, group, tensor):
        ctx.op, ctx.group = op, group
        out = tensor.clone()
        dist.all_reduce(out, op=op, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        return None, None, _AllReduce.apply(ctx.op, ctx.group, grad)


