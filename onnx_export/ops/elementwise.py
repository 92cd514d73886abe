"""Elementwise ops and activations; dtype conversion and clone."""
import math

import numpy as np

from ...tensor.ops import conversion as conv_ops, elementwise as ew
from ..builder import Value
from .registry import emits, operand


def _binary(onnx_op):
    def emit(b, op, a, other):
        dt = op.outputs[0].dtype
        b.node(onnx_op, [operand(b, a, dt), operand(b, other, dt)], op.out())
    return emit


for _cls, _onnx_op in ((ew.Mul, "Mul"), (ew.Div, "Div"), (ew.Maximum, "Max"),
                       (ew.Minimum, "Min")):
    emits(_cls)(_binary(_onnx_op))


@emits(ew.Add, ew.Sub)
def add_sub(b, op, a, other, alpha=1):
    dt = op.outputs[0].dtype
    y = operand(b, other, dt)
    if alpha != 1:
        y = b.node("Mul", [y, b.scalar(alpha, dt)])
    b.node("Add" if op.cls is ew.Add else "Sub", [operand(b, a, dt), y], op.out())


@emits(ew.Pow)
def pow_(b, op, a, exponent):
    dt = op.outputs[0].dtype
    b.node("Pow", [operand(b, a, dt), operand(b, exponent, dt)], op.out())


_UNARY = {ew.Neg: "Neg", ew.Exp: "Exp", ew.Log: "Log", ew.Sqrt: "Sqrt", ew.Sin: "Sin",
          ew.Cos: "Cos", ew.Tanh: "Tanh", ew.Sigmoid: "Sigmoid", ew.Abs: "Abs",
          ew.Relu: "Relu", ew.Erf: "Erf", ew.Sign: "Sign", ew.Floor: "Floor",
          ew.Ceil: "Ceil"}


@emits(*_UNARY)
def unary(b, op, x):
    b.node(_UNARY[op.cls], [operand(b, x, op.outputs[0].dtype)], op.out())


@emits(ew.Log1p, ew.Expm1, ew.Rsqrt, ew.Silu)
def composite_unary(b, op, x):
    dt = op.outputs[0].dtype
    x = operand(b, x, dt)
    one = b.scalar(1, dt)
    if op.cls is ew.Log1p:
        b.node("Log", [b.node("Add", [x, one])], op.out())
    elif op.cls is ew.Expm1:
        b.node("Sub", [b.node("Exp", [x]), one], op.out())
    elif op.cls is ew.Rsqrt:
        b.node("Reciprocal", [b.node("Sqrt", [x])], op.out())
    else:
        b.node("Mul", [x, b.node("Sigmoid", [x])], op.out())


@emits(ew.Log2, ew.Log10)
def log_base(b, op, x):
    dt = op.outputs[0].dtype
    base = 2.0 if op.cls is ew.Log2 else 10.0
    b.node("Div", [b.node("Log", [operand(b, x, dt)]), b.scalar(math.log(base), dt)],
           op.out())


@emits(ew.Trunc)
def trunc(b, op, x):            # ONNX has no Trunc: sign(x) * floor(|x|)
    x = operand(b, x, op.outputs[0].dtype)
    b.node("Mul", [b.node("Sign", [x]), b.node("Floor", [b.node("Abs", [x])])], op.out())


@emits(ew.Round)
def round_(b, op, x, decimals=0):   # ONNX's Round is half to even, as NumPy's and PyTorch's
    dt = op.outputs[0].dtype
    x = operand(b, x, dt)
    if not decimals:
        b.node("Round", [x], op.out())
        return
    scale = b.scalar(10.0 ** decimals, dt)
    b.node("Div", [b.node("Round", [b.node("Mul", [x, scale])]), scale], op.out())


@emits(ew.LeakyRelu)
def leaky_relu(b, op, x, negative_slope=0.01):
    b.node("LeakyRelu", [operand(b, x, op.outputs[0].dtype)], op.out(),
           alpha=float(negative_slope))


@emits(ew.Gelu)
def gelu(b, op, x, approximate="none"):
    dt = op.outputs[0].dtype
    x = operand(b, x, dt)
    if b.opset >= 20:
        b.node("Gelu", [x], op.out(), approximate=approximate)
        return
    half_x = b.node("Mul", [x, b.scalar(0.5, dt)])
    if approximate == "tanh":
        cube = b.node("Mul", [b.node("Mul", [x, x]), x])
        inner = b.node("Add", [x, b.node("Mul", [cube, b.scalar(0.044715, dt)])])
        t = b.node("Tanh", [b.node("Mul", [inner, b.scalar(math.sqrt(2 / math.pi), dt)])])
    else:
        t = b.node("Erf", [b.node("Mul", [x, b.scalar(1 / math.sqrt(2), dt)])])
    b.node("Mul", [half_x, b.node("Add", [t, b.scalar(1, dt)])], op.out())


@emits(ew.Softplus)
def softplus(b, op, x, beta=1.0, threshold=20.0):
    dt = op.outputs[0].dtype
    x = operand(b, x, dt)
    z = x if beta == 1 else b.node("Mul", [x, b.scalar(beta, dt)])
    soft = b.node("Softplus", [z])
    if beta != 1:
        soft = b.node("Div", [soft, b.scalar(beta, dt)])
    # linear above the threshold, as in PyTorch
    b.node("Where", [b.node("Greater", [z, b.scalar(threshold, dt)]), x, soft], op.out())


@emits(ew.Clamp)
def clamp(b, op, x, min=None, max=None):
    dt = op.outputs[0].dtype
    y = operand(b, x, dt)
    if isinstance(min, Value) or isinstance(max, Value):  # tensor bounds broadcast
        if min is not None:
            y = b.node("Max", [y, operand(b, min, dt)])
        if max is not None:
            y = b.node("Min", [y, operand(b, max, dt)])
        b.finish(y, op.out())
        return
    b.node("Clip", [y, None if min is None else b.scalar(min, dt),
                    None if max is None else b.scalar(max, dt)], op.out())


@emits(ew.Where)
def where(b, op, cond, a, other):
    dt = op.outputs[0].dtype
    c = operand(b, cond, np.bool_)
    b.node("Where", [c, operand(b, a, dt), operand(b, other, dt)], op.out())


@emits(conv_ops.ToCopy)
def to_copy(b, op, x, np_dtype, device, non_blocking=False):
    b.cast(b.use(x), x.dtype, op.outputs[0].dtype, op.out())


@emits(conv_ops.Clone)
def clone(b, op, x):
    b.node("Identity", [b.use(x)], op.out())
