"""Shape ops: reshape/view, permute/transpose, expand, cat, stack, flip, roll, pad, tile,
tril/triu, split; squeeze, unsqueeze, flatten, chunk, repeat are composed from them.

A Function here may stand for several PyTorch ops (Permute for permute, transpose and t;
Reshape for view, unsqueeze and squeeze): the functions below give its graph node the name
PyTorch gives that call's node (`named`), so that grad_fn and next_functions read as
PyTorch's. Only the tensor is an input of these nodes (`graph_inputs`): sizes and dims are
not."""
import numpy as np

from ...autograd import Function, dispatch
from .. import dtypes
from ..backend import array_module
from ..tensor import Size
from ._util import make, named, normalize_dim


class Reshape(Function):
    node_name = "View"
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, shape):
        d = x._data
        try:
            out = d.reshape(shape)
        except ValueError:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {d.size} "
                               f"(input shape {list(d.shape)})") from None
        ctx.shape = d.shape
        shares = out.base is not None and (out.base is d or out.base is d.base)
        return x._view_of(out, "reshape") if shares else make(out)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None


class Permute(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dims):
        d = x._data
        if len(dims) != d.ndim:
            raise RuntimeError(f"permute(): number of dims don't match: the input has {d.ndim} "
                               f"dims but {len(dims)} were given ({list(dims)})")
        dims = tuple([normalize_dim(i, d.ndim) for i in dims])
        inv = [None] * len(dims)
        for i, k in enumerate(dims):
            inv[k] = i
        if None in inv:
            raise RuntimeError(f"permute(): repeated dim in {list(dims)}")
        ctx.inv = tuple(inv)
        return x._view_of(d.transpose(dims), "permute", ctx.inv)

    @staticmethod
    def backward(ctx, g):
        return g.permute(*ctx.inv), None


class Expand(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, shape):
        d = x._data
        lead = len(shape) - d.ndim
        if lead < 0:
            raise RuntimeError(f"expand: the number of sizes provided ({len(shape)}) must be "
                               f"greater or equal to the number of dimensions in the tensor "
                               f"({d.ndim})")
        full = tuple(d.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
        for i, s in enumerate(d.shape):
            if s != 1 and s != full[i + lead]:
                raise RuntimeError(f"The expanded size of the tensor ({full[i + lead]}) must "
                                   f"match the existing size ({s}) at non-singleton dimension "
                                   f"{i + lead}. Target sizes: {list(shape)}. Tensor sizes: "
                                   f"{list(d.shape)}")
        ctx.shape = d.shape
        if full == d.shape:     # nothing to broadcast: a plain view, without NumPy's check
            return x._view_of(d.view())
        return x._view_of(array_module(d).broadcast_to(d, full))

    @staticmethod
    def backward(ctx, g):
        from ._util import unbroadcast
        return unbroadcast(g, ctx.shape), None


class Cat(Function):
    graph_inputs = slice(1, None)     # the tensors, not dim

    @staticmethod
    def forward(ctx, dim, *tensors):
        arrays = [t._data for t in tensors]
        if not arrays:
            raise RuntimeError("cat(): expected a non-empty list of Tensors")
        for i, a in enumerate(arrays):
            if a.ndim == 0:
                raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be "
                                   f"concatenated; use stack, or unsqueeze it first")
        # PyTorch skips 1-D empty tensors in cat
        keep = [a for a in arrays if not (a.ndim == 1 and a.shape[0] == 0)] or arrays[:1]
        ref = keep[0]
        dim = normalize_dim(dim, ref.ndim)
        for i, a in enumerate(keep):
            if a.ndim != ref.ndim or any(s != r for j, (s, r) in enumerate(zip(a.shape,
                                                                               ref.shape))
                                         if j != dim):
                raise RuntimeError(f"Sizes of tensors must match except in dimension {dim}. "
                                   f"Expected size {list(ref.shape)} but got size "
                                   f"{list(a.shape)} for tensor number {i} in the list.")
        from ..dtypes import result_type
        dt = result_type(*tensors)
        xp = array_module(ref)
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] if a.ndim == ref.ndim else None for a in arrays]
        return make(xp.concatenate([a.astype(dt, copy=False) for a in keep], axis=dim))

    @staticmethod
    def backward(ctx, g):
        out = [None]
        start = 0
        for n in ctx.sizes:
            if n is None:  # a skipped 1-D empty input
                out.append(g.new_zeros(0))
                continue
            idx = (slice(None),) * ctx.dim + (slice(start, start + n),)
            out.append(g[idx])
            start += n
        return tuple(out)


class Flip(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dims):
        d = x._data
        dims = tuple(normalize_dim(i, d.ndim) for i in dims)
        ctx.dims = dims
        return make(array_module(d).flip(d, dims).copy())

    @staticmethod
    def backward(ctx, g):
        return g.flip(ctx.dims), None


class Roll(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, shifts, dims):
        d = x._data
        ctx.shifts, ctx.dims = shifts, dims
        return make(array_module(d).roll(d, shifts, dims))

    @staticmethod
    def backward(ctx, g):
        s = ctx.shifts
        neg = tuple(-i for i in s) if isinstance(s, (tuple, list)) else -s
        return g.roll(neg, ctx.dims), None, None


class Pad(Function):
    """Constant, reflect, replicate and circular padding; `pad` lists (left, right) pairs
    starting from the last dim, as in torch.nn.functional.pad."""
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, pad, mode="constant", value=0.0):
        d = x._data
        if len(pad) % 2 or len(pad) // 2 > d.ndim:
            raise RuntimeError(f"pad: padding length {len(pad)} must be even and at most "
                               f"2 * ndim ({2 * d.ndim})")
        widths = [(0, 0)] * d.ndim
        for i in range(len(pad) // 2):
            widths[d.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
        if any(lo < 0 or hi < 0 for lo, hi in widths):
            # negative padding crops
            crop = tuple(slice(-lo if lo < 0 else 0, d.shape[i] + hi if hi < 0 else None)
                         for i, (lo, hi) in enumerate(widths))
            d = d[crop]
            widths = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
            ctx.crop = crop
        else:
            ctx.crop = None
        np_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
                   "circular": "wrap"}.get(mode)
        if np_mode is None:
            raise ValueError(f"pad: unknown mode {mode!r}; expected constant, reflect, "
                             f"replicate or circular")
        for dim, (lo, hi) in enumerate(widths):     # NumPy would reflect or wrap repeatedly
            size = d.shape[dim]
            if (mode == "reflect" and max(lo, hi) >= size) or \
                    (mode == "circular" and max(lo, hi) > size):
                bound = "less than" if mode == "reflect" else "at most"
                raise RuntimeError(f"pad: {mode} padding ({lo}, {hi}) at dimension {dim} of "
                                   f"input {list(x._data.shape)} must be {bound} that "
                                   f"dimension's size {size}, as in PyTorch")
        xp = array_module(d)
        ctx.node_name = _PAD_NODES[mode].format(len(pad) // 2)
        kw = {"constant_values": value} if np_mode == "constant" else {}
        ctx.widths, ctx.mode, ctx.shape, ctx.in_shape = widths, np_mode, d.shape, x._data.shape
        return make(xp.pad(d, widths, mode=np_mode, **kw))

    @staticmethod
    def backward(ctx, g):
        if ctx.mode == "constant":
            idx = tuple(slice(lo, lo + s) for (lo, _), s in zip(ctx.widths, ctx.shape))
            gi = g[idx]
        else:
            gi = PadBackward.apply(g, ctx.widths, ctx.mode, ctx.shape)
        if ctx.crop is not None:
            gi = Pad.apply(gi, _pad_list(ctx.crop, ctx.in_shape))
        return gi, None, None, None


# PyTorch's node per mode (its circular padding is composed: its last node is a copy)
_PAD_NODES = {"constant": "ConstantPadNd", "reflect": "ReflectionPad{}D",
              "replicate": "ReplicationPad{}D", "circular": "Pad"}


def _pad_list(crop, in_shape):
    """torch-style pad list that undoes a crop with zeros."""
    out = []
    for sl, n in reversed(list(zip(crop, in_shape))):
        lo = sl.start or 0
        hi = n - (sl.stop if sl.stop is not None else n)
        out += [lo, hi]
    return out


class PadBackward(Function):
    """Gradient of reflect/replicate/circular padding: fold the padded border back."""

    @staticmethod
    def forward(ctx, g, widths, mode, shape):
        d = g._data
        xp = array_module(d)
        # pad an index array the same way, then scatter-add the gradient by index
        idx = xp.arange(int(np.prod(shape))).reshape(shape)
        pidx = xp.pad(idx, widths, mode=mode)
        out = xp.zeros(int(np.prod(shape)), d.dtype)
        from ..backend import add_at
        add_at(xp, out, pidx.reshape(-1), d.reshape(-1))
        ctx.pidx = pidx
        return make(out.reshape(shape))

    @staticmethod
    def backward(ctx, gg):
        flat = gg.reshape(-1)
        return flat[make(ctx.pidx.reshape(-1))].reshape(ctx.pidx.shape), None, None, None


class Tile(Function):
    node_name = "Repeat"      # PyTorch's tile is its repeat
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, reps):
        d = x._data
        reps = tuple(reps)
        if len(reps) < d.ndim:
            reps = (1,) * (d.ndim - len(reps)) + reps
        ctx.shape, ctx.reps = (1,) * (len(reps) - d.ndim) + d.shape, reps
        ctx.orig = d.shape
        return make(array_module(d).tile(d, reps))

    @staticmethod
    def backward(ctx, g):
        # split each dim into (rep, size) and sum over the reps
        inter = []
        for r, s in zip(ctx.reps, ctx.shape):
            inter += [r, s]
        gi = g.reshape(inter).sum(dim=tuple(range(0, len(inter), 2)))
        return gi.reshape(ctx.orig), None


class Unbind(Function):
    """The slices along `dim` as views, with one backward that stacks their gradients
    (slicing one by one would give each slice's backward a zero tensor of the full size)."""
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, dim):
        d = x._data
        ctx.dim = dim
        idx = (slice(None),) * dim
        # `...` keeps a 1-D tensor's elements 0-d views, not scalars copied out of it
        return tuple(x._view_of(d[idx + (i, Ellipsis)]) for i in range(d.shape[dim]))

    @staticmethod
    def backward(ctx, *grads):
        return stack(grads, ctx.dim), None


class Stack(Function):
    """The tensors (all of one shape) joined along a new dim `dim` in one copy, not an
    unsqueeze per tensor and a cat (which an RNN's final states pay at every step); its
    backward is `Unbind` (views), whose backward is this."""
    graph_inputs = slice(1, None)     # the tensors, not dim

    @staticmethod
    def forward(ctx, dim, *tensors):
        from ..dtypes import result_type
        ctx.dim = dim
        new_axis = (slice(None),) * dim + (None,)   # cheaper than xp.stack's own checks
        if len({t._data.dtype for t in tensors}) == 1:
            arrays = [t._data[new_axis] for t in tensors]
        else:
            dt = result_type(*tensors)
            arrays = [t._data.astype(dt, copy=False)[new_axis] for t in tensors]
        return make(array_module(arrays[0]).concatenate(arrays, axis=dim))

    @staticmethod
    def backward(ctx, g):
        return (None,) + Unbind.apply(g, ctx.dim)


class Triangle(Function):
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, diagonal=0, upper=False):
        d = x._data
        ctx.node_name = "Triu" if upper else "Tril"
        if d.ndim < 2:
            raise RuntimeError(f"tril/triu: input tensor must have at least 2 dimensions, got "
                               f"{d.ndim}")
        xp = array_module(d)
        ctx.diagonal, ctx.upper = diagonal, upper
        return make(xp.triu(d, diagonal) if upper else xp.tril(d, diagonal))

    @staticmethod
    def backward(ctx, g):
        return Triangle.apply(g, ctx.diagonal, ctx.upper), None, None


class Split(Function):
    """Consecutive pieces of `sizes` along `dim`, as views, in one op (PyTorch's split and
    chunk are one node); backward joins the pieces' gradients with one cat (slicing piece by
    piece would give each piece's backward a zero tensor of the whole size)."""
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, sizes, dim):
        d = x._data
        ctx.dim = dim
        lead = (slice(None),) * dim
        out, start = [], 0
        for n in sizes:
            index = lead + (slice(start, start + n), Ellipsis)
            out.append(x._view_of(d[index], "index", index))
            start += n
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        return cat(grads, ctx.dim), None, None


# ---- functional API ------------------------------------------------------------------------
def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


def reshape(input, *shape):
    return Reshape.apply(input, _shape_arg(shape))


def view(input, *shape):
    if len(shape) == 1 and isinstance(shape[0], dtypes.dtype):
        return _view_as_dtype(input, shape[0])
    shape = _shape_arg(shape)
    d = input._data
    if not d.flags.c_contiguous and d.size > 1:
        try:
            out = d.view()
            out.shape = shape  # raises when a copy would be needed
        except (AttributeError, ValueError):
            raise RuntimeError(
                f"view size is not compatible with input tensor's size and stride (shape "
                f"{list(d.shape)}, strides {[s // d.itemsize for s in d.strides]}). Use "
                f".reshape(...) instead.") from None
    return Reshape.apply(input, shape)


def _view_as_dtype(input, dtype):
    """`x.view(dtype)`: the same bytes read as `dtype` (the last dim scaled by the ratio of
    element sizes), sharing x's memory and version counter; not differentiable, as
    PyTorch's."""
    from ..linalg_lu import _TYPE_NAMES
    d = input._data
    target = dtypes.to_numpy_dtype(dtype)
    if target.itemsize != d.itemsize:
        names = tuple(_TYPE_NAMES.get(str(t), str(t)) for t in (input.dtype.name, dtype.name))
        what = f"to view {names[0]} as {names[1]} (different element sizes)"
        if d.ndim == 0:
            raise RuntimeError(f"self.dim() cannot be 0 {what}")
        if d.shape[-1] != 1 and d.strides[-1] != d.itemsize:
            raise RuntimeError(f"self.stride(-1) must be 1 {what}, but got "
                               f"{d.strides[-1] // d.itemsize}")
        ratio = max(target.itemsize, d.itemsize) // min(target.itemsize, d.itemsize)
        if target.itemsize > d.itemsize and d.shape[-1] % ratio:
            raise RuntimeError(f"self.size(-1) must be divisible by {ratio} {what}, but got "
                               f"{d.shape[-1]}")
    return input._view_of(d.view(target))


def permute(input, *dims):
    return Permute.apply(input, _shape_arg(dims))


def transpose(input, dim0, dim1):
    return _swapped(input, dim0, dim1, "Transpose")


def _swapped(input, dim0, dim1, name):
    n = input.ndim
    if n < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return input
    dims = list(range(n))
    a, b = normalize_dim(dim0, n), normalize_dim(dim1, n)
    dims[a], dims[b] = dims[b], dims[a]
    return named(Permute.apply(input, tuple(dims)), Permute, name)


swapaxes = transpose


def t(input):
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is "
                           f"{input.ndim}D")
    return _swapped(input, 0, 1, "T") if input.ndim == 2 else input


def movedim(input, source, destination):
    n = input.ndim
    src = [normalize_dim(s, n) for s in (source if isinstance(source, (tuple, list))
                                         else [source])]
    dst = [normalize_dim(s, n) for s in (destination if isinstance(destination, (tuple, list))
                                         else [destination])]
    order = [i for i in range(n) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return Permute.apply(input, tuple(order))


def expand(input, *shape):
    return Expand.apply(input, _shape_arg(shape))


def broadcast_to(input, shape):
    return Expand.apply(input, tuple(shape))


def expand_as(input, other):
    return Expand.apply(input, tuple(other.shape))


def broadcast_shapes(*shapes):
    """The shape the given shapes broadcast to (ints count as 1-d shapes), as PyTorch's."""
    shapes = [(s,) if isinstance(s, int) else tuple(s) for s in shapes]
    try:
        return Size(np.broadcast_shapes(*shapes))
    except ValueError:
        raise RuntimeError(f"Shape mismatch: objects cannot be broadcast to a single shape "
                           f"({', '.join(str(list(s)) for s in shapes)})") from None


def broadcast_tensors(*tensors):
    shapes = [tuple(t.shape) for t in tensors]
    shape = shapes[0] if shapes.count(shapes[0]) == len(shapes) else np.broadcast_shapes(*shapes)
    return tuple(broadcast_to(t, shape) for t in tensors)


def squeeze(input, dim=None):
    shape = input.shape
    if dim is None:
        new = tuple(s for s in shape if s != 1)
        name = "Squeeze"
    else:
        many = isinstance(dim, (tuple, list))
        dims = dim if many else (dim,)
        dims = {normalize_dim(d, input.ndim) for d in dims}
        new = tuple(s for i, s in enumerate(shape) if not (i in dims and s == 1))
        name = "SqueezeBackward2" if many else "SqueezeBackward1"    # squeeze.dims, .dim
    return named(Reshape.apply(input, new), Reshape, name)


def unsqueeze(input, dim):
    n = input.ndim + 1
    dim = normalize_dim(dim, n)
    shape = list(input.shape)
    shape.insert(dim, 1)
    return named(Reshape.apply(input, tuple(shape)), Reshape, "Unsqueeze")


def flatten(input, start_dim=0, end_dim=-1):
    shape = tuple(input.shape)
    if not shape:
        return Reshape.apply(input, (1,))
    s = normalize_dim(start_dim, len(shape))
    e = normalize_dim(end_dim, len(shape))
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    n = 1
    for v in shape[s:e + 1]:
        n *= v
    return Reshape.apply(input, shape[:s] + (n,) + shape[e + 1:])


def unflatten(input, dim, sizes):
    shape = list(input.shape)
    dim = normalize_dim(dim, len(shape))
    sizes = list(sizes)
    if -1 in sizes:
        known = int(np.prod([s for s in sizes if s != -1]))
        sizes[sizes.index(-1)] = shape[dim] // max(known, 1)
    return Reshape.apply(input, tuple(shape[:dim] + sizes + shape[dim + 1:]))


def cat(tensors, dim=0):
    return Cat.apply(dim, *tensors)


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    shapes = {t._data.shape for t in tensors}
    if len(shapes) > 1:
        raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                           f"{[list(t.shape) for t in tensors]}")
    return Stack.apply(normalize_dim(dim, tensors[0].ndim + 1), *tensors)


def hstack(tensors):
    return cat(tensors, 1 if tensors[0].ndim > 1 else 0)


def vstack(tensors):
    return cat([t.reshape(1, -1) if t.ndim == 1 else t for t in tensors], 0)


def split(tensor, split_size_or_sections, dim=0):
    dim = normalize_dim(dim, tensor.ndim)
    n = tensor.shape[dim]
    with_sizes = not isinstance(split_size_or_sections, int)
    if not with_sizes:
        step = split_size_or_sections
        sizes = [min(step, n - i) for i in range(0, n, step)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} "
                               f"(input tensor's size at dimension {dim}), but got "
                               f"split_sizes={sizes}")
    if dispatch.watching():   # observers (ONNX export, autocast, the profiler) know slices
        out, start = [], 0
        for s in sizes:
            out.append(tensor[(slice(None),) * dim + (slice(start, start + s),)])
            start += s
        return tuple(out)
    out = Split.apply(tensor, tuple(sizes), dim)
    if with_sizes and out:
        named(out[0], Split, "SplitWithSizes")     # one node for all the pieces
    return out


def chunk(input, chunks, dim=0):
    n = input.shape[normalize_dim(dim, input.ndim)]
    step = -(-n // chunks) if n else 1
    return split(input, step, dim)


def unbind(input, dim=0):
    dim = normalize_dim(dim, input.ndim)
    return Unbind.apply(input, dim) if input.shape[dim] else ()


def flip(input, dims):
    if isinstance(dims, int):
        dims = (dims,)
    return Flip.apply(input, tuple(dims))


def roll(input, shifts, dims=None):
    if dims is None:
        return Roll.apply(input.flatten(), shifts, 0).reshape(input.shape)
    return Roll.apply(input, shifts, dims)


def pad(input, pad, mode="constant", value=0.0):
    return Pad.apply(input, tuple(pad), mode, 0.0 if value is None else value)


def tile(input, *dims):
    """tile(x, (2, 1)) or x.tile(2, 1), as PyTorch's."""
    return Tile.apply(input, _shape_arg(dims))


def repeat(input, *sizes):
    sizes = _shape_arg(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError(f"Number of dimensions of repeat dims ({len(sizes)}) can not be "
                           f"smaller than number of dimensions of tensor ({input.ndim})")
    return Tile.apply(input, sizes)


def repeat_interleave(input, repeats, dim=None):
    if dim is None:
        input, dim = input.flatten(), 0
    dim = normalize_dim(dim, input.ndim)
    x = unsqueeze(input, dim + 1)
    shape = list(x.shape)
    shape[dim + 1] = repeats
    out_shape = list(input.shape)
    out_shape[dim] *= repeats
    return x.expand(*shape).reshape(*out_shape)


def tril(input, diagonal=0):
    return Triangle.apply(input, diagonal, False)


def triu(input, diagonal=0):
    return Triangle.apply(input, diagonal, True)
