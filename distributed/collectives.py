"""The tensor-level collective API, with `torch.distributed`'s names and signatures.

Each function unwraps its tensors to arrays, checks them, and calls one verb of the group's
backend. Contiguous tensors are passed as they are (no copy; results land in place);
non-contiguous ones go through a contiguous copy that is written back when the work
completes. Ranks (`src`, `dst`) are global ranks, as in PyTorch. With `async_op=True` a
function returns a work handle (`wait()`, `is_completed()`); otherwise it returns when the
result is in place. Tensors written by a collective have their version counter bumped.
"""
import pickle
import threading

from ..cuda import current_device
from ..tensor.dtypes import is_floating_np
from . import debug
from .comm_queue import CALLER_WAITS
from .process_group import ReduceOp, Work
from .world import resolve


class _After(Work):
    """A work handle that runs `after()` once (a copy-back) when the inner work completes."""

    def __init__(self, inner, after):
        super().__init__()
        self._inner, self._after = inner, after
        self._lock = threading.Lock()

    def _finish(self, timeout=None):
        with self._lock:
            if self._event.is_set():
                return
            try:
                self._inner.wait(timeout)
            except TimeoutError:
                raise
            except BaseException as e:
                self.set_error(e)
                return
            self._after()
            self.set_result(getattr(self._inner, "_result", None))

    def is_completed(self):
        if not self._event.is_set() and self._inner.is_completed():
            self._finish()
        return self._event.is_set()

    @property
    def polls_from_any_thread(self):
        return self._inner.polls_from_any_thread

    def wait(self, timeout=None):
        self._finish(timeout)
        return super().wait()


def _run(async_op, after, verb, *args, outputs=()):
    """Issue `verb(*args)` and, unless async_op, wait for it (synchronous verbs run on this
    thread). `after` (or None) runs once the work is complete: copy-backs of results. An
    asynchronous call's handle keeps its output tensors, the value of its `get_future()`."""
    if async_op:
        work = verb(*args)
        work = work if after is None else _After(work, after)
        work.outputs = list(outputs)
        return work
    with CALLER_WAITS:
        verb(*args).wait()
    if after is not None:
        after()
    return None


def _array(t, what):
    data = getattr(t, "_data", None)
    if data is None:
        raise TypeError(f"{what} must be a phalanx Tensor, got {type(t).__name__}")
    return data


def _out(t, what="tensor"):
    """(contiguous array to write into, write-back or None); bumps the version counter."""
    a = _array(t, what)
    t._version[0] += 1
    if a.flags.c_contiguous:
        return a, None
    c = a.copy(order="C")

    def back():
        a[...] = c
    return c, back


def _in(t, what="tensor"):
    a = _array(t, what)
    return a if a.flags.c_contiguous else a.copy(order="C")


def _xp(a):
    from ..tensor.backend import array_module
    return array_module(a)


def _root(pg, rank, what):
    try:
        return pg.ranks.index(rank)
    except ValueError:
        raise ValueError(f"{what}={rank} is not a member of {pg!r} (global ranks "
                         f"{pg.ranks})") from None


def _check_op(op, a):
    if not isinstance(op, ReduceOp):
        raise TypeError(f"op must be a phalanx.distributed.ReduceOp (SUM, AVG, MAX, MIN, "
                        f"PRODUCT), got {op!r}")
    if op is ReduceOp.AVG and not is_floating_np(a.dtype):
        raise TypeError(f"ReduceOp.AVG needs a floating-point tensor, got dtype {a.dtype}; "
                        f"use SUM and divide, or convert the tensor with .float()")


def _same_shapes(tensors, ref, what):
    for i, t in enumerate(tensors):
        a = _array(t, f"{what}[{i}]")
        if tuple(a.shape) != tuple(ref.shape) or a.dtype != ref.dtype:
            raise ValueError(f"{what}[{i}] has shape {tuple(a.shape)} and dtype {a.dtype}; "
                             f"expected shape {tuple(ref.shape)} and dtype {ref.dtype} like the "
                             f"input tensor")


def _copy_into(tensors, stacked):
    def back():
        for t, s in zip(tensors, stacked):
            t._data[...] = s
            t._version[0] += 1
    return back


def _dbg(pg, verb, a=None, **fields):
    if debug._enabled and pg.size > 1:
        if a is not None:
            fields.update(shape=tuple(a.shape), dtype=str(a.dtype))
        debug.check(pg, verb, **fields)


# --- reductions and broadcast ------------------------------------------------------------------
def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce `tensor` over the ranks of `group`, in place on every rank."""
    pg = resolve(group)
    if pg is None:
        return None
    a, back = _out(tensor)
    if op is not ReduceOp.SUM:
        _check_op(op, a)
    if debug._enabled:
        _dbg(pg, "all_reduce", a, op=op)
    return _run(async_op, back, pg.allreduce, a, op, outputs=[tensor])


def broadcast(tensor, src=0, group=None, async_op=False):
    """Copy rank `src`'s tensor into `tensor` on every rank."""
    pg = resolve(group)
    if pg is None:
        return None
    root = _root(pg, src, "src")
    a, back = _out(tensor)
    _dbg(pg, "broadcast", a, src=src)
    return _run(async_op, back, pg.broadcast, a, root, outputs=[tensor])


def reduce(tensor, dst=0, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce `tensor` over the ranks into rank `dst`'s tensor (others' are unspecified)."""
    pg = resolve(group)
    if pg is None:
        return None
    root = _root(pg, dst, "dst")
    a, back = _out(tensor)
    _check_op(op, a)
    _dbg(pg, "reduce", a, dst=dst, op=op)
    return _run(async_op, back, pg.reduce, a, root, op, outputs=[tensor])


# --- gathering and scattering ------------------------------------------------------------------
def all_gather(tensor_list, tensor, group=None, async_op=False):
    """tensor_list[i] receives rank i's `tensor` (all tensors share one shape and dtype)."""
    pg = resolve(group)
    if pg is None:
        return None
    a = _in(tensor)
    if len(tensor_list) != pg.size:
        raise ValueError(f"all_gather needs a tensor_list of {pg.size} tensors (one per rank), "
                         f"got {len(tensor_list)}")
    _same_shapes(tensor_list, a, "tensor_list")
    _dbg(pg, "all_gather", a)
    out = _xp(a).empty((pg.size,) + a.shape, dtype=a.dtype)
    return _run(async_op, _copy_into(tensor_list, out), pg.allgather, out, a,
                outputs=tensor_list)


def _stacked_view(t, size, a, what):
    """`t`, shaped (size*d0, ...) or (size, *a.shape), as a (size, *a.shape) array."""
    shape = tuple(t.shape)
    concat = (size * a.shape[0],) + a.shape[1:] if a.ndim else (size,)
    if shape not in (concat, (size,) + a.shape):
        raise ValueError(f"{what} has shape {shape}; for an input of shape {a.shape} on {size} "
                         f"ranks it must be {concat} (concatenated) or {(size,) + a.shape} "
                         f"(stacked)")
    out, back = _out(t, what)
    return out.reshape((size,) + a.shape), back


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """Rank i's input lands in output[i*n:(i+1)*n] (dim 0 concatenation), or output[i]."""
    pg = resolve(group)
    if pg is None:
        return None
    a = _in(input_tensor, "input_tensor")
    out, back = _stacked_view(output_tensor, pg.size, a, "output_tensor")
    if out.dtype != a.dtype:
        raise TypeError(f"output_tensor has dtype {out.dtype} but input_tensor {a.dtype}")
    _dbg(pg, "all_gather_into_tensor", a)
    return _run(async_op, back, pg.allgather, out, a, outputs=[output_tensor])


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """`output` on rank i receives the reduction of input_list[i] over all ranks."""
    pg = resolve(group)
    if pg is None:
        return None
    o, back = _out(output, "output")
    _check_op(op, o)
    if len(input_list) != pg.size:
        raise ValueError(f"reduce_scatter needs an input_list of {pg.size} tensors (one per "
                         f"rank), got {len(input_list)}")
    _same_shapes(input_list, o, "input_list")
    _dbg(pg, "reduce_scatter", o, op=op)
    stacked = _xp(o).stack([_array(t, "input_list") for t in input_list])
    return _run(async_op, back, pg.reduce_scatter, o, stacked, op, outputs=[output])


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    """Like reduce_scatter with the inputs concatenated along dim 0 (or stacked) in `input`."""
    pg = resolve(group)
    if pg is None:
        return None
    o, back = _out(output, "output")
    _check_op(op, o)
    a = _in(input, "input")
    if a.size != pg.size * o.size or a.dtype != o.dtype:
        raise ValueError(f"reduce_scatter_tensor: input of shape {tuple(a.shape)} ({a.dtype}) "
                         f"must hold {pg.size} x output of shape {tuple(o.shape)} ({o.dtype})")
    _dbg(pg, "reduce_scatter_tensor", o, op=op)
    return _run(async_op, back, pg.reduce_scatter, o, a.reshape((pg.size,) + o.shape), op,
                outputs=[output])


def gather(tensor, gather_list=None, dst=0, group=None, async_op=False):
    """Rank `dst`'s gather_list[i] receives rank i's tensor; other ranks pass no list."""
    pg = resolve(group)
    if pg is None:
        return None
    root = _root(pg, dst, "dst")
    a = _in(tensor)
    _dbg(pg, "gather", a, dst=dst)
    after, out = None, None
    if pg.rank == root:
        if gather_list is None or len(gather_list) != pg.size:
            raise ValueError(f"gather: rank {dst} (dst) needs a gather_list of {pg.size} "
                             f"tensors, got {None if gather_list is None else len(gather_list)}")
        _same_shapes(gather_list, a, "gather_list")
        out = _xp(a).empty((pg.size,) + a.shape, dtype=a.dtype)
        after = _copy_into(gather_list, out)
    elif gather_list:
        raise ValueError(f"gather: only rank {dst} (dst) passes a gather_list")
    return _run(async_op, after, pg.gather, out, a, root, outputs=gather_list or [])


def scatter(tensor, scatter_list=None, src=0, group=None, async_op=False):
    """Rank i's `tensor` receives rank `src`'s scatter_list[i]."""
    pg = resolve(group)
    if pg is None:
        return None
    root = _root(pg, src, "src")
    o, back = _out(tensor)
    _dbg(pg, "scatter", o, src=src)
    stacked = None
    if pg.rank == root:
        if scatter_list is None or len(scatter_list) != pg.size:
            raise ValueError(f"scatter: rank {src} (src) needs a scatter_list of {pg.size} "
                             f"tensors, got {None if scatter_list is None else len(scatter_list)}")
        _same_shapes(scatter_list, o, "scatter_list")
        stacked = _xp(o).stack([_array(t, "scatter_list") for t in scatter_list])
    elif scatter_list:
        raise ValueError(f"scatter: only rank {src} (src) passes a scatter_list")
    return _run(async_op, back, pg.scatter, o, stacked, root, outputs=[tensor])


def all_to_all(output_tensor_list, input_tensor_list, group=None, async_op=False):
    """Rank i's input_tensor_list[j] lands in rank j's output_tensor_list[i] (sizes may vary)."""
    pg = resolve(group)
    if pg is None:
        return None
    for name, lst in (("output_tensor_list", output_tensor_list),
                      ("input_tensor_list", input_tensor_list)):
        if len(lst) != pg.size:
            raise ValueError(f"all_to_all needs {name} of {pg.size} tensors, got {len(lst)}")
    ins = [_array(t, "input_tensor_list") for t in input_tensor_list]
    outs = [_array(t, "output_tensor_list") for t in output_tensor_list]
    xp = _xp(ins[0])
    dtype = ins[0].dtype
    if any(x.dtype != dtype for x in ins + outs):
        raise TypeError(f"all_to_all: every tensor must share one dtype, got "
                        f"{sorted({str(x.dtype) for x in ins + outs})}")
    _dbg(pg, "all_to_all", None, dtype=str(dtype))
    send = xp.concatenate([x.reshape(-1) for x in ins]) if ins else xp.empty(0, dtype)
    recv = xp.empty(sum(x.size for x in outs), dtype=dtype)
    def back():
        off = 0
        for t, x in zip(output_tensor_list, outs):
            x[...] = recv[off:off + x.size].reshape(x.shape)
            t._version[0] += 1
            off += x.size
    return _run(async_op, back, pg.alltoallv, recv, [x.size for x in outs], send,
                [x.size for x in ins], outputs=output_tensor_list)


def all_to_all_single(output, input, output_split_sizes=None, input_split_sizes=None,
                      group=None, async_op=False):
    """Split `input` along dim 0 (evenly, or by input_split_sizes); block j goes to rank j,
    and rank i's block lands in `output` at block i (output_split_sizes)."""
    pg = resolve(group)
    if pg is None:
        return None
    a = _in(input, "input")
    o, back = _out(output, "output")
    if a.dtype != o.dtype:
        raise TypeError(f"all_to_all_single: output dtype {o.dtype} != input dtype {a.dtype}")
    _dbg(pg, "all_to_all_single", None, dtype=str(a.dtype), even=not (output_split_sizes or
                                                                       input_split_sizes))
    if not output_split_sizes and not input_split_sizes:
        if a.shape[0] % pg.size or a.shape != o.shape:
            raise ValueError(f"all_to_all_single without split sizes needs input and output of "
                             f"one shape with dim 0 divisible by {pg.size}; got input "
                             f"{tuple(a.shape)}, output {tuple(o.shape)}")
        shape = (pg.size, a.shape[0] // pg.size) + a.shape[1:]
        return _run(async_op, back, pg.alltoall, o.reshape(shape), a.reshape(shape),
                    outputs=[output])
    inner_in, inner_out = _prod(a.shape[1:]), _prod(o.shape[1:])
    ins = list(input_split_sizes or [a.shape[0] // pg.size] * pg.size)
    outs = list(output_split_sizes or [o.shape[0] // pg.size] * pg.size)
    if sum(ins) != a.shape[0] or sum(outs) != o.shape[0] or len(ins) != pg.size \
            or len(outs) != pg.size:
        raise ValueError(f"all_to_all_single: split sizes must have {pg.size} entries summing "
                         f"to dim 0; got input_split_sizes={ins} for input {tuple(a.shape)}, "
                         f"output_split_sizes={outs} for output {tuple(o.shape)}")
    return _run(async_op, back, pg.alltoallv, o.reshape(-1), [n * inner_out for n in outs],
                a.reshape(-1), [n * inner_in for n in ins], outputs=[output])


def _prod(xs):
    n = 1
    for x in xs:
        n *= x
    return n


def barrier(group=None, async_op=False, device_ids=None):
    """Return when every rank of the group has called barrier(). `device_ids=[i]` names the
    GPU of an NCCL barrier (this process's GPU); CPU backends ignore it, as PyTorch's do."""
    pg = resolve(group)
    if pg is None:
        return None
    _check_barrier_device(pg, device_ids)
    _dbg(pg, "barrier")
    return _run(async_op, None, pg.barrier)


def _check_barrier_device(pg, device_ids):
    if device_ids is None:
        return
    if not isinstance(device_ids, list):
        raise TypeError(f"Invalid function argument: device_ids type should be List[int], got "
                        f"{device_ids!r}")
    if pg.backend == "nccl":
        if device_ids != [current_device()]:
            raise NotImplementedError(
                f"barrier(device_ids={device_ids}): an NCCL group's barrier runs on this "
                f"process's GPU {current_device()}; pass device_ids=[{current_device()}] or "
                f"None")


def monitored_barrier(group=None, timeout=None, wait_all_ranks=False):
    """A barrier; PyTorch's per-rank report of who missed it is not implemented, so a
    timeout of its own and `wait_all_ranks` raise (the group's timeout still applies)."""
    if timeout is not None:
        raise NotImplementedError(
            f"monitored_barrier(timeout={timeout!r}) is not supported: the barrier waits as "
            f"long as the group's timeout (init_process_group(timeout=...)); pass timeout=None")
    if wait_all_ranks:
        raise NotImplementedError("monitored_barrier(wait_all_ranks=True) is not supported: "
                                  "no per-rank report of the ranks that missed the barrier")
    return barrier(group)


# --- point to point ------------------------------------------------------------------------------
def isend(tensor, dst, group=None, tag=0):
    """Start sending `tensor` to global rank `dst`; returns a work handle."""
    pg = resolve(group)
    if pg is None:
        return None
    return pg.send(_in(tensor), _root(pg, dst, "dst"), tag)


def irecv(tensor, src=None, group=None, tag=0):
    """Start receiving into `tensor` from global rank `src` (None: any rank); the handle's
    wait() completes it."""
    pg = resolve(group)
    if pg is None:
        return None
    root = None if src is None else _root(pg, src, "src")
    a, back = _out(tensor)
    work = pg.recv(a, root, tag)
    return work if back is None else _After(work, back)


def send(tensor, dst, group=None, tag=0):
    isend(tensor, dst, group, tag).wait()


def recv(tensor, src=None, group=None, tag=0):
    """Receive into `tensor`; returns the sender's global rank."""
    pg = resolve(group)
    work = irecv(tensor, src, group, tag)
    if work is None:
        return -1
    work.wait()
    return pg.ranks[work._result]


class P2POp:
    """One point-to-point operation for `batch_isend_irecv` (op is isend or irecv)."""

    def __init__(self, op, tensor, peer, group=None, tag=0):
        if op not in (isend, irecv):
            raise ValueError("P2POp's op must be phalanx.distributed.isend or irecv")
        self.op, self.tensor, self.peer, self.group, self.tag = op, tensor, peer, group, tag


def batch_isend_irecv(p2p_op_list):
    """Start every operation of the list; returns their work handles."""
    return [p.op(p.tensor, p.peer, p.group, p.tag) for p in p2p_op_list]


# --- Python objects --------------------------------------------------------------------------------
def broadcast_object_list(object_list, src=0, group=None, device=None):
    """Replace object_list's items with rank `src`'s (picklable objects)."""
    pg = resolve(group)
    if pg is None:
        return None
    root = _root(pg, src, "src")
    objs = pg.broadcast_object(list(object_list) if pg.rank == root else None, root)
    if len(objs) != len(object_list):
        raise ValueError(f"broadcast_object_list: rank {src} sent {len(objs)} objects but this "
                         f"rank's object_list has {len(object_list)} slots")
    object_list[:] = objs


def all_gather_object(object_list, obj, group=None):
    """object_list[i] becomes rank i's `obj` (object_list must have world-size slots)."""
    pg = resolve(group)
    if pg is None:
        return None
    objs = pg.allgather_object(obj)
    if len(object_list) != len(objs):
        raise ValueError(f"all_gather_object needs an object_list of {len(objs)} slots (one "
                         f"per rank), got {len(object_list)}")
    object_list[:] = objs


def gather_object(obj, object_gather_list=None, dst=0, group=None):
    """Rank `dst`'s object_gather_list[i] becomes rank i's `obj`."""
    pg = resolve(group)
    if pg is None:
        return None
    root = _root(pg, dst, "dst")
    objs = pg.allgather_object(obj)
    if pg.rank == root:
        if object_gather_list is None or len(object_gather_list) != pg.size:
            raise ValueError(f"gather_object: rank {dst} (dst) needs an object_gather_list of "
                             f"{pg.size} slots")
        object_gather_list[:] = objs


def scatter_object_list(scatter_object_output_list, scatter_object_input_list=None, src=0,
                        group=None):
    """scatter_object_output_list[0] becomes rank `src`'s scatter_object_input_list[rank]."""
    pg = resolve(group)
    if pg is None:
        return None
    root = _root(pg, src, "src")
    objs = pg.broadcast_object(list(scatter_object_input_list) if pg.rank == root else None,
                               root)
    scatter_object_output_list[0] = objs[pg.rank]


def send_object_list(object_list, dst=None, group=None, device=None, group_dst=None,
                     use_batch=False):
    """Send the picklable objects of `object_list` to global rank `dst` (or `group_dst`, a rank
    of `group`); the receiver's `recv_object_list` unpickles them, so use it between ranks of
    one job only, as in PyTorch. `device`: where the byte tensors travel from."""
    pg = resolve(group)
    if pg is None:
        return None
    import numpy as np
    from ..tensor import Tensor
    peer = _peer(pg, dst, group_dst, "dst")
    blobs = [pickle.dumps(obj) for obj in object_list]
    sizes = Tensor._make(np.array([len(b) for b in blobs], np.int64))
    data = Tensor._make(np.frombuffer(b"".join(blobs), np.uint8).copy())
    if device is not None:
        sizes, data = sizes.to(device), data.to(device)
    _send_all([sizes, data], peer, group, use_batch)


def recv_object_list(object_list, src=None, group=None, device=None, group_src=None,
                     use_batch=False):
    """Fill `object_list` with the objects a `send_object_list` sent (from global rank `src`,
    a rank `group_src` of `group`, or anyone when both are None); returns the sender's global
    rank. The objects are unpickled: receive only from ranks of your own job."""
    pg = resolve(group)
    if pg is None:
        return -1
    import numpy as np
    from ..tensor import Tensor
    peer = None if src is None and group_src is None else _peer(pg, src, group_src, "src")
    sizes = Tensor._make(np.empty(len(object_list), np.int64))
    if device is not None:
        sizes = sizes.to(device)
    sender = _recv_one(sizes, peer, group, use_batch)
    sizes = sizes.cpu()._data
    data = Tensor._make(np.empty(int(sizes.sum()), np.uint8))
    if device is not None:
        data = data.to(device)
    _recv_one(data, sender, group, use_batch)
    flat, start = data.cpu()._data.tobytes(), 0
    for i, size in enumerate(sizes.tolist()):
        object_list[i] = pickle.loads(flat[start:start + size])
        start += size
    return sender


def _peer(pg, rank, group_rank, what):
    """A global rank from `what` (global) or `group_what` (a rank of `pg`): exactly one."""
    if (rank is None) == (group_rank is None):
        raise ValueError(f"pass exactly one of {what} and group_{what} (got {what}={rank!r}, "
                         f"group_{what}={group_rank!r})")
    if rank is not None:
        return rank
    if not 0 <= group_rank < pg.size:
        raise ValueError(f"group_{what}={group_rank} is not a rank of {pg!r} (size {pg.size})")
    return pg.ranks[group_rank]


def _send_all(tensors, dst, group, use_batch):
    if use_batch:
        for work in batch_isend_irecv([P2POp(isend, t, dst, group) for t in tensors]):
            work.wait()
    else:
        for t in tensors:
            send(t, dst, group)


def _recv_one(tensor, src, group, use_batch):
    """Receive into `tensor`; the sender's global rank."""
    if not use_batch:
        return recv(tensor, src, group)
    pg = resolve(group)
    work, = batch_isend_irecv([P2POp(irecv, tensor, src, group)])
    work.wait()
    return pg.ranks[work._result]
