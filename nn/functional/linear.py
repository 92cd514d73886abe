"""linear (one fused Function) and bilinear (einsum: its backward comes from the primitives)."""
import math

from ...autograd import Function, dispatch, is_grad_enabled
from ...tensor import Tensor, einsum
from ...tensor.backend import array_module


class Linear(Function):
    """y = x @ W.T + b, fused, for x (..., in_features) of any rank: the leading dims fold
    into one GEMM inside the op (two reshapes fewer each way than folding around it), the bias
    is added in place, and the weight gradient comes out as one C-ordered GEMM (the
    composite's went through a transpose, and storing that Fortran-ordered array into .grad
    cost a strided copy as long as the GEMM itself)."""

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        xd, wd = x._data, weight._data
        if xd.ndim == 2:     # PyTorch's addmm(bias, input, weight.t()) or mm(input, weight.t())
            ctx.node_name, ctx.graph_inputs = ("Mm", (0, 1)) if bias is None else \
                ("Addmm", (2, 0, 1))
        if xd.dtype != wd.dtype or (bias is not None and bias._data.dtype != wd.dtype):
            raise RuntimeError(
                f"linear: input ({x.dtype}), weight ({weight.dtype})"
                + (f" and bias ({bias.dtype})" if bias is not None else "")
                + " must have the same dtype; convert the input, e.g. x.to(weight.dtype)")
        out = _rows(xd) @ wd.T
        if bias is not None:
            out += bias._data
        ctx.save_for_backward(x, weight)
        return Tensor._make(out if xd.ndim == 2 else out.reshape(xd.shape[:-1] + wd.shape[:1]))

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad + (False,) * (3 - len(ctx.needs_input_grad))
        if not is_grad_enabled():   # nothing to record: three GEMM/sum calls on arrays
            return _array_grads(ctx, g._data, x._data, weight._data, need_x, need_w, need_b)
        g2, x2 = (g, x) if x.ndim == 2 else (g.reshape(_rows_shape(g)),
                                             x.reshape(_rows_shape(x)))
        gx = gw = gb = None
        if need_w:       # straight into the weight's gradient home (a DDP bucket) if it has one
            home = ctx.gradient_buffer(1)
            gw = g2.mT @ x2 if home is None else \
                Tensor._make(array_module(home).matmul(g2._data.T, x2._data, out=home))
        if need_b:
            home = ctx.gradient_buffer(2)
            gb = g2.sum(0) if home is None else Tensor._make(g2._data.sum(0, out=home))
        if need_x:
            gx = g2 @ weight
            gx = gx if x.ndim == 2 else gx.reshape(x.shape)
        return gx, gw, gb


def _rows(a):
    """(..., n) -> (rows, n)."""
    return a if a.ndim == 2 else a.reshape(_rows_shape(a))


def _rows_shape(a):
    """(rows, n) for (..., n), also where n is 0 (-1 would be ambiguous there)."""
    return (math.prod(a.shape[:-1]), a.shape[-1])


def _array_grads(ctx, gd, xd, wd, need_x, need_w, need_b):
    """Linear's gradients as plain arrays (written into their gradient homes where offered)."""
    xp = array_module(gd)
    g2 = _rows(gd)
    gx = gw = gb = None
    if need_w:
        gw = Tensor._make(xp.matmul(g2.T, _rows(xd), out=ctx.gradient_buffer(1)))
    if need_b:
        gb = Tensor._make(g2.sum(0, out=ctx.gradient_buffer(2)))
    if need_x:
        gx = Tensor._make((g2 @ wd).reshape(xd.shape))
    return gx, gw, gb


def linear(input, weight, bias=None):
    """y = input @ weight.T + bias, with weight of shape (out_features, in_features)."""
    if input.shape[-1] != weight.shape[-1]:
        rows = math.prod(input.shape[:-1])       # PyTorch's words first: people search them
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows}x"
                           f"{input.shape[-1]} and {weight.shape[-1]}x{weight.shape[0]}): "
                           f"linear's input has {input.shape[-1]} features in its last "
                           f"dimension (shape {list(input.shape)}) but weight has shape "
                           f"{list(weight.shape)} (out_features, in_features={weight.shape[-1]})")
    if weight.ndim != 2 or weight.dtype.is_complex or input.dtype.is_complex:
        # complex: the composed ops conjugate in backward, as PyTorch's gradients do
        out = input.matmul(weight if weight.ndim != 2 else weight.mT)
        return out if bias is None else out + bias
    if input.ndim == 2 or not dispatch.watching():
        return Linear.apply(input, weight, bias)
    # an observer sees Linear on 2-D inputs only (ONNX export's Gemm): fold around it
    lead = tuple(input.shape[:-1])
    out = Linear.apply(input.reshape(-1, input.shape[-1]), weight, bias)
    return out.reshape(lead + (weight.shape[0],))


def bilinear(input1, input2, weight, bias=None):
    """y_o = x1 @ weight[o] @ x2 + bias_o, with weight of shape (out, in1, in2)."""
    if input1.shape[-1] != weight.shape[1] or input2.shape[-1] != weight.shape[2]:
        raise RuntimeError(f"bilinear: inputs of shapes {list(input1.shape)} and "
                           f"{list(input2.shape)} do not match weight of shape "
                           f"{list(weight.shape)} (out_features, in1_features, in2_features)")
    lead = tuple(input1.shape[:-1])
    out = einsum("bi,oij,bj->bo", input1.reshape(-1, weight.shape[1]), weight,
                 input2.reshape(-1, weight.shape[2]))
    out = out.reshape(lead + (weight.shape[0],))
    return out if bias is None else out + bias
