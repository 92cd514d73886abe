"""DTensor factories (`torch.distributed.tensor.zeros`, `ones`, `empty`, `full`, `rand`,
`randn`): a tensor of the given global size laid out over a mesh. Constant ones allocate only
this rank's part; for random ones every rank draws the whole, rank 0's draw is broadcast and
each rank keeps its part, so the tensor is the same whatever the ranks' seeds."""
import importlib

from ...tensor import dtypes
from .dtensor import DTensor, _spec, chunk_bounds, distribute_tensor

__all__ = ["empty", "full", "ones", "rand", "randn", "zeros"]


def _px():
    """The top-level namespace (its factories honour the default device and dtype)."""
    return importlib.import_module(__name__.split(".")[0])


def _size(size):
    return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else \
        tuple(size)


def _layout(size, layout, device_mesh, placements):
    if layout is not None and layout is not _px().strided:
        raise NotImplementedError(f"DTensor factories make strided tensors; got {layout}")
    mesh, placements = _spec(device_mesh, placements, len(size))
    [p] = placements
    if p.is_partial():
        raise NotImplementedError("DTensor factories make Shard or Replicate tensors")
    local = list(size)
    if p.is_shard():
        start, stop = chunk_bounds(size[p.dim], mesh.size(), mesh.get_local_rank())
        local[p.dim] = stop - start
    return mesh, placements, local


def _constant(make, size, dtype, layout, requires_grad, device_mesh, placements, *args):
    mesh, placements, local = _layout(size, layout, device_mesh, placements)
    part = make(local, *args, dtype=dtype, device=mesh.device_type)
    return DTensor._wrap(part._data, mesh, placements, size, requires_grad=requires_grad)


def zeros(*size, requires_grad=False, dtype=None, layout=None, device_mesh=None,
          placements=None):
    return _constant(_px().zeros, _size(size), dtype, layout, requires_grad, device_mesh,
                     placements)


def ones(*size, dtype=None, layout=None, requires_grad=False, device_mesh=None,
         placements=None):
    return _constant(_px().ones, _size(size), dtype, layout, requires_grad, device_mesh,
                     placements)


def empty(*size, dtype=None, layout=None, requires_grad=False, device_mesh=None,
          placements=None):
    return _constant(_px().empty, _size(size), dtype, layout, requires_grad, device_mesh,
                     placements)


def full(size, fill_value, *, dtype=None, layout=None, requires_grad=False, device_mesh=None,
         placements=None):
    return _constant(_px().full, _size((size,)), dtype, layout, requires_grad, device_mesh,
                     placements, fill_value)


def _random(draw, size, requires_grad, dtype, layout, device_mesh, placements):
    mesh, placements, _ = _layout(size, layout, device_mesh, placements)
    whole = draw(size, dtype=dtype or dtypes.get_default_dtype(), device=mesh.device_type)
    out = distribute_tensor(whole, mesh, placements, src_data_rank=0)
    return out.requires_grad_(True) if requires_grad else out


def rand(*size, requires_grad=False, dtype=None, layout=None, device_mesh=None,
         placements=None):
    return _random(_px().rand, _size(size), requires_grad, dtype, layout, device_mesh, placements)


def randn(*size, requires_grad=False, dtype=None, layout=None, device_mesh=None,
          placements=None):
    return _random(_px().randn, _size(size), requires_grad, dtype, layout, device_mesh,
                   placements)
