"""Comparisons, logical and bitwise ops, NaN/Inf tests, argmax/argmin: their outputs are boolean
or integer (masks for `where`, indices)."""
import numpy as np

from ...tensor.dtypes import result_type
from ...tensor.ops import elementwise as ew, reduction as red
from ..builder import Value
from .registry import emits, operand


class _Like:
    """Stands in for a tensor argument in the op library's type promotion (rank and dtype)."""

    def __init__(self, value):
        self._data = np.zeros((1,) * value.ndim, value.dtype)


def _common_dtype(*args):
    return result_type(*(_Like(a) if isinstance(a, Value) else a for a in args))


_COMPARE = {ew.Eq: "Equal", ew.Lt: "Less", ew.Le: "LessOrEqual", ew.Gt: "Greater",
            ew.Ge: "GreaterOrEqual"}


@emits(*_COMPARE, ew.Ne)
def compare(b, op, a, other):
    dt = _common_dtype(a, other)
    x, y = operand(b, a, dt), operand(b, other, dt)
    if op.cls is ew.Ne:
        b.node("Not", [b.node("Equal", [x, y])], op.out())
    else:
        b.node(_COMPARE[op.cls], [x, y], op.out())


_LOGICAL = {ew.LogicalAnd: "And", ew.LogicalOr: "Or", ew.LogicalXor: "Xor"}
_BITWISE = {ew.BitwiseAnd: "BitwiseAnd", ew.BitwiseOr: "BitwiseOr", ew.BitwiseXor: "BitwiseXor"}


@emits(*_LOGICAL)
def logical(b, op, a, other):
    b.node(_LOGICAL[op.cls], [operand(b, a, np.bool_), operand(b, other, np.bool_)], op.out())


@emits(*_BITWISE)
def bitwise(b, op, a, other):
    dt = op.outputs[0].dtype
    if dt == np.bool_:  # on booleans the bitwise ops are the logical ones
        names = {ew.BitwiseAnd: "And", ew.BitwiseOr: "Or", ew.BitwiseXor: "Xor"}
        b.node(names[op.cls], [operand(b, a, dt), operand(b, other, dt)], op.out())
        return
    if b.opset < 18:
        raise op.unsupported(f"bitwise ops on {dt} tensors need opset 18 or later (got "
                             f"{b.opset}); pass opset_version=18")
    b.node(_BITWISE[op.cls], [operand(b, a, dt), operand(b, other, dt)], op.out())


@emits(ew.LogicalNot)
def logical_not(b, op, x):
    b.node("Not", [operand(b, x, np.bool_)], op.out())


@emits(ew.BitwiseNot)
def bitwise_not(b, op, x):
    if x.dtype == np.bool_:
        b.node("Not", [b.use(x)], op.out())
    elif b.opset < 18:
        raise op.unsupported(f"bitwise_not on {x.dtype} tensors needs opset 18 or later (got "
                             f"{b.opset}); pass opset_version=18")
    else:
        b.node("BitwiseNot", [b.use(x)], op.out())


@emits(ew.IsNan, ew.IsInf, ew.IsFinite)
def nan_inf(b, op, x):
    if x.dtype.kind != "f":  # integers are never NaN or infinite
        shape = b.node("Shape", [b.use(x)])
        fill = op.cls is ew.IsFinite
        b.node("ConstantOfShape", [shape], op.out(),
               value=b.onnx.numpy_helper.from_array(np.array([fill], np.bool_)))
        return
    name = b.use(x)
    if op.cls is ew.IsNan:
        b.node("IsNaN", [name], op.out())
    elif op.cls is ew.IsInf:
        b.node("IsInf", [name], op.out())
    else:
        bad = b.node("Or", [b.node("IsNaN", [name]), b.node("IsInf", [name])])
        b.node("Not", [bad], op.out())


@emits(red.Argmax, red.Argmin)
def argmax(b, op, x, dim=None, keepdim=False):
    onnx_op = "ArgMax" if op.cls is red.Argmax else "ArgMin"
    name = b.use(x)
    if dim is None:
        flat = b.node("Reshape", [name, b.const(np.array([-1], np.int64))])
        idx = b.node(onnx_op, [flat], axis=0, keepdims=0)
        if keepdim:
            b.node("Reshape", [idx, b.const(np.ones(x.ndim, np.int64))], op.out())
        else:
            b.finish(idx, op.out())
        return
    if x.ndim == 0:
        raise op.unsupported("argmax/argmin over a dim of a 0-d tensor")
    b.node(onnx_op, [name], op.out(), axis=dim % x.ndim, keepdims=int(keepdim))
