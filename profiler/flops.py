"""FLOP estimates for `profile(with_flops=True)`: PyTorch's formulas (its profiler counts
aten::mm, addmm, bmm, baddbmm, conv2d, mul and add), on the Phalanx ops that do that work:

    Phalanx op   does PyTorch's                        FLOPs
    Matmul       mm, bmm (what matmul calls)           2 * batch * M * K * N; 0 for a 1-D
                                                       `other` (mv and dot count nothing)
    Linear       addmm / mm (what linear calls)        2 * rows * in_features * out_features
    _Conv        conv2d (conv1d and conv3d run as it)  2 * N * OH * OW * O * C/groups * kh * kw
    Mul, Add     mul, add                              the elements of the first tensor

Every other op counts 0, as in PyTorch. The counts come from the operand shapes (and a
convolution's geometry) when the op runs. Where Phalanx composes an op PyTorch has whole, its
parts count: addmm/baddbmm also count their Add, in-place mul_/add_ (which PyTorch leaves
out) count as Mul/Add, and a ReLU's backward counts its Mul. Linear's backward runs its GEMMs
on arrays inside the graph node, not as ops: the node itself counts them (`count_backward`),
where PyTorch counts them as aten::mm rows under AddmmBackward0; a Matmul's backward runs
Matmul ops, which count themselves.
"""
import math

from ..nn.functional.conv import _Conv
from ..nn.functional.linear import Linear
from ..tensor.ops.elementwise import Add, Mul
from ..tensor.ops.linalg import Matmul


def _shape(a):
    return getattr(getattr(a, "_data", None), "shape", ())


def _matmul(a, b, *rest):
    sa, sb = _shape(a), _shape(b)
    if len(sb) < 2 or not sa:                # mv and dot: PyTorch counts none
        return 0
    sa = sa if len(sa) > 1 else (1,) + sa    # a vector is one row (PyTorch's mm/bmm)
    batch = math.prod(y if x == 1 else x for x, y in zip(       # broadcast batch dims
        (1,) * (len(sb) - len(sa)) + sa[:-2], (1,) * (len(sa) - len(sb)) + sb[:-2]))
    return 2 * batch * sa[-2] * sa[-1] * sb[-1]


def _linear(x, weight, *rest):
    sx, sw = _shape(x), _shape(weight)
    if not sx or len(sw) != 2:               # an operand without an array here: not counted
        return 0
    return 2 * math.prod(sx[:-1]) * sw[0] * sw[1]


def _conv(x, weight, bias, geom):
    sx, (oh, ow) = _shape(x), geom.out_hw
    return 2 * sx[0] * oh * ow * math.prod(_shape(weight)) if sx else 0


def _elementwise(*operands):
    # PyTorch's first operand is its tensor `self` (a Python number comes second)
    return next((math.prod(_shape(a)) for a in operands if hasattr(a, "_data")), 0)


_RULES = {Matmul: _matmul, Linear: _linear, _Conv: _conv, Mul: _elementwise, Add: _elementwise}


def count(cls, args):
    """The FLOPs of op `cls` on `args` (0 for an op PyTorch does not count)."""
    rule = _RULES.get(cls)
    return rule(*args) if rule is not None else 0


def count_backward(node):
    """The FLOPs of the GEMMs graph node `node` runs on arrays (Linear's node: one product
    per input gradient it computes, each as large as the forward's); 0 for other nodes."""
    saved = node._saved
    if node.fn is not Linear or type(saved) is not tuple or len(saved) < 2:
        return 0                           # hooks packed what it saved: shapes unknown here
    gemm = _linear(saved[0], saved[1])
    return gemm * (bool(node.needs_input_grad[0]) + bool(node.needs_input_grad[1]))
