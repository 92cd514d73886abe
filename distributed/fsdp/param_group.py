"""The parameters one `fully_shard` call manages, and the collectives that move them.

Each parameter lives as a sharded `nn.Parameter` (a DTensor: this rank's chunk along one dim,
what the optimizer updates) and, while a forward or backward needs it, as an unsharded
Parameter of the whole tensor (a leaf the graph uses and accumulates gradients into). Only
one of them is registered on the module at a time. Unsharding all-gathers every chunk of the
group in one collective; after backward one reduce-scatter gives each rank the average of the
gradients' chunk it owns, which is added to the sharded parameter's `.grad`. Resharding frees
the whole tensors (they become meta arrays: shape and dtype, no data).
"""
import math
import weakref

import numpy as np

from ...tensor import Tensor
from ...tensor.backend import array_module
from ...tensor.meta import is_meta, meta_array
from ..collectives import all_gather_into_tensor, all_reduce, reduce_scatter_tensor
from ..tensor.dtensor import DTensor, chunk_bounds, local_part


_sharded = weakref.WeakValueDictionary()      # id(original parameter) -> its FSDPParam


def sharded_by(param):
    """The FSDPParam of an earlier fully_shard call that sharded `param` (still registered
    somewhere that call did not know: a tie to a module outside it), or None."""
    fp = _sharded.get(id(param))
    return fp if fp is not None and fp.original() is param else None


class FSDPParam:
    """One managed parameter: where it is registered, its shard and its unsharded form."""

    def __init__(self, param, places, mesh, dim):
        from ...nn.parameter import Parameter
        self.places = places                    # [(module, attribute name)], shared ones too
        self.original = weakref.ref(param)      # to tell a tie to it from a later call
        _sharded[id(param)] = self
        self.dim, self.mesh = dim, mesh
        # a tensor-parallel parameter (a DTensor on the other dim of a 2-D mesh): FSDP
        # shards its local part, and the unsharded form is that part as the TP DTensor
        self.tp = None if not isinstance(param, DTensor) else \
            (param._mesh, param._placements, param._global_shape)
        self.shape = tuple(param._data.shape if self.tp else param.shape)
        n = self.shape[dim]
        self.chunk = -(-n // mesh.size()) if n else 0   # each rank's padded length along dim
        self.sharded = self._shard(param)
        freed = Tensor._make(meta_array(self.shape, param._data.dtype))
        if self.tp:
            freed = DTensor._wrap(freed._data, *self.tp)
        self.unsharded = Parameter(freed, requires_grad=param.requires_grad)
        self.gathered_from = None
        self.accumulated = None     # whole gradients of microbatches without sync, in the
                                    # reduce dtype where it is wider than the param dtype
        self.register(self.sharded)

    def _shard(self, param):
        """This rank's chunk of the whole parameter `param`, as a sharded Parameter."""
        from ...nn.parameter import Parameter
        from ..tensor.placement_types import Shard
        part = local_part(param._data, self.dim, self.mesh)
        if self.tp is None:
            dt = DTensor._wrap(part, self.mesh, (Shard(self.dim),), self.shape)
        else:                   # on the 2-D mesh: cut by TP first, then by FSDP
            tp_mesh, (tp_placement,), whole = self.tp
            root, dp_dim, tp_dim = fsdp_over_tp(self.mesh, tp_mesh)
            placements = [None, None]
            placements[dp_dim], placements[tp_dim] = Shard(self.dim), tp_placement
            dt = DTensor._wrap(part, root, placements, whole, order=(tp_dim, dp_dim))
        return Parameter(dt, requires_grad=param.requires_grad)

    def register(self, param):
        for module, name in self.places:
            module._parameters[name] = param

    def adopt_registered(self):
        """After `load_state_dict(assign=True)` the module holds another parameter than the
        shard: it becomes the shard (a DTensor laid out as ours, or a whole tensor, of which
        this rank keeps its chunk)."""
        module, name = self.places[0]
        current = module._parameters.get(name)
        if current is None or current is self.sharded:
            return
        if self.tp is not None:
            raise NotImplementedError(f"fully_shard: load_state_dict(assign=True) into "
                                      f"{name}, a tensor-parallel parameter, is not "
                                      f"supported; load without assign")
        if tuple(current.shape) != self.shape:
            raise ValueError(f"fully_shard: {name} was assigned a tensor of shape "
                             f"{list(current.shape)}; the parameter's is {list(self.shape)}")
        if hasattr(current, "_placements"):
            if current._placements != self.sharded._placements or \
                    current._mesh != self.mesh:
                raise ValueError(f"fully_shard: {name} was assigned a DTensor laid out as "
                                 f"{current._placements}; the parameter is sharded as "
                                 f"{self.sharded._placements} over its mesh (use "
                                 f"distribute_tensor with the parameter's mesh and placements)")
            self.sharded = current
        else:
            self.sharded = self._shard(current)
        self.register(self.sharded)

    @property
    def is_current(self):
        """The whole tensor is here and gathered from the shard as it is now: an optimizer
        step or an in-place change of the shard (e.g. after a forward that left the root
        unsharded) makes it stale."""
        return not is_meta(self.unsharded._data) and self.gathered_from == self._shard_state()

    def _shard_state(self):
        return (self.sharded, id(self.sharded._data), self.sharded._version[0])

    def set_whole(self, arr):
        if not is_meta(self.unsharded._data):   # stale values replaced: a graph that saved
            self.unsharded._version[0] += 1     # them must not use the new ones unnoticed
        self.unsharded._data = arr
        self.gathered_from = self._shard_state()

    def free(self):
        # no version bump here or at a gather: the values are the same parameter's, so a
        # graph that kept the parameter (checkpoint's recompute node) stays valid
        self.unsharded._data = meta_array(self.shape, self.unsharded._data.dtype)

    def accumulate(self, dtype):
        """Move this microbatch's whole gradient into `accumulated` (in `dtype`) when it is
        held in another dtype (the param dtype of mixed precision)."""
        grad = self.unsharded.grad
        if grad is None or grad._data.dtype == dtype:
            return
        arr = grad._data.astype(dtype)
        self.accumulated = arr if self.accumulated is None else self.accumulated + arr
        self.unsharded.grad = None

    def has_grad(self):
        return self.unsharded.grad is not None or self.accumulated is not None

    def grad_dtype(self):
        return (self.accumulated if self.accumulated is not None else
                self.unsharded.grad._data).dtype

    def take_grad(self):
        """The whole gradient to reduce (this microbatch's plus those accumulated), which
        the parameter no longer holds."""
        grad, acc = self.unsharded.grad, self.accumulated
        self.unsharded.grad = self.accumulated = None
        if acc is None:
            return grad._data
        return acc if grad is None else acc + grad._data.astype(acc.dtype)

    # ---- the padded flat layout both collectives use ------------------------------------
    def row(self):
        """Elements per index along the shard dim."""
        return math.prod(self.shape[:self.dim] + self.shape[self.dim + 1:])

    def write_shard(self, flat):
        """Write this rank's chunk, flattened, into the start of `flat` (its padded slot in
        the all-gather's send buffer; the padding stays zero)."""
        moved = array_module(flat).moveaxis(self.sharded._data, self.dim, 0)
        flat[:moved.size] = moved.reshape(-1)

    def whole_from(self, gathered):
        """The whole tensor from the (ranks, chunk * row) block of every rank's chunk."""
        xp = array_module(gathered)
        rest = self.shape[:self.dim] + self.shape[self.dim + 1:]
        moved = gathered.reshape((-1,) + rest)[:self.shape[self.dim]]
        return xp.ascontiguousarray(xp.moveaxis(moved, 0, self.dim))

    def write_whole(self, block, arr):
        """Write `arr` (a whole tensor) into `block` (ranks, chunk * row): row r gets rank
        r's chunk, flattened (the reduce-scatter's send buffer; the padding stays zero)."""
        moved = array_module(arr).moveaxis(arr, self.dim, 0)
        for r in range(block.shape[0]):
            start, stop = chunk_bounds(self.shape[self.dim], block.shape[0], r)
            block[r, :(stop - start) * self.row()] = moved[start:stop].reshape(-1)

    def shard_from(self, flat):
        """This rank's chunk (unpadded, dim back in place) from its padded flat chunk."""
        xp = array_module(flat)
        rest = self.shape[:self.dim] + self.shape[self.dim + 1:]
        n = self.sharded._data.shape[self.dim]
        return xp.ascontiguousarray(xp.moveaxis(flat.reshape((self.chunk,) + rest)[:n], 0,
                                                self.dim))


def fsdp_over_tp(dp_mesh, tp_mesh):
    """(the 2-D mesh, its dp dim, its tp dim) of which `dp_mesh` and `tp_mesh` are the two
    1-D slices (mesh["dp"], mesh["tp"]); raises for any other pair."""
    root = getattr(dp_mesh, "_root", None)
    if root is None or getattr(tp_mesh, "_root", None) is not root or root.ndim != 2 or \
            dp_mesh.ndim != 1 or tp_mesh.ndim != 1 or \
            {dp_mesh._root_dims[0], tp_mesh._root_dims[0]} != {0, 1}:
        raise NotImplementedError(
            "fully_shard of tensor-parallel parameters needs the two dims of one 2-D mesh: "
            "mesh = init_device_mesh(device, (dp, tp), mesh_dim_names=('dp', 'tp')); "
            "parallelize_module(model, mesh['tp'], plan); fully_shard(model, "
            "mesh=mesh['dp'])")
    return root, dp_mesh._root_dims[0], tp_mesh._root_dims[0]


def all_gather_params(params, group, param_dtype):
    """Make every parameter of `params` whole on every rank: one all-gather per dtype."""
    for dtype, same in _by_dtype(params, lambda p: param_dtype or p.sharded._data.dtype):
        if any(is_meta(p.sharded._data) for p in same):   # not materialised yet
            for p in same:
                p.unsharded._data = meta_array(p.shape, dtype)
            continue
        xp = array_module(same[0].sharded._data)
        offsets = _offsets(same)
        send = xp.zeros(offsets[-1], dtype)
        for p, start, stop in zip(same, offsets, offsets[1:]):
            p.write_shard(send[start:stop])
        gathered = xp.empty((same[0].mesh.size(), send.size), dtype)
        all_gather_into_tensor(Tensor._make(gathered), Tensor._make(send), group=group)
        for p, start, stop in zip(same, offsets, offsets[1:]):
            p.set_whole(p.whole_from(gathered[:, start:stop]))


def reduce_scatter_grads(params, group, reduce_dtype, divide_factor, replicate_group=None,
                         zero_unused=False, position=0):
    """Sum the unsharded gradients of `params` (with those accumulated over microbatches
    without sync) over the ranks of `group` and, with HSDP, over `replicate_group` (the other
    shard groups' ranks holding the same chunk), divided by `divide_factor`; each rank adds
    its chunk to the sharded parameter's `.grad` (in the parameter's dtype) and the
    unsharded gradient is dropped. One reduce-scatter (and all-reduce) per dtype.

    Every parameter that requires grad takes part (zeros where this rank has no gradient),
    so the collective has the same size on every rank whichever parameters each used. A
    count per parameter rides along (in every rank's chunk): how many ranks had a gradient.
    None: the parameter keeps no gradient (unused everywhere, as FSDP2's). Some but not all:
    with `zero_unused` (FSDP1's flat parameters, set_reduce_scatter_unused_params) the
    others count as zeros; else every rank raises the same error. Each rank also writes the
    unit's `position` (its place under the root) in a column of its own: a rank that reduces
    another unit here (one whose backward left a parameter unused reduces at the end of
    backward) makes every rank raise, instead of mixing two units' gradients."""
    params = [p for p in params if p.has_grad() or p.unsharded.requires_grad]
    ranks = group.size * (replicate_group.size if replicate_group is not None else 1)
    me = (replicate_group.rank if replicate_group is not None else 0) * group.size + group.rank
    unit = position % 250 + 1              # small: exact in bfloat16 too
    for dtype, same in _by_dtype(params, lambda p: reduce_dtype or (
            p.grad_dtype() if p.has_grad() else p.unsharded._data.dtype)):
        xp = array_module(same[0].sharded._data)
        offsets = _offsets(same)
        end = offsets[-1]
        send = xp.zeros((same[0].mesh.size(), end + len(same) + ranks), dtype)
        had = [p.has_grad() for p in same]
        for p, start, stop, has in zip(same, offsets, offsets[1:], had):
            if has:
                p.write_whole(send[:, start:stop], p.take_grad())  # each freed before the next
        # float16 sums overflow where the average would not: part of the division first,
        # as PyTorch's FSDP does (a power of two near the square root of the factor)
        pre = 1.0
        if dtype == np.float16:
            while divide_factor % pre == 0 and divide_factor / pre > pre:
                pre *= 2
            send /= pre
        send[:, end:end + len(same)] = xp.asarray(had, dtype)
        send[:, end + len(same) + me] = unit
        out = xp.empty(send.shape[1], dtype)
        reduce_scatter_tensor(Tensor._make(out), Tensor._make(send), group=group)
        if replicate_group is not None:
            all_reduce(Tensor._make(out), group=replicate_group)
        units = [int(round(float(u))) for u in out[end + len(same):].tolist()]
        if any(u != unit for u in units):
            raise RuntimeError(
                f"fully_shard: the ranks reduced the gradients of different units together "
                f"(units numbered {sorted(set(units))} by their place under the root; this "
                f"rank's is {unit}): a unit whose backward left a parameter without a "
                f"gradient on some ranks reduces at the end of backward there, out of order. "
                f"Use every parameter of a unit on every rank (e.g. multiply an unused "
                f"branch's output by 0), or give such parameters a unit of their own")
        counts = [int(round(float(c))) for c in out[end:end + len(same)].tolist()]
        if not zero_unused:
            _check_counts(same, counts, ranks)
        out = out[:end]
        out /= divide_factor / pre
        for p, start, stop, count in zip(same, offsets, offsets[1:], counts):
            if count == 0 and not zero_unused:
                continue
            part = p.shard_from(out[start:stop]).astype(p.sharded._data.dtype)
            grad = p.sharded.grad
            if grad is None:
                p.sharded.grad = p.sharded._like(part)
            else:
                grad._data += part
                grad._version[0] += 1


def _check_counts(params, counts, ranks):
    partly = [(p, c) for p, c in zip(params, counts) if 0 < c < ranks]
    if partly:
        names = ", ".join(f"{type(m).__name__}.{name} ({c} of {ranks} ranks)"
                          for (m, name), c in ((p.places[0], c) for p, c in partly))
        raise RuntimeError(
            f"fully_shard: some ranks computed no gradient for {names} (a forward that uses "
            f"parameters depending on the rank or the data); their gradients are not "
            f"reduced. To count the missing ones as zeros (as DDP's find_unused_parameters "
            f"and FSDP1 do), call module.set_reduce_scatter_unused_params(True) on the "
            f"fully_shard-ed module")


def _offsets(params):
    """Where each parameter's padded chunk starts in a flat buffer, and the total."""
    out = [0]
    for p in params:
        out.append(out[-1] + p.chunk * p.row())
    return out


def _by_dtype(params, dtype_of):
    """[(dtype, params)] in first-seen order (a collective moves one dtype)."""
    groups = {}
    for p in params:
        groups.setdefault(dtype_of(p), []).append(p)
    return list(groups.items())
