"""Reductions, softmax and log-softmax, cumsum, norms."""
from ...tensor.ops import reduction as red
from .registry import emits, operand


def _axes(dim, ndim):
    """ONNX axes for a PyTorch dim (None or () means all of them)."""
    if dim is None or dim == ():
        return None
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return sorted(d % max(ndim, 1) for d in dims)


def _reducer(onnx_op):
    def emit(b, op, x, dim=None, keepdim=False, dtype=None):
        out_dtype = op.outputs[0].dtype
        b.reduce(onnx_op, operand(b, x, out_dtype), _axes(dim, x.ndim), keepdim, op.out())
    return emit


emits(red.Sum)(_reducer("ReduceSum"))
emits(red.Mean)(_reducer("ReduceMean"))
emits(red.Prod)(_reducer("ReduceProd"))


@emits(red.Amax)
def amax(b, op, x, dim=None, keepdim=False, largest=True):
    b.reduce("ReduceMax" if largest else "ReduceMin", b.use(x), _axes(dim, x.ndim), keepdim,
             op.out())


@emits(red.MaxDim)
def max_dim(b, op, x, dim, keepdim=False, largest=True):
    if x.ndim == 0:
        raise op.unsupported("max/min over a 0-d tensor")
    dim %= x.ndim
    name = b.use(x)
    b.reduce("ReduceMax" if largest else "ReduceMin", name, [dim], keepdim, op.out(0))
    b.node("ArgMax" if largest else "ArgMin", [name], op.out(1), axis=dim,
           keepdims=int(keepdim))


@emits(red.Logsumexp)
def logsumexp(b, op, x, dim, keepdim=False):
    axes = _axes(dim, x.ndim)
    name = b.use(x)
    peak = b.reduce("ReduceMax", name, axes, True)  # subtracted first, as the op does
    total = b.reduce("ReduceSum", b.node("Exp", [b.node("Sub", [name, peak])]), axes, True)
    out = b.node("Add", [b.node("Log", [total]), peak])
    if keepdim:
        b.finish(out, op.out())
    else:
        b.squeeze(out, axes if axes is not None else list(range(x.ndim)), op.out())


@emits(red.Softmax, red.LogSoftmax)
def softmax(b, op, x, dim):
    b.node("Softmax" if op.cls is red.Softmax else "LogSoftmax", [b.use(x)], op.out(),
           axis=dim % max(x.ndim, 1))


@emits(red.Cumsum)
def cumsum(b, op, x, dim):
    if x.ndim == 0:
        b.finish(operand(b, x, op.outputs[0].dtype), op.out())
        return
    b.node("CumSum", [operand(b, x, op.outputs[0].dtype),
                      b.scalar(dim % x.ndim, "int64")], op.out())


@emits(red.VectorNorm)
def vector_norm(b, op, x, p=2, dim=None, keepdim=False):
    axes = _axes(dim, x.ndim)
    name = b.use(x)
    if p in (1, 2):
        b.reduce("ReduceL1" if p == 1 else "ReduceL2", name, axes, keepdim, op.out())
        return
    dt = op.outputs[0].dtype
    powered = b.node("Pow", [b.node("Abs", [name]), b.scalar(p, dt)])
    total = b.reduce("ReduceSum", powered, axes, keepdim)
    b.node("Pow", [total, b.scalar(1.0 / p, dt)], op.out())
