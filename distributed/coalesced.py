"""`all_reduce_coalesced` and `all_gather_coalesced`: one collective for a list of tensors
(packed into one flat buffer, which is what makes them cheaper than a call per tensor)."""
from .collectives import _array, _check_op, _dbg, _run, _xp
from .process_group import ReduceOp
from .world import resolve


def _flat(tensors, verb):
    """The tensors' arrays, checked to share a dtype and device, and their concatenation."""
    if not tensors:
        raise ValueError(f"{verb} needs at least one tensor")
    arrays = [_array(t, f"{verb}: tensors[{i}]") for i, t in enumerate(tensors)]
    first = arrays[0]
    for i, a in enumerate(arrays):
        if a.dtype != first.dtype or type(a) is not type(first):
            raise TypeError(f"{verb}: tensors[{i}] is {a.dtype} on {type(a).__module__}; "
                            f"every tensor must share tensors[0]'s dtype ({first.dtype}) and "
                            f"device")
    xp = _xp(first)
    return arrays, xp.concatenate([a.ravel() for a in arrays])


def _scatter_back(flat, targets):
    """Copy consecutive pieces of `flat` into the tensors `targets` (bumping versions)."""
    offset = 0
    for t in targets:
        n = t._data.size
        t._data[...] = flat[offset:offset + n].reshape(t._data.shape)
        t._version[0] += 1
        offset += n


def all_reduce_coalesced(tensors, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce every tensor of `tensors` (a list, or one tensor) in place, in one collective;
    they must share a dtype and device."""
    pg = resolve(group)
    if pg is None:
        return None
    tensors = [tensors] if hasattr(tensors, "_data") else list(tensors)
    _, flat = _flat(tensors, "all_reduce_coalesced")
    _check_op(op, flat)
    _dbg(pg, "all_reduce_coalesced", flat, op=op)
    return _run(async_op, lambda: _scatter_back(flat, tensors), pg.allreduce, flat, op,
                outputs=tensors)


def all_gather_coalesced(output_tensor_lists, input_tensor_list, group=None, async_op=False):
    """output_tensor_lists[r][i] receives rank r's input_tensor_list[i], in one collective."""
    pg = resolve(group)
    if pg is None:
        return None
    arrays, flat = _flat(list(input_tensor_list), "all_gather_coalesced")
    if len(output_tensor_lists) != pg.size:
        raise ValueError(f"all_gather_coalesced needs {pg.size} output lists (one per rank), "
                         f"got {len(output_tensor_lists)}")
    for r, outputs in enumerate(output_tensor_lists):
        if len(outputs) != len(arrays):
            raise ValueError(f"all_gather_coalesced: output_tensor_lists[{r}] holds "
                             f"{len(outputs)} tensors; expected {len(arrays)}, one per input")
        for i, (t, a) in enumerate(zip(outputs, arrays)):
            o = _array(t, f"output_tensor_lists[{r}][{i}]")
            if o.shape != a.shape or o.dtype != a.dtype:
                raise ValueError(f"output_tensor_lists[{r}][{i}] has shape {tuple(o.shape)} "
                                 f"and dtype {o.dtype}; expected {tuple(a.shape)} and "
                                 f"{a.dtype} like input_tensor_list[{i}]")
    gathered = _xp(flat).empty((pg.size, flat.size), dtype=flat.dtype)
    _dbg(pg, "all_gather_coalesced", flat)

    def back():
        for r, outputs in enumerate(output_tensor_lists):
            _scatter_back(gathered[r], outputs)
    return _run(async_op, back, pg.allgather, gathered, flat,
                outputs=[t for outputs in output_tensor_lists for t in outputs])
