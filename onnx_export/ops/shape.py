"""Shape ops: reshape, permute, expand, cat, stack, flip, roll, pad, tile, unbind, tril/triu."""
import numpy as np

from ...tensor.ops import shape
from ..builder import INT64_MIN
from ..merge import Dim
from .registry import emits, operand


@emits(shape.Reshape)
def reshape(b, op, x, target):
    target = list(target)
    dims = [i for i, s in enumerate(target) if isinstance(s, Dim)]
    if len(dims) == 1 and -1 not in target:
        target[dims[0]] = -1  # the one size that follows the input: let Reshape infer it
    zero = any(not isinstance(s, Dim) and s == 0 for s in target)
    b.node("Reshape", [b.use(x), b.shape_tensor(target)], op.out(),
           allowzero=1 if zero else None)


@emits(shape.Permute)
def permute(b, op, x, dims):
    b.node("Transpose", [b.use(x)], op.out(), perm=[d % x.ndim for d in dims])


@emits(shape.Expand)
def expand(b, op, x, target):
    lead = len(target) - x.ndim
    have = x.dims(b.axes) or x.shape
    # Expand broadcasts: a 1 keeps the input's size, so only sizes that grow are spelled out
    sizes = [1 if s == -1 or (i >= lead and have[i - lead] == s) else s
             for i, s in enumerate(target)]
    b.node("Expand", [b.use(x), b.shape_tensor(sizes)], op.out())


@emits(shape.Cat)
def cat(b, op, dim, *tensors):
    dt = op.outputs[0].dtype
    # PyTorch skips 1-D empty tensors in cat
    kept = [t for t in tensors if t.shape != (0,)] or list(tensors[:1])
    axis = dim % op.outputs[0].ndim
    b.node("Concat", [operand(b, t, dt) for t in kept], op.out(), axis=axis)


@emits(shape.Stack)
def stack(b, op, dim, *tensors):
    dt = op.outputs[0].dtype
    b.node("Concat", [b.unsqueeze(operand(b, t, dt), [dim]) for t in tensors], op.out(),
           axis=dim)


@emits(shape.Flip)
def flip(b, op, x, dims):
    dims = [d % x.ndim for d in dims]
    k = len(dims)
    b.node("Slice", [b.use(x), b.int64s([-1] * k), b.int64s([INT64_MIN] * k), b.int64s(dims),
                     b.int64s([-1] * k)], op.out())


@emits(shape.Roll)
def roll(b, op, x, shifts, dims):
    shifts = list(shifts) if isinstance(shifts, (tuple, list)) else [shifts]
    dims = list(dims) if isinstance(dims, (tuple, list)) else [dims]
    y = b.use(x)
    for s, d in zip(shifts, dims):
        d %= x.ndim
        n = x.shape[d]
        if isinstance(s, Dim) or (x.dims(b.axes) or x.shape)[d] != n:
            raise op.unsupported("roll along a dynamic axis")
        s %= n
        if s:
            tail = b.node("Slice", [y, b.int64s([n - s]), b.int64s([n]), b.int64s([d])])
            head = b.node("Slice", [y, b.int64s([0]), b.int64s([n - s]), b.int64s([d])])
            y = b.node("Concat", [tail, head], axis=d)
    b.finish(y, op.out())


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
              "circular": "wrap"}


@emits(shape.Pad)
def pad(b, op, x, widths, mode="constant", value=0.0):
    if mode == "circular" and b.opset < 19:
        raise op.unsupported(f"circular padding needs opset 19 or later (opset_version="
                             f"{b.opset})")
    n = x.ndim
    begins, ends = [0] * n, [0] * n
    for i in range(len(widths) // 2):
        begins[n - 1 - i], ends[n - 1 - i] = widths[2 * i], widths[2 * i + 1]
    inputs = [b.use(x), b.shape_tensor(begins + ends)]
    if mode == "constant":
        inputs.append(b.scalar(value, x.dtype))
    b.node("Pad", inputs, op.out(), mode=_PAD_MODES[mode])


@emits(shape.Tile)
def tile(b, op, x, reps):
    reps = list(reps)
    y = b.use(x)
    if len(reps) < x.ndim:
        reps = [1] * (x.ndim - len(reps)) + reps
    elif len(reps) > x.ndim:
        y = b.unsqueeze(y, list(range(len(reps) - x.ndim)))
    b.node("Tile", [y, b.shape_tensor(reps)], op.out())


@emits(shape.Unbind)
def unbind(b, op, x, dim):
    y = b.use(x)
    for j in range(len(op.outputs)):  # unused slices are pruned with the rest of dead code
        b.node("Gather", [y, b.scalar(j, np.int64)], op.out(j), axis=dim % x.ndim)


@emits(shape.Triangle)
def triangle(b, op, x, diagonal=0, upper=False):
    if b.opset >= 14:
        b.node("Trilu", [b.use(x), b.scalar(diagonal, np.int64)], op.out(), upper=int(upper))
        return
    rows, cols = (x.dims(b.axes) or (None, None))[-2:]
    if isinstance(rows, Dim) or isinstance(cols, Dim) or rows is None:
        raise op.unsupported(f"tril/triu over dynamic axes needs opset 14 or later "
                             f"(opset_version={b.opset})")
    ones = np.ones((rows, cols), dtype=bool)
    keep = np.triu(ones, diagonal) if upper else np.tril(ones, diagonal)
    b.node("Where", [b.const(keep, "triangle"), b.use(x), b.scalar(0, x.dtype)], op.out())
