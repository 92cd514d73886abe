"""`DTensor`: a tensor laid out over a 1-D `DeviceMesh`, each rank holding its part
(`torch.distributed.tensor.DTensor`, as FSDP's sharded parameters are).

A DTensor is a `Tensor` whose array is this rank's local part and whose `shape` is the whole
tensor's; `to_local()` gives the part, `full_tensor()` gathers the whole (a collective),
`redistribute()` changes the placement; these and `from_local` are differentiable, each
passing the gradient back laid out as its input (autograd Functions below). Optimizers and
`nn.init` work on it as they are (they update arrays element by element, or write a
whole-tensor draw of which each rank keeps its part). Ops on DTensors run on the local parts
where that is exact, under autograd too: elementwise ops on DTensors laid out alike (and
numbers), reshapes that keep the sharded dim whole, and permutes; on Partial values only
sums and scaling. Any other op raises NotImplementedError naming it, rather than compute on
the local part as if it were the whole. Functions marked `dtensor_aware` (the conversions,
tensor parallelism's loss) take DTensors as they are.
"""
import math

import numpy as np

from ...autograd import function as _function
from ...tensor import Tensor
from ...tensor.backend import array_module
from ...tensor.meta import is_meta, meta_array
from .placement_types import Replicate, Shard


class DTensor(Tensor):
    # in __dict__: _mesh (the DeviceMesh), _placements (one per mesh dim), _global_shape,
    # _order (the mesh dims in the order their shards were cut, outermost first; None: in
    # mesh order. FSDP over tensor parallelism cuts a tensor-parallel part again along the
    # data-parallel dim: order (tp, dp), PyTorch's _StridedShard)

    def __init__(self, *args, **kwargs):
        raise TypeError("make a DTensor with distribute_tensor(tensor, mesh, placements) or "
                        "DTensor.from_local(local_tensor, mesh, placements)")

    @staticmethod
    def _wrap(local, mesh, placements, global_shape, requires_grad=False, cls=None,
              order=None):
        """A DTensor over the array `local` (package-internal)."""
        global dispatch_installed
        if not dispatch_installed:
            _function.dtensor_ops = dtensor_ops
            dispatch_installed = True
        t = Tensor._make(local)
        t.__class__ = cls or DTensor
        t._mesh, t._placements = mesh, tuple(placements)
        t._global_shape = tuple(global_shape)
        t._order = order
        if requires_grad:
            t.requires_grad_(True)
        return t

    def _like(self, local, cls=None):
        """A DTensor laid out as this one over another local array."""
        return DTensor._wrap(local, self._mesh, self._placements, self._global_shape, cls=cls,
                             order=self._order)

    # ---- where this rank's part lies ---------------------------------------------------
    def _levels(self):
        """[(mesh dim, placement)] in the order the shards were cut, outermost first."""
        order = self._order or range(len(self._placements))
        return [(m, self._placements[m]) for m in order]

    def _box(self):
        """(starts, stops) of this rank's part in the whole tensor, one per tensor dim."""
        lo, hi = [0] * len(self._global_shape), list(self._global_shape)
        coordinate = self._mesh.get_coordinate()
        for m, p in self._levels():
            if p.is_shard():
                a, b = chunk_bounds(hi[p.dim] - lo[p.dim], self._mesh.size(m), coordinate[m])
                lo[p.dim], hi[p.dim] = lo[p.dim] + a, lo[p.dim] + b
        return lo, hi

    def _part_of(self, whole):
        """This rank's part of `whole`, an array of the whole tensor (a view)."""
        lo, hi = self._box()
        return whole[tuple(slice(a, b) for a, b in zip(lo, hi))]

    def _first_replica(self):
        """Whether this rank is the first of those holding the same part (it writes it)."""
        coordinate = self._mesh.get_coordinate()
        return all(coordinate[m] == 0 for m, p in enumerate(self._placements)
                   if not p.is_shard())

    # ---- what it is --------------------------------------------------------------------
    @property
    def device_mesh(self):
        return self._mesh

    @property
    def placements(self):
        return self._placements

    @property
    def _local_tensor(self):
        return self._raw_local()

    def _raw_local(self):
        """This rank's part as a plain tensor sharing memory (and version) with it, outside
        autograd."""
        t = Tensor._make(self._data)
        t._version = self._version
        return t

    @property
    def shape(self):
        from ...tensor.tensor import Size
        return Size(self._global_shape)

    def size(self, dim=None):
        return self.shape if dim is None else self._global_shape[dim]

    def numel(self):
        return math.prod(self._global_shape)

    nelement = numel

    def __len__(self):
        if not self._global_shape:
            raise TypeError("len() of a 0-d tensor")
        return self._global_shape[0]

    def _result_like(self, local):
        return self._like(local)

    def _everywhere(self, flag):
        """`flag` (this rank's verdict on its part) held on every rank of the mesh: equal()
        and allclose() give every rank the same answer."""
        from ..collectives import all_reduce
        from ..reduce_op import ReduceOp
        verdict = Tensor._make(np.array([int(flag)], np.int64))
        for m in range(self._mesh.ndim):
            all_reduce(verdict, op=ReduceOp.MIN, group=self._mesh.get_group(m))
        return bool(verdict._data[0])

    # ---- reading values: the whole tensor, never one rank's part taken for it ------------
    def numpy(self, *, force=False):
        raise RuntimeError("a DTensor's values are spread over the ranks: call "
                           ".full_tensor().numpy() for the whole tensor (a collective) or "
                           ".to_local().numpy() for this rank's part")

    __array__ = tolist = numpy

    def item(self):
        return self._raw_local().item() if self._placements[0].is_replicate() else \
            self.detach().full_tensor().item()

    @property
    def data(self):
        """A DTensor sharing this one's memory, outside the graph (as in PyTorch)."""
        return self._like(self._data)

    @data.setter
    def data(self, value):
        if not isinstance(value, DTensor) or value._placements != self._placements or \
                value._global_shape != self._global_shape:
            raise TypeError(f"DTensor.data = ...: expected a DTensor laid out as this one "
                            f"({self._placements}, shape {list(self._global_shape)})")
        self._data = value._data

    def __repr__(self):
        return (f"DTensor(local_tensor={self._raw_local()!r}, device_mesh={self._mesh!r}, "
                f"placements={self._placements!r})")

    # ---- conversions -------------------------------------------------------------------
    @staticmethod
    def from_local(local_tensor, device_mesh=None, placements=None, *, run_check=False,
                   shape=None, stride=None, grad_placements=None):
        """The DTensor whose part on this rank is `local_tensor` (shared, not copied). Without
        `shape`, Shard placements assume every rank's part is as large as this one's.
        Differentiable: the gradient's part (laid out as `placements`) flows back to
        `local_tensor`."""
        mesh, placements = _spec(device_mesh, placements, local_tensor.ndim,
                                 local_tensor.device.type)
        if stride is not None and shape is not None and \
                tuple(stride) != _contiguous_strides(shape):
            raise NotImplementedError(f"DTensor.from_local(stride={tuple(stride)}): a DTensor "
                                      f"here is laid out contiguously; pass stride=None")
        if shape is None:
            shape = list(local_tensor.shape)
            for p in placements:
                if p.is_shard():
                    shape[p.dim] *= mesh.size()
        if run_check:
            _check_same_everywhere(local_tensor, mesh, placements, shape)
        back = placements if grad_placements is None else \
            _spec(mesh, grad_placements, local_tensor.ndim)[1]
        return _FromLocal.apply(local_tensor, mesh, placements, tuple(shape), back)

    def to_local(self, *, grad_placements=None):
        """This rank's part, sharing memory with it. Differentiable: its gradient goes back
        as a DTensor laid out as `grad_placements` (default: as this one, Partial as
        Replicate)."""
        placements = _backward_layout(self._placements) if grad_placements is None else \
            _spec(self._mesh, grad_placements, self.ndim)[1]
        return _ToLocal.apply(self, placements)

    def full_tensor(self, *, grad_placements=None):
        """The whole tensor on every rank (a collective over the mesh); differentiable."""
        if self._mesh.ndim > 1:            # (FSDP over TP's parameters)
            if grad_placements is not None:
                raise NotImplementedError("full_tensor(grad_placements=...) of a DTensor on "
                                          "a 2-D mesh is not supported; pass None")
            return _Gathered.apply(self)
        return self.redistribute(placements=(Replicate(),)).to_local(
            grad_placements=grad_placements)

    def redistribute(self, device_mesh=None, placements=None, *, async_op=False,
                     forward_dtype=None, backward_dtype=None):
        """This tensor laid out as `placements` (a collective where the values move);
        differentiable: the gradient moves back to this tensor's layout."""
        if device_mesh is not None and device_mesh != self._mesh:
            raise NotImplementedError("DTensor.redistribute onto another mesh is not "
                                      "supported; redistribute on the tensor's own mesh")
        if forward_dtype is not None or backward_dtype is not None:
            raise NotImplementedError("DTensor.redistribute(forward_dtype=, backward_dtype=)"
                                      " is not supported; cast with .to(dtype) first")
        _, placements = _spec(self._mesh, placements, self.ndim)
        if placements == self._placements:
            return self
        if placements[0].is_partial():
            raise RuntimeError(f"Can not redistribute from {self._placements[0]} to "
                               f"{placements[0]}: Partial is a result of ops, not a layout "
                               f"to ask for")
        return _Redistribute.apply(self, placements)

    # ---- tensor methods that keep the layout -------------------------------------------
    def detach(self):
        out = self._like(self._data)
        out._version = self._version
        return out

    def clone(self, *, memory_format=None):
        kwargs = {} if memory_format is None else {"memory_format": memory_format}
        return self._like(self._raw_local().clone(**kwargs)._data)

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        out = self._like(self._data.copy(), cls=type(self))
        out.requires_grad = self.requires_grad
        memo[id(self)] = out
        return out

    def _as_parameter(self, requires_grad=True):
        """`nn.Parameter(dtensor)`: a DTensor that modules register as a parameter."""
        out = self._like(self._data, cls=DTensorParameter)
        out._version = self._version
        out.requires_grad = False
        if requires_grad:
            out.requires_grad_(True)
        return out

    def _write_whole(self, values):
        """Keep this rank's part of `values`, an array of the whole tensor (nn.init's draws:
        the same on every rank, so the sharded model starts as the unsharded one would)."""
        if is_meta(self._data):
            return
        self._data[...] = self._part_of(values).astype(self._data.dtype, copy=False)

    def _local_from(self, value):
        """The array to copy into this tensor's part for `value` (a DTensor laid out alike,
        or a tensor or array of the whole): load_state_dict's copy."""
        if isinstance(value, DTensor):
            if value._placements == self._placements and value._order == self._order:
                return value._data
            value = value.redistribute(self._mesh, self._placements) if \
                self._mesh.ndim == 1 == value._mesh.ndim else Tensor._make(_whole(value))
            if isinstance(value, DTensor):
                return value._data
        arr = value._data if isinstance(value, Tensor) else np.asarray(value)
        return self._part_of(arr).copy()

    @staticmethod
    def _whole_norms(local_norms, dtensors, norm_type):
        """The `norm_type`-norms of whole DTensors from those of their local parts (0-d
        arrays), with one all-reduce per mesh dim they are sharded over: clip_grad_norm_ of
        sharded gradients."""
        from ..collectives import all_reduce
        from ..reduce_op import ReduceOp
        out = list(local_norms)
        by_group = {}
        for i, t in enumerate(dtensors):
            for m, p in enumerate(t._placements):
                if p.is_shard():
                    by_group.setdefault(t._mesh.get_group(m), []).append(i)
        for group, index in by_group.items():
            xp = array_module(out[index[0]])
            parts = xp.stack([out[i] for i in index])
            if norm_type == math.inf:
                op = ReduceOp.MAX
            elif norm_type == -math.inf:
                op = ReduceOp.MIN
                parts[[dtensors[i]._data.size == 0 for i in index]] = math.inf
            else:
                op = ReduceOp.SUM
                if norm_type not in (0, 1):
                    parts = parts ** norm_type
            all_reduce(Tensor._make(parts), op=op, group=group)
            if norm_type not in (0, 1, math.inf, -math.inf):
                parts = parts ** (1.0 / norm_type)
            for i, n in zip(index, parts):
                out[i] = n
        return out

    def __reduce_ex__(self, protocol):
        raise TypeError("a DTensor is not pickled: save full_tensor() (or to_local() with "
                        "its placements) instead")


def _new_parameter_class():
    from ...nn.parameter import Parameter

    class DTensorParameter(DTensor, Parameter):
        """A DTensor registered as a module's parameter (`nn.Parameter(dtensor)`)."""

        def __init__(self, *args, **kwargs):  # made by DTensor._as_parameter
            pass

        __repr__ = DTensor.__repr__          # PyTorch prints a DTensor parameter so
    return DTensorParameter


DTensorParameter = _new_parameter_class()
_DTENSOR_TYPES = frozenset((DTensor, DTensorParameter))   # a DTensor is one of these exactly


def distribute_tensor(tensor, device_mesh=None, placements=None, *, src_data_rank=0):
    """`tensor` (the whole, given on every rank) laid out over the mesh; with `src_data_rank`
    (the default 0) every rank takes its part of that rank's tensor, with None its own."""
    mesh, placements = _spec(device_mesh, placements, tensor.ndim, tensor.device.type)
    if isinstance(tensor, DTensor):
        raise ValueError("distribute_tensor: the tensor is a DTensor already; use "
                         "redistribute() to change its placements")
    [p] = placements
    if p.is_partial():
        raise NotImplementedError("distribute_tensor with a Partial placement is not "
                                  "supported; distribute as Replicate or Shard")
    whole = tensor._data
    if src_data_rank is not None and mesh.size() > 1 and not is_meta(whole):
        from ..collectives import broadcast
        whole = whole.copy()
        broadcast(Tensor._make(whole), src=int(mesh._ranks.ravel()[src_data_rank]),
                  group=mesh.get_group())
    local = whole.copy() if p.is_replicate() else local_part(whole, p.dim, mesh)
    return DTensor._wrap(local, mesh, placements, tensor.shape,
                         requires_grad=tensor.requires_grad)


# ---- layouts ---------------------------------------------------------------------------
def _spec(mesh, placements, ndim, device_type="cpu"):
    """(mesh, placements) checked: a 1-D mesh (default: the world) and one placement."""
    if mesh is None:
        from ..device_mesh import _world_mesh
        mesh = _world_mesh(device_type)
    if mesh.ndim != 1:
        raise NotImplementedError(f"DTensor on a {mesh.ndim}-D mesh is not supported; use a "
                                  f"1-D mesh (mesh['dp'])")
    placements = (Replicate(),) if placements is None else tuple(placements)
    if len(placements) != 1:
        raise ValueError(f"`placements` must have the same length as `device_mesh.ndim`! "
                         f"Found placements length: {len(placements)}, and device_mesh.ndim: "
                         f"1.")
    p = placements[0]
    if p.is_shard():
        dim = p.dim + ndim if p.dim < 0 else p.dim
        if not 0 <= dim < ndim:
            raise IndexError(f"Shard({p.dim}) of a {ndim}-d tensor: the dim is out of range")
        placements = (Shard(dim),)
    return mesh, placements


def chunk_bounds(n, parts, index):
    """[start, stop) of part `index` when n elements are split as torch.chunk splits them."""
    size = -(-n // parts) if n else 0
    start = min(index * size, n)
    return start, min(start + size, n)


def local_part(whole, dim, mesh):
    """This rank's chunk of the array `whole` along `dim` (a copy, contiguous)."""
    start, stop = chunk_bounds(whole.shape[dim], mesh.size(), mesh.get_local_rank())
    index = (slice(None),) * dim + (slice(start, stop),)
    part = whole[index]
    return meta_array(part.shape, part.dtype) if is_meta(whole) else part.copy()


def _whole(dt):
    """The whole array of the DTensor `dt` on every rank: its levels undone innermost
    first (a gather along each sharded mesh dim, a reduction along each Partial one)."""
    from ..collectives import all_reduce
    from ..reduce_op import ReduceOp
    local = dt._data
    if is_meta(local):
        return meta_array(dt._global_shape, local.dtype)
    levels, extents = dt._levels(), []
    lo, hi = [0] * len(dt._global_shape), list(dt._global_shape)
    coordinate = dt._mesh.get_coordinate()
    for m, p in levels:                   # the extent each shard was cut from
        if p.is_shard():
            extents.append(hi[p.dim] - lo[p.dim])
            a, b = chunk_bounds(extents[-1], dt._mesh.size(m), coordinate[m])
            lo[p.dim], hi[p.dim] = lo[p.dim] + a, lo[p.dim] + b
        else:
            extents.append(None)
    out = local.copy()
    for (m, p), n in reversed(list(zip(levels, extents))):
        group = dt._mesh.get_group(m)
        if p.is_shard():
            out = _gathered_along(out, p.dim, n, dt._mesh.size(m), group)
        elif p.is_partial():
            op = {"sum": ReduceOp.SUM, "avg": ReduceOp.AVG, "max": ReduceOp.MAX,
                  "min": ReduceOp.MIN}[p.reduce_op]
            all_reduce(Tensor._make(out), op=op, group=group)
    return out


def _gathered_along(local, dim, n, ranks, group):
    """The `n` elements along `dim` that the ranks of `group` hold in torch.chunk's chunks,
    put together (one all-gather of padded chunks)."""
    from ..collectives import all_gather_into_tensor
    xp = array_module(local)
    size = -(-n // ranks) if n else 0
    moved = xp.moveaxis(local, dim, 0)
    padded = xp.zeros((size,) + moved.shape[1:], local.dtype)
    padded[:moved.shape[0]] = moved
    gathered = xp.empty((ranks,) + padded.shape, local.dtype)
    all_gather_into_tensor(Tensor._make(gathered), Tensor._make(padded), group=group)
    whole = gathered.reshape((ranks * size,) + moved.shape[1:])[:n]
    return xp.ascontiguousarray(xp.moveaxis(whole, 0, dim))


# ---- the differentiable conversions ----------------------------------------------------
class _ToLocal(_function.Function):
    dtensor_aware = True

    @staticmethod
    def forward(ctx, dtensor, grad_placements):
        ctx.layout = (dtensor._mesh, grad_placements, dtensor._global_shape)
        # a leaf (a parameter) takes its gradient in its own layout: optimizers and clipping
        # act on the local parts, where PyTorch's DTensor ops would redistribute a Partial
        # gradient when they meet it
        ctx.leaf = dtensor._placements if dtensor.grad_fn is None else None
        return dtensor._raw_local()

    @staticmethod
    def backward(ctx, grad):
        mesh, placements, shape = ctx.layout
        out = DTensor._wrap(grad._data, mesh, placements, shape)
        if ctx.leaf is not None and ctx.leaf != placements:
            out = DTensor._wrap(_relaid(out, ctx.leaf), mesh, ctx.leaf, shape)
        return out, None


class _FromLocal(_function.Function):
    dtensor_aware = True

    @staticmethod
    def forward(ctx, local, mesh, placements, shape, grad_placements):
        ctx.back = grad_placements
        out = DTensor._wrap(local._data, mesh, placements, shape)
        out._version = local._version
        return out

    @staticmethod
    def backward(ctx, grad):
        local = _relaid(grad, ctx.back) if isinstance(grad, DTensor) else grad._data
        return Tensor._make(local), None, None, None, None


class _Gathered(_function.Function):
    """full_tensor() of a DTensor on a 2-D mesh: the whole forward, this rank's part of the
    (replicated) gradient backward."""
    dtensor_aware = True

    @staticmethod
    def forward(ctx, dtensor):
        ctx.like = dtensor._like
        ctx.part_of = dtensor._part_of
        return Tensor._make(_whole(dtensor))

    @staticmethod
    def backward(ctx, grad):
        return ctx.like(array_module(grad._data).ascontiguousarray(ctx.part_of(grad._data)))


class _Redistribute(_function.Function):
    dtensor_aware = True

    @staticmethod
    def forward(ctx, dtensor, placements):
        ctx.mesh, ctx.shape = dtensor._mesh, dtensor._global_shape
        ctx.placements, ctx.back = placements, _backward_layout(dtensor._placements)
        return DTensor._wrap(_relaid(dtensor, placements), ctx.mesh, placements, ctx.shape)

    @staticmethod
    def backward(ctx, grad):
        if not isinstance(grad, DTensor):    # backward(gradient=<this rank's part>)
            grad = DTensor._wrap(grad._data, ctx.mesh, ctx.placements, ctx.shape)
        return DTensor._wrap(_relaid(grad, ctx.back), ctx.mesh, ctx.back, ctx.shape), None


def _backward_layout(placements):
    """The layout a gradient flows back in: a Partial value's gradient is the whole
    gradient on every rank (the derivative of a sum is 1 for each term)."""
    return tuple(Replicate() if p.is_partial() else p for p in placements)


def _relaid(dt, placements):
    """The local array of the DTensor `dt` laid out as `placements` instead. Partial is a
    target only in backward, from a replicated gradient: a sum's terms each get the whole
    gradient, an average's 1/n of it (its derivative; PyTorch 2.13 passes the whole)."""
    [source], [target] = dt._placements, placements
    if source == target:
        return dt._data
    if target.is_partial():
        whole = _whole(dt)
        if target.reduce_op == "sum":
            return whole
        if target.reduce_op == "avg":
            return whole / dt._mesh.size()
        raise NotImplementedError(f"the gradient of a Partial({target.reduce_op!r}) DTensor "
                                  f"is not supported; reduce it (full_tensor) first")
    if target.is_shard() and source.is_replicate():
        return local_part(dt._data, target.dim, dt._mesh)      # no collective: cut it
    if target.is_shard() and source.is_partial() and source.reduce_op in ("sum", "avg"):
        return _reduce_scattered(dt, target.dim)
    whole = _whole(dt)
    return whole if target.is_replicate() else local_part(whole, target.dim, dt._mesh)


def _reduce_scattered(dt, dim):
    """This rank's chunk along `dim` of the sum (or average) of a Partial DTensor's values:
    one reduce-scatter over torch.chunk's padded chunks."""
    from ..collectives import reduce_scatter_tensor
    from ..reduce_op import ReduceOp
    local, mesh = dt._data, dt._mesh
    xp, ranks, n = array_module(local), mesh.size(), local.shape[dim]
    size = -(-n // ranks) if n else 0
    moved = xp.moveaxis(local, dim, 0)
    padded = xp.zeros((ranks * size,) + moved.shape[1:], local.dtype)
    padded[:n] = moved
    out = xp.empty((size,) + moved.shape[1:], local.dtype)
    op = ReduceOp.SUM if dt._placements[0].reduce_op == "sum" else ReduceOp.AVG
    reduce_scatter_tensor(Tensor._make(out), Tensor._make(padded), op=op,
                          group=mesh.get_group())
    start, stop = chunk_bounds(n, ranks, mesh.get_local_rank())
    return xp.ascontiguousarray(xp.moveaxis(out[:stop - start], 0, dim))


def _contiguous_strides(shape):
    strides, step = [], 1
    for n in reversed(tuple(shape)):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _check_same_everywhere(local, mesh, placements, shape):
    from ..collectives import all_gather_object
    mine = (tuple(shape), str(local.dtype), tuple(map(str, placements)))
    seen = [None] * mesh.size()
    all_gather_object(seen, mine, group=mesh.get_group())
    if any(s != mine for s in seen):
        raise ValueError(f"DTensor.from_local(run_check=True): the ranks disagree on "
                         f"(shape, dtype, placements): {seen}")


# ---- ops on DTensors -------------------------------------------------------------------
dispatch_installed = False

# ops that act element by element: on DTensors laid out alike (and plain scalars or 0-d
# tensors) the local results are the parts of the whole result
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Neg", "Pow", "Maximum", "Minimum", "Clamp",
                "Abs", "Sqrt", "Rsqrt", "Exp", "Log", "Sign", "Reciprocal", "Square",
                "Log1p", "Expm1", "Overwrite", "Sin", "Cos", "Tanh", "Sigmoid", "Silu", "Erf",
                "Relu", "LeakyRelu", "Gelu", "FusedGelu", "Softplus", "Clone", "ToCopy",
                "Hardtanh", "Elu", "Mish", "Floor", "Ceil", "Trunc", "Round"}
# ops that only rearrange elements: exact on the local parts where the sharded dim keeps its
# extent (see _rearranged)
_REARRANGING = {"Reshape", "Permute"}
# op name -> the function computing it on DTensors sharded over the classes, while
# tensor parallelism's loss_parallel() context is open (parallel/loss.py)
parallel_losses = {}


def dtensor_ops(cls, args, kwargs, run):
    """Called for every op once a DTensor exists: plain ops run as they are; ops on DTensors
    run on the local parts where that is right (see module docstring), else raise."""
    first = None
    for a in args:                 # the common case, no DTensor: type tests only (every op)
        kind = type(a)
        if kind in _DTENSOR_TYPES:
            first = a
            break
        if (kind is list or kind is tuple) and any(type(b) in _DTENSOR_TYPES for b in a):
            _refuse(cls, "a list of DTensors")
    if first is None or cls.dtensor_aware:   # dtensor_aware: takes DTensors as they are
        if kwargs and any(type(v) in _DTENSOR_TYPES for v in kwargs.values()) and \
                not cls.dtensor_aware:
            _refuse(cls, "a DTensor keyword argument")
        return run(cls, args, kwargs)
    name = cls.__name__.lstrip("_")
    needs_grad = _function._grad_state.enabled and any(
        isinstance(a, Tensor) and a.requires_grad for a in args)
    if first._mesh.ndim > 1 and (name not in _ELEMENTWISE or needs_grad):
        _refuse(cls, "a DTensor on a 2-D mesh (FSDP's parameters over tensor parallelism "
                     "take elementwise ops outside autograd only)")
    if name in _REARRANGING:
        return _rearranged(cls, name, first, args[1], kwargs, run)
    if name in parallel_losses:
        return parallel_losses[name](*args, **kwargs)
    if name not in _ELEMENTWISE:
        _refuse(cls, "a DTensor")
    if needs_grad and name == "Overwrite":
        _refuse(cls, "DTensors that require grad (an in-place write)")
    if name in ("Add", "Sub"):
        args = _partials_reduced(args)
        first = next(a for a in args if isinstance(a, DTensor))
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, DTensor):
            if a._placements != first._placements or a._global_shape != first._global_shape \
                    or a._mesh != first._mesh or a._order != first._order:
                raise RuntimeError(f"{name} of DTensors laid out differently ("
                                   f"{first._placements} {list(first._global_shape)} and "
                                   f"{a._placements} {list(a._global_shape)}): redistribute "
                                   f"one of them first")
        elif isinstance(a, Tensor) and a.ndim > 0:
            raise RuntimeError(f"{name} of a DTensor and a plain tensor of shape "
                               f"{list(a.shape)}: mixed DTensor and Tensor; make both "
                               f"DTensors (distribute_tensor) or use to_local()")
    partial = [a for a in list(args) + list(kwargs.values()) if isinstance(a, DTensor) and
               a._placements[0].is_partial()]
    if partial and not _exact_on_partials(name, args, partial[0]._placements[0]):
        _refuse(cls, "a Partial DTensor (only adding Partial DTensors and scaling by a "
                     "number are exact on the partial values)")
    if needs_grad:            # the op on the local parts, between differentiable conversions
        out = run(cls, tuple(a.to_local() if isinstance(a, DTensor) else a for a in args),
                  kwargs)
        return DTensor.from_local(out, first._mesh, first._placements,
                                  shape=first._global_shape)
    out = run(cls, args, kwargs)
    for t in out if isinstance(out, tuple) else (out,):
        if isinstance(t, Tensor) and not isinstance(t, DTensor) and \
                t._data.shape == first._data.shape:
            t.__class__ = DTensor
            t._mesh, t._placements = first._mesh, first._placements
            t._global_shape, t._order = first._global_shape, first._order
    return out


def _rearranged(cls, name, dt, arg, kwargs, run):
    """A reshape or permute of the DTensor `dt` (`arg`: the whole tensor's new shape, or the
    dims' order) as the same op on its local part, where the sharded dim stays one dim of the
    same extent (e.g. flatten(0, 1) of a (batch, seq, vocab) tensor sharded on vocab)."""
    [p] = dt._placements
    shape = dt._global_shape
    if name == "Permute":
        dims = [d % len(shape) for d in arg]
        out_shape = tuple(shape[d] for d in dims)
        local_arg, placement = arg, Shard(dims.index(p.dim)) if p.is_shard() else p
    else:
        out_shape = _resolved(arg, shape)
        local_arg, placement = out_shape, p
        if p.is_shard():
            k = _same_dim(shape, out_shape, p.dim)
            if k is None:
                _refuse(cls, f"a DTensor sharded on dim {p.dim} of {list(shape)} where the "
                             f"new shape {list(out_shape)} splits or merges that dim")
            placement = Shard(k)
            local_arg = out_shape[:k] + (dt._data.shape[p.dim],) + out_shape[k + 1:]
    out = run(cls, (dt.to_local(), local_arg), kwargs)
    return DTensor.from_local(out, dt._mesh, (placement,), shape=out_shape)


def _resolved(shape, whole):
    """`shape` with its -1 filled in for a tensor of shape `whole`."""
    shape = tuple(int(n) for n in shape)
    if -1 in shape:
        known = math.prod(n for n in shape if n != -1)
        shape = tuple(math.prod(whole) // known if n == -1 else n for n in shape)
    return shape


def _same_dim(before, after, dim):
    """The dim of `after` that is dim `dim` of `before` (same extent, same elements before
    it), or None."""
    lead = math.prod(before[:dim])
    for k in range(len(after)):
        if math.prod(after[:k]) == lead and after[k] == before[dim] and \
                math.prod(after[k + 1:]) == math.prod(before[dim + 1:]):
            return k
    return None


def _partials_reduced(args):
    """`args` with Partial DTensors reduced to Replicate where they meet a Replicate one (a
    sum: e.g. the gradients a replicated input gets from a column-parallel layer and from a
    residual path)."""
    kinds = {a._placements[0].is_partial() for a in args if isinstance(a, DTensor)}
    if kinds != {True, False} or any(isinstance(a, DTensor) and a._placements[0].is_shard()
                                     for a in args):
        return args
    return tuple(a.redistribute(placements=[Replicate()]) if isinstance(a, DTensor) and
                 a._placements[0].is_partial() else a for a in args)


def _exact_on_partials(name, args, placement):
    """Whether the op on Partial values is exact: adding or subtracting two Partial DTensors
    (gradients accumulating) or multiplying one by a plain number (or dividing it by one),
    for a sum or an average; for a max or a min only scaling by a positive number."""
    if name in ("Add", "Sub") and len(args) == 2 and \
            all(isinstance(a, DTensor) for a in args):     # laid out alike (checked)
        return placement.reduce_op in ("sum", "avg")
    if name == "Neg":
        return placement.reduce_op in ("sum", "avg")
    if name not in ("Mul", "Div") or len(args) != 2:
        return False
    first = isinstance(args[0], DTensor)
    if first == isinstance(args[1], DTensor) or (name == "Div" and not first):
        return False             # two DTensors, or a number divided by the Partial one
    factor = args[1] if first else args[0]
    if isinstance(factor, Tensor):
        if factor.ndim:
            return False
        factor = factor.item()
    return placement.reduce_op in ("sum", "avg") or factor > 0


def _refuse(cls, what):
    raise NotImplementedError(
        f"{cls.__name__.lstrip('_')} on {what} is not supported by Phalanx's DTensor (only "
        f"elementwise ops outside autograd are); call .full_tensor() for the whole tensor "
        f"or .to_local() for this rank's part")


__all__ = ["DTensor", "distribute_tensor"]
