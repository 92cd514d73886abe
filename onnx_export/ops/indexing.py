"""Indexing: x[idx] (basic slicing and one integer-array index), gather, scatter, whole-tensor
writes (copy_, fill_) and embedding lookups."""
import numpy as np

from ...nn.functional import sparse
from ...tensor.ops import indexing
from ..builder import INT64_MAX, INT64_MIN, Value
from ..merge import Dim
from .registry import emits, operand


def _is_integer(i):
    return isinstance(i, (int, np.integer, Dim)) and not isinstance(i, (bool, np.bool_))


def _is_array_index(i):
    return isinstance(i, (Value, list, np.ndarray))


@emits(indexing.GetItem)
def getitem(b, op, x, idx):
    idx = list(idx) if isinstance(idx, tuple) else [idx]
    for i in idx:
        if isinstance(i, bool) or (isinstance(i, (Value, np.ndarray)) and
                                   np.dtype(i.dtype).kind == "b"):
            raise op.unsupported("boolean-mask indexing gives a shape that depends on the "
                                 "mask's values; use torch.where-style masking instead")
    consumed = sum(1 for i in idx if i is not None and i is not Ellipsis)
    fill = [slice(None)] * (x.ndim - consumed)
    ellipsis = [k for k, i in enumerate(idx) if i is Ellipsis]
    if ellipsis:
        idx[ellipsis[0]:ellipsis[0] + 1] = fill
    else:
        idx += fill
    starts, ends, axes, steps = [], [], [], []
    squeeze, unsqueeze, arrays = [], [], []
    d = out = 0
    for i in idx:
        if i is None:
            unsqueeze.append(out)
            out += 1
        elif isinstance(i, slice):
            step = 1 if i.step is None else i.step
            if not (i.start in (None, 0) and i.stop is None and step == 1):
                starts.append(i.start if i.start is not None else
                              (0 if step > 0 else INT64_MAX))
                ends.append(i.stop if i.stop is not None else
                            (INT64_MAX if step > 0 else INT64_MIN))
                axes.append(d)
                steps.append(step)
            d += 1
            out += 1
        elif _is_integer(i):
            if isinstance(i, Dim):
                raise op.unsupported("an integer index that follows a dynamic axis")
            starts.append(i)
            ends.append(INT64_MAX if i == -1 else i + 1)
            axes.append(d)
            steps.append(1)
            squeeze.append(d)
            d += 1
        elif _is_array_index(i):
            arrays.append((d, out, i))
            d += 1
            out += 1
        else:
            raise op.unsupported(f"index {i!r} of type {type(i).__name__}")
    if len(arrays) > 1 or (arrays and (squeeze or unsqueeze)):
        raise op.unsupported("advanced indexing with more than one array index, or an array "
                             "index together with integers or None; index one step at a time")
    y = b.use(x)
    if axes:
        y = b.node("Slice", [y, b.shape_tensor(starts), b.shape_tensor(ends), b.int64s(axes),
                             b.int64s(steps)])
    if arrays:
        axis, _, index = arrays[0]
        if isinstance(index, Value):
            index = operand(b, index, index.dtype)
        else:
            index = b.const(np.asarray(index, dtype=np.int64), "index")
        y = b.node("Gather", [y, index], axis=axis)
    if squeeze:
        y = b.squeeze(y, squeeze)
    if unsqueeze:
        y = b.unsqueeze(y, unsqueeze)
    b.finish(y, op.out())


@emits(indexing.Overwrite)
def overwrite(b, op, x, value, index):
    if tuple(index) != (Ellipsis,):
        raise op.unsupported(f"assignment into part of a tensor (x[{index!r}] = ...); build "
                             f"the result with cat/where instead")
    dt = op.outputs[0].dtype
    source = operand(b, value, dt)
    if isinstance(value, Value) and value.dims(b.axes) is not None and \
            value.dims(b.axes) == x.dims(b.axes):  # copy_ of a same-shaped tensor
        b.finish(source, op.out())
        return
    b.node("Expand", [source, b.node("Shape", [b.use(x)])], op.out())


def _crop(b, name, have, want):
    """`name` cut down to `want` in every dim where it is larger (gather and scatter accept
    an index smaller than the tensor it addresses)."""
    axes = [i for i, (h, w) in enumerate(zip(have, want)) if w < h]
    if not axes:
        return name
    return b.node("Slice", [name, b.int64s([0] * len(axes)),
                            b.int64s([want[a] for a in axes]), b.int64s(axes)])


@emits(indexing.Gather)
def gather(b, op, x, dim, index):
    dim %= x.ndim
    cropped = _crop(b, b.use(x), [s if i != dim else 0 for i, s in enumerate(x.shape)],
                    [s if i != dim else 0 for i, s in enumerate(index.shape)])
    b.node("GatherElements", [cropped, b.use(index)], op.out(), axis=dim)


@emits(indexing.Scatter)
def scatter(b, op, x, dim, index, src, accumulate=False):
    dim %= x.ndim
    dt = op.outputs[0].dtype
    idx = b.use(index)
    if isinstance(src, Value):
        updates = _crop(b, operand(b, src, dt), src.shape, index.shape)
    else:
        updates = b.node("Expand", [b.scalar(src, dt), b.node("Shape", [idx])])
    if accumulate and b.opset < 16:
        raise op.unsupported(f"scatter_add needs opset 16 or later (opset_version={b.opset})")
    b.node("ScatterElements", [b.use(x), idx, updates], op.out(), axis=dim,
           reduction="add" if accumulate else None)


@emits(sparse.Embedding)
def embedding(b, op, weight, index, padding_idx, scale_grad_by_freq=False):
    # padding_idx and scale_grad_by_freq shape only the gradient: the graph is a row gather
    b.node("Gather", [b.use(weight), b.use(index)], op.out(), axis=0)
