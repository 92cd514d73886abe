"""Inverse trigonometric and hyperbolic functions, atan2."""
import math

from ...tensor.ops import mathfuncs as mf
from .registry import emits, operand

_UNARY = {mf.Asin: "Asin", mf.Acos: "Acos", mf.Atan: "Atan", mf.Sinh: "Sinh",
          mf.Cosh: "Cosh", mf.Asinh: "Asinh", mf.Acosh: "Acosh", mf.Atanh: "Atanh"}


@emits(*_UNARY)
def unary(b, op, x):
    b.node(_UNARY[op.cls], [operand(b, x, op.outputs[0].dtype)], op.out())


@emits(mf.Atan2)
def atan2(b, op, y, x):
    """atan(y / x), moved by +-pi where x < 0 (to y's side), +-pi/2 where x == 0."""
    dt = op.outputs[0].dtype
    y, x = operand(b, y, dt), operand(b, x, dt)
    zero = b.scalar(0, dt)
    base = b.node("Atan", [b.node("Div", [y, x])])
    sign_y = b.node("Where", [b.node("Less", [y, zero]), b.scalar(-1, dt), b.scalar(1, dt)])
    shifted = b.node("Add", [base, b.node("Mul", [sign_y, b.scalar(math.pi, dt)])])
    out = b.node("Where", [b.node("Less", [x, zero]), shifted, base])
    axis = b.node("Mul", [sign_y, b.scalar(math.pi / 2, dt)])
    axis = b.node("Where", [b.node("Equal", [y, zero]), b.scalar(0, dt), axis])
    b.node("Where", [b.node("Equal", [x, zero]), axis, out], op.out())


