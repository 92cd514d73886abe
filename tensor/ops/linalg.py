"""matmul (batched, broadcasting) and einsum."""
import math
import string

import numpy as np

from ...autograd import Function
from ..backend import array_module
from ._util import binary_operands, make, named, unbroadcast
from .complex import conj_grad, keep_real, real_operands


_MATMUL_NAMES = {(2, 2): "Mm", (2, 1): "Mv", (1, 1): "Dot"}    # PyTorch's node per case


class Matmul(Function):
    saved_names = ("self", "other")

    @staticmethod
    def forward(ctx, a, b):
        x, y = binary_operands(a, b)
        if x.ndim == 0 or y.ndim == 0:
            raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                               f"{x.ndim}D and {y.ndim}D")
        ctx.node_name = _MATMUL_NAMES.get((x.ndim, y.ndim)) or \
            ("UnsafeView" if max(x.ndim, y.ndim) > 2 else None)
        kx = x.shape[-1]
        ky = y.shape[-2] if y.ndim > 1 else y.shape[0]
        if kx != ky:
            raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({_fmt(x.shape)} and "
                               f"{_fmt(y.shape)}): inner dimensions {kx} and {ky} differ")
        ctx.save_for_backward(a, b)
        if x.dtype.kind == "c":
            ctx.real_in = real_operands(a, b)
        if x.ndim > 2 and y.ndim == 2:
            # a stack of rows times one matrix is one 2-D GEMM (NumPy would loop the stack)
            return make((x.reshape(-1, kx) @ y).reshape(x.shape[:-1] + y.shape[-1:]))
        return make(x @ y)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        if g._data.dtype.kind == "c":  # complex: g @ b^H and a^H @ g, real inputs keep Re
            real_a, real_b = getattr(ctx, "real_in", (False, False))
            ga, gb = Matmul._backward(a.conj(), b.conj(), g, na, nb)
            return keep_real(ga, real_a), keep_real(gb, real_b)
        return Matmul._backward(a, b, g, na, nb)

    @staticmethod
    def _backward(a, b, g, na, nb):
        a2 = a.unsqueeze(0) if a.ndim == 1 else a
        b2 = b.unsqueeze(-1) if b.ndim == 1 else b
        g2 = g  # the gradient of a2 @ b2
        if a.ndim == 1 and b.ndim == 1:
            g2 = g.reshape(1, 1)
        elif a.ndim == 1:
            g2 = g.unsqueeze(-2)
        elif b.ndim == 1:
            g2 = g.unsqueeze(-1)
        ga = gb = None
        if na:
            ga = _to_shape(unbroadcast(g2 @ b2.mT, a2.shape), a.shape)
        if nb:
            if a.ndim > 2 and b.ndim == 2:  # one GEMM over the folded stack, not a batch + sum
                k, n = b.shape
                gb = a.reshape(-1, k).mT @ g.reshape(-1, n)
            else:
                gb = _to_shape(unbroadcast(a2.mT @ g2, b2.shape), b.shape)
        return ga, gb


def _to_shape(t, shape):
    return t if t.shape == shape else t.reshape(shape)


def _fmt(shape):
    return "x".join(str(s) for s in shape)


class Einsum(Function):
    @staticmethod
    def forward(ctx, equation, *operands):
        arrays = [o._data for o in operands]
        dt = arrays[0].dtype
        for a in arrays[1:]:
            if a.dtype != dt:
                raise RuntimeError(f"einsum(): operands must have the same dtype, got {dt} and "
                                   f"{a.dtype}")
        eq = equation.replace(" ", "")
        if "->" not in eq:  # implicit output: sorted labels that appear once
            labels = eq.replace(",", "")
            eq = eq + "->" + "".join(sorted(c for c in set(labels) if labels.count(c) == 1))
        ctx.eq = eq
        ctx.save_for_backward(*operands)
        return make(array_module(arrays[0]).einsum(eq, *arrays, optimize=_worth_planning(
            eq, arrays)))

    @staticmethod
    def backward(ctx, g):
        ops = ctx.saved_tensors
        ins, out = ctx.eq.split("->")
        ins = ins.split(",")
        grads = [None]
        for i, (spec, op) in enumerate(zip(ins, ops)):
            if not ctx.needs_input_grad[i + 1]:
                grads.append(None)
                continue
            others = [conj_grad(o) for j, o in enumerate(ops) if j != i]  # complex: conj
            other_specs = [s for j, s in enumerate(ins) if j != i]
            # labels of this operand that appear nowhere else are summed out in forward:
            # they come back by broadcasting (expand) after the einsum below
            avail = set(out) | set("".join(other_specs))
            kept = "".join(c for c in spec if c in avail)
            # repeated labels within one operand (diagonals) are not supported here
            if len(set(spec)) != len(spec):
                raise NotImplementedError("einsum backward with repeated labels in one operand")
            eq = ",".join([out] + other_specs) + "->" + kept
            gi = einsum(eq, g, *others)
            if kept != spec:
                gi = _place(gi, kept, spec).expand(op.shape)
            grads.append(gi)
        return tuple(grads)


def _place(g, kept, spec):
    """Reshape g (labels `kept`, in spec order) to spec's rank with size-1 summed-out dims."""
    shape = []
    k = 0
    for c in spec:
        if c in kept:
            shape.append(g.shape[k])
            k += 1
        else:
            shape.append(1)
    return g.reshape(shape)


def matmul(input, other):
    return Matmul.apply(input, other)


def mm(input, mat2):
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError(f"mm(): expected 2-D tensors, got {input.ndim}D and {mat2.ndim}D; "
                           f"use matmul for batched or vector products")
    return Matmul.apply(input, mat2)


def bmm(input, mat2):
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError(f"bmm(): expected 3-D tensors, got {input.ndim}D and {mat2.ndim}D")
    return named(Matmul.apply(input, mat2), Matmul, "Bmm")


def _worth_planning(eq, arrays):
    """Whether einsum should plan its contraction (pairwise, on BLAS): for three operands or
    more, and for two once the naive loop would be large (planning costs ~10 us; on 64x64
    matrices it is 3x faster, on 200x200 batches 6x)."""
    if len(arrays) > 2:
        return True
    sizes = {}
    for spec, a in zip(eq.split("->")[0].split(","), arrays):
        sizes.update(zip(spec, a.shape))
    return math.prod(sizes.values()) >= 1 << 15


def _write_out_ellipsis(equation, operands):
    """The equation with each '...' written as letters it does not use, and the operands with
    their '...' dims broadcast to one shape (right-aligned, as PyTorch broadcasts them); an
    implicit output puts them first."""
    ins, arrow, out = equation.replace(" ", "").partition("->")
    specs = ins.split(",")
    if len(specs) != len(operands):
        raise RuntimeError(f"einsum(): {len(specs)} operand specs for {len(operands)} operands")
    spans = [op.ndim - (len(s) - 3) if "..." in s else 0 for s, op in zip(specs, operands)]
    if min(spans) < 0:
        raise RuntimeError(f"einsum(): the equation {equation!r} has more labels than an "
                           f"operand has dims")
    shapes = [tuple(op.shape[s.index("..."):s.index("...") + k]) if "..." in s else ()
              for s, op, k in zip(specs, operands, spans)]
    try:
        common = np.broadcast_shapes(*shapes)
    except ValueError:
        raise RuntimeError(f"einsum(): the '...' dims {shapes} do not broadcast") from None
    unused = [c for c in string.ascii_letters if c not in equation]
    letters = "".join(unused[:len(common)])
    new_specs, new_ops = [], []
    for s, op, k in zip(specs, operands, spans):
        if "..." in s:
            at = s.index("...")
            full = tuple(op.shape[:at]) + common[len(common) - k:] + tuple(op.shape[at + k:])
            op = op.expand(*full) if full != tuple(op.shape) else op
            s = s.replace("...", letters[len(letters) - k:])
        new_specs.append(s)
        new_ops.append(op)
    if arrow:
        out = out.replace("...", letters)
    else:
        labels = "".join(specs).replace("...", "")
        out = letters + "".join(sorted(c for c in set(labels) if labels.count(c) == 1))
    return ",".join(new_specs) + "->" + out, new_ops


def einsum(equation, *operands):
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if "..." in equation:
        equation, operands = _write_out_ellipsis(equation, operands)
    return Einsum.apply(equation, *operands)


def outer(input, vec2):
    return input.reshape(*input.shape, 1) * vec2     # PyTorch's graph: a view and a mul


def dot(input, other):
    return Matmul.apply(input, other)
