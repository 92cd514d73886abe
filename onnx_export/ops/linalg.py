"""matmul, linear (Gemm) and einsum."""
from ...nn.functional.linear import Linear
from ...tensor.ops import linalg
from .registry import emits, operand


@emits(linalg.Matmul)
def matmul(b, op, a, other):
    dt = op.outputs[0].dtype
    b.node("MatMul", [operand(b, a, dt), operand(b, other, dt)], op.out())


@emits(Linear)
def linear(b, op, x, weight, bias=None):
    # the fused op takes 2-D inputs only (F.linear folds other ranks around it)
    inputs = [b.use(x), b.use(weight)] + ([] if bias is None else [b.use(bias)])
    b.node("Gemm", inputs, op.out(), transB=1)


@emits(linalg.Einsum)
def einsum(b, op, equation, *operands):
    dt = op.outputs[0].dtype
    b.node("Einsum", [operand(b, t, dt) for t in operands], op.out(), equation=equation)
