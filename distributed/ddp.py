"""`DistributedDataParallel`: one model replica per rank, gradients averaged during backward.

    model = DistributedDataParallel(model)      # after init_process_group()
    loss_fn(model(x), y).backward()             # .grad now holds the mean over ranks
    optimizer.step()

At wrap time every rank checks that it holds the same parameters and buffers (names, shapes,
dtypes) and takes rank 0's values. Each forward (in grad mode, outside `no_sync()`) arms the
reducer, which all-reduces gradient buckets as the following backward fills them (see
`reducer.py`; buckets live in memory that each host's ranks share, `shared_memory.py`). With
`forward_sync_buffers=True` (PyTorch's `broadcast_buffers`) rank 0's buffers are copied to
every rank before each forward.
`state_dict()` has the unwrapped module's keys, so checkpoints load with or without DDP.
`join()` trains on uneven inputs (ranks with different numbers of batches), as in PyTorch.
Unused parameters are found automatically on every pass, whatever `find_unused_parameters`
says; as in PyTorch, `find_unused_parameters=True` without `static_graph=True` keeps the
buckets in registration order instead of rebuilding them at the second step.
"""
import contextlib
import warnings

from ..autograd import is_grad_enabled
from ..nn.modules.module import Module
from ..tensor import Tensor
from ..tensor.backend import Device, array_module, to_host
from ..tensor.tensor import as_device
from .algorithms.join import _DISABLED, Join, Joinable, JoinHook
from .comm_queue import blocking
from .reducer import GradBucket, Reducer, bucket_limits  # noqa: F401  (GradBucket is public)
from .world import resolve

MB = 1 << 20


class DistributedDataParallel(Module, Joinable):
    """Wrap `module` (the same model on every rank of `process_group`, default the world).

    `bucket_cap_mb` (default 25, and then a first bucket of at most 1 MB) caps a gradient
    bucket, or `bucket_cap_mb_list` caps each in turn (the last for the rest), as in PyTorch
    2.13. `forward_sync_buffers` (default True) copies the buffers of rank 0 (of a rank still
    training, under `join()`) before each forward; the older `broadcast_buffers` still works,
    with PyTorch's deprecation warning, and when False also leaves buffers out of the
    initial sync. `init_sync=False` skips that sync (every rank's parameters are then the
    user's to make equal). `device_ids` and `output_device` have PyTorch's meaning for a
    module on one GPU: `device_ids=[i]` (the module's GPU) moves the forward's input tensors
    there, and the outputs go to `output_device` (default: that GPU); they must be None for a
    CPU module, and more than one device per process raises NotImplementedError.
    `gradient_as_bucket_view=True` leaves each `.grad` a view into its bucket (no copy, but
    the next backward writes into it: keep a copy of a gradient you want to keep); by default
    each `.grad` is a tensor of its own, as in PyTorch. Unused parameters are found
    automatically with either `find_unused_parameters`; as in PyTorch, True (unless
    `static_graph=True`) keeps the buckets from being rebuilt in the order gradients arrive.
    `dim` is PyTorch's and changes nothing here; `check_reduction` is deprecated and warns,
    as in PyTorch; `batched_grad_copy` only chooses how PyTorch's CUDA kernels copy
    gradients (the same values). `device_mesh` (1-D) stands for its group. Delayed all-reduce
    of named parameters, `mixed_precision` and `skip_all_reduce_unused_params=True` raise
    NotImplementedError.
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0,
                 broadcast_buffers=None, init_sync=True, process_group=None,
                 bucket_cap_mb=None, find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False,
                 delay_all_reduce_named_params=None, param_to_hook_all_reduce=None,
                 mixed_precision=None, device_mesh=None, skip_all_reduce_unused_params=False,
                 bucket_cap_mb_list=None, batched_grad_copy=False, forward_sync_buffers=None):
        super().__init__()
        self._join_config = _DISABLED
        self._divide_by_initial_world_size = True
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel wraps a phalanx.nn.Module, got "
                            f"{type(module).__name__}")
        _refuse_unsupported(delay_all_reduce_named_params=delay_all_reduce_named_params,
                            param_to_hook_all_reduce=param_to_hook_all_reduce,
                            mixed_precision=mixed_precision,
                            skip_all_reduce_unused_params=skip_all_reduce_unused_params)
        if device_mesh is not None:
            if process_group is not None:
                raise RuntimeError("Cannot specify both process_group and device_mesh "
                                   "arguments.")
            if device_mesh.ndim != 1:
                raise RuntimeError(f"Only 1D device mesh is supported, but got {device_mesh}: "
                                   f"pass the data-parallel dimension, e.g. mesh['dp'].")
            process_group = device_mesh.get_group(mesh_dim=0)
        self.device_mesh = device_mesh
        group = resolve(process_group)
        if group is None:
            raise ValueError("DistributedDataParallel: this rank is not a member of "
                             "process_group; wrap the model only on the group's ranks")
        if check_reduction:
            warnings.warn("The `check_reduction` argument in `DistributedDataParallel` module "
                          "is deprecated. Please avoid using it.", FutureWarning, stacklevel=2)
        self.module = module
        self.process_group = group
        self.forward_sync_buffers, init_buffers = _buffer_sync(broadcast_buffers,
                                                               forward_sync_buffers)
        self.device_ids, self.output_device, self.dim = device_ids, output_device, dim
        self._input_device, self._output_device = _placement(module, device_ids, output_device)
        self.bucket_cap_mb = 25 if bucket_cap_mb is None else bucket_cap_mb
        self.batched_grad_copy = batched_grad_copy
        self._sync_gradients = True
        params = [p for p in _unique(module.parameters()) if p.requires_grad]
        if not params:
            raise RuntimeError("DistributedDataParallel: the module has no parameter that "
                               "requires a gradient; there is nothing to synchronise")
        if init_sync:
            _check_same_model(group, module)
            tensors = list(module.parameters()) + (list(module.buffers()) if init_buffers
                                                   else [])
            _broadcast_coalesced(group, [t._data for t in tensors], src=0)
            for t in tensors:
                t._version[0] += 1
        self.reducer = Reducer(params, group, _limits(bucket_cap_mb, bucket_cap_mb_list),
                               gradient_as_bucket_view,
                               rebuild=static_graph or not find_unused_parameters)

    @property
    def broadcast_buffers(self):
        """PyTorch's older name of `forward_sync_buffers`."""
        return self.forward_sync_buffers

    @broadcast_buffers.setter
    def broadcast_buffers(self, value):
        self.forward_sync_buffers = value

    def will_sync_module_buffers(self):
        """Whether the next forward broadcasts the module's buffers."""
        return bool(self.forward_sync_buffers and list(self.module.buffers()))

    # --- forward ------------------------------------------------------------------------
    def forward(self, *inputs, **kwargs):
        syncs = is_grad_enabled() and self._sync_gradients
        scale, src = 1.0, 0
        if self._join_config.enable:          # inside join(): tell the joined ranks
            Join.notify_join_context(self)
            state = self._join_state(training=True, syncs=syncs)
            scale, src = state["scale"], state["src"]
        self._sync_buffers(src)
        if self._input_device is not None:
            inputs, kwargs = _move(inputs, self._input_device), _move(kwargs, self._input_device)
        out = self.module(*inputs, **kwargs)
        if self._output_device is not None:
            out = _move(out, self._output_device)
        if syncs:
            self.reducer.arm(scale)
        return out

    def _sync_buffers(self, src):
        if self.forward_sync_buffers and self.process_group.size > 1:
            buffers = list(self.module.buffers())
            if buffers:
                _broadcast_coalesced(self.process_group, [b._data for b in buffers], src=src)
                for b in buffers:
                    b._version[0] += 1

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes of forwards run inside accumulate gradients locally; the first
        backward after leaving the context synchronises the accumulated sum."""
        previous = self._sync_gradients
        self._sync_gradients = False
        try:
            yield
        finally:
            self._sync_gradients = previous

    # --- communication hooks --------------------------------------------------------------
    def register_comm_hook(self, state, hook):
        """Replace the bucket all-reduce by `hook(state, bucket)`.

        `bucket` is a `GradBucket` (`buffer()`, `gradients()`, `parameters()`, `index()`,
        `is_last()`); the hook returns the reduced flat buffer (a tensor; None means it reduced
        `bucket.buffer()` in place); the gradients it gets are the local ones (the mean is the
        hook's to take). It runs one bucket at a time in bucket order, on the group's
        communication thread (the last bucket: on the thread that runs backward, which waits
        for it anyway); collectives it calls run right away. Built-in hooks live
        in `phalanx.distributed.comm_hooks` (`allreduce_hook`, `fp16_compress_hook`,
        `PowerSGDState` + `powerSGD_hook`). Register once, before the first backward.
        """
        if self.reducer.comm_hook is not None:
            raise RuntimeError("register_comm_hook() can only be called once")
        if not callable(hook):
            raise TypeError(f"hook must be callable as hook(state, bucket), got {hook!r}")
        self.reducer.comm_hook = (state, hook)

    # --- uneven inputs ------------------------------------------------------------------------
    def join(self, divide_by_initial_world_size=True, enable=True,
             throw_on_early_termination=False):
        """Context manager for ranks with different numbers of batches (PyTorch's).

        A rank whose loop ends inside it waits at its end, and until every rank has ended
        matches the others' collectives: their buffer broadcasts and gradient all-reduces, to
        which it adds zeros (its gradients become the average the others get). At the end every
        rank takes the model of one of the ranks that trained longest. The gradients are
        averaged over the world (`divide_by_initial_world_size=True`, PyTorch's default: a
        joined rank counts as zeros) or over the ranks still training (False; a comm hook takes
        its own mean). `throw_on_early_termination=True` raises RuntimeError on every rank as
        soon as one has run out. The model's forward must not run collectives of its own
        (SyncBatchNorm cannot be joined).
        """
        return Join([self], enable, throw_on_early_termination,
                    divide_by_initial_world_size=divide_by_initial_world_size)

    def join_hook(self, divide_by_initial_world_size=True, **kwargs):
        from .sync_batchnorm import SyncBatchNorm
        synced = [n for n, m in self.module.named_modules() if isinstance(m, SyncBatchNorm)]
        if synced:
            raise NotImplementedError(
                f"DistributedDataParallel.join(): {synced[0]!r} is a SyncBatchNorm, whose "
                f"forward all-reduces batch statistics, which a rank that has run out of "
                f"inputs cannot take part in; use BatchNorm under join, or give every rank "
                f"the same number of batches (DistributedSampler(..., drop_last=True))")
        return _DDPJoinHook(self, divide_by_initial_world_size)

    @property
    def join_device(self):
        return next(iter(self.module.parameters())).device

    @property
    def join_process_group(self):
        return self.process_group

    def _join_state(self, training, syncs=False, last=False):
        """One all-gather of every rank's [still training, its backward syncs, it rebuilds
        buckets first, it joined last]: what the joined ranks must match, where buffers and
        the final model come from (the highest rank still training, or joined last) and how
        the averaged gradients scale."""
        group = self.process_group
        xp = array_module(self.reducer.buckets[0].flat)
        mine = xp.asarray([training, syncs, syncs and self.reducer.rebuild_pending, last],
                          dtype="int64")
        rows = xp.zeros((group.size, 4), dtype="int64")
        blocking(group.allgather, rows, mine)
        rows = to_host(rows).tolist()
        training = sum(r[0] for r in rows)
        chosen = [i for i, r in enumerate(rows) if r[0] or r[3]]
        by_world = self._divide_by_initial_world_size or not training
        return {"syncs": any(r[1] for r in rows), "rebuild": any(r[2] for r in rows),
                "src": max(chosen) if chosen else 0,
                "scale": 1.0 if by_world else group.size / training}

    # --- state dict: the unwrapped module's keys ----------------------------------------------
    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        prefix = "module."
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}  # PyTorch's DDP keys
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self):
        return (f"world_size={self.process_group.size}, bucket_cap_mb={self.bucket_cap_mb}, "
                f"buckets={len(self.reducer.buckets)}")


def _refuse_unsupported(**given):
    for name, value in given.items():
        if value is not None and value is not False:
            raise NotImplementedError(
                f"DistributedDataParallel({name}=...) is not supported: Phalanx's DDP reduces "
                f"every parameter's gradient in its buckets, in the parameters' dtype, over "
                f"process_group; leave {name} at its default")


def _buffer_sync(broadcast_buffers, forward_sync_buffers):
    """(sync buffers before each forward, include them in the initial sync), from PyTorch
    2.13's `forward_sync_buffers` and its deprecated `broadcast_buffers`."""
    if broadcast_buffers is not None:
        warnings.warn("Both `broadcast_buffers` and `forward_sync_buffers` were specified. "
                      "`broadcast_buffers` is deprecated and its value is ignored when "
                      "`forward_sync_buffers` is provided." if forward_sync_buffers is not None
                      else "`broadcast_buffers` is deprecated. Use `forward_sync_buffers` "
                      "instead. IMPORTANT: unlike `broadcast_buffers=False`, "
                      "`forward_sync_buffers=False` still syncs buffers at init.",
                      FutureWarning, stacklevel=3)
    if forward_sync_buffers is not None:
        return bool(forward_sync_buffers), True
    sync = True if broadcast_buffers is None else bool(broadcast_buffers)
    return sync, sync


def _limits(bucket_cap_mb, bucket_cap_mb_list):
    """Each bucket's cap in bytes, as PyTorch 2.13 sets them: the list given, or the cap
    given, or 25 MB after a first bucket of 1 MB."""
    if bucket_cap_mb_list:
        return [int(mb * MB) for mb in bucket_cap_mb_list]
    if bucket_cap_mb is None:
        return bucket_limits(25 * MB)
    return [int(bucket_cap_mb * MB)]


def _placement(module, device_ids, output_device):
    """(device the inputs go to, device the outputs go to), each None for "leave them", from
    PyTorch's `device_ids` / `output_device` for a module that lives on one device."""
    devices = {str(t.device) for t in list(module.parameters()) + list(module.buffers())}
    if device_ids is None:
        if output_device is not None and len(devices) == 1 and devices != {"cpu"}:
            return None, Device(as_device(output_device))
        if output_device is not None:
            raise ValueError(f"DistributedDataParallel: output_device must be None for a CPU "
                             f"or multi-device module (parameters on {sorted(devices)}), got "
                             f"{output_device!r}")
        return None, None
    ids = list(device_ids)
    if len(ids) > 1:
        raise NotImplementedError(f"DistributedDataParallel(device_ids={ids!r}): one device "
                                  f"per process only; start one rank per GPU and pass "
                                  f"device_ids=[local_rank]")
    if devices == {"cpu"} or len(devices) != 1:
        raise ValueError(f"DistributedDataParallel device_ids and output_device arguments only "
                         f"work with single-device GPU modules, but got device_ids={ids!r}, "
                         f"output_device={output_device!r}, and module parameters on "
                         f"{sorted(devices)}; move the module first (module.to(device)) or "
                         f"pass device_ids=None")
    target = Device(as_device(ids[0])) if ids else None
    if target is not None and str(target) not in devices:
        raise ValueError(f"DistributedDataParallel: device_ids={ids!r} names {target}, but the "
                         f"module lives on {devices.pop()}; move it there first "
                         f"(module.to('{target}'))")
    out = target if output_device is None else Device(as_device(output_device))
    return target, out


def _move(obj, device):
    """Tensors anywhere in `obj` (tuples, lists, dicts) moved to `device`."""
    if isinstance(obj, Tensor):
        return obj if obj.device == device else obj.to(device, non_blocking=True)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_move(o, device) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_move(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _move(v, device) for k, v in obj.items()}
    return obj


def _unique(tensors):
    seen, out = set(), []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def _signature(module):
    return ([("parameter", n, tuple(p.shape), str(p.dtype), bool(p.requires_grad))
             for n, p in module.named_parameters()] +
            [("buffer", n, tuple(b.shape), str(b.dtype), None)
             for n, b in module.named_buffers()])


def _check_same_model(group, module):
    """Raise on every rank, naming the first difference, unless all ranks hold the same
    parameters and buffers (names, shapes, dtypes, requires_grad) in the same order."""
    if group.size == 1:
        return
    sigs = group.allgather_object(_signature(module))
    ref = sigs[0]
    for rank, sig in enumerate(sigs[1:], start=1):
        if sig == ref:
            continue
        for i in range(max(len(sig), len(ref))):
            mine = sig[i] if i < len(sig) else None
            theirs = ref[i] if i < len(ref) else None
            if mine != theirs:
                break
        raise RuntimeError(
            f"DistributedDataParallel: the model differs across ranks (ranks "
            f"{group.ranks[0]} and {group.ranks[rank]}): entry {i} is {_show(theirs)} on rank "
            f"{group.ranks[0]} but {_show(mine)} on rank {group.ranks[rank]}. Build the same "
            f"model (same layers, sizes and dtypes) on every rank before wrapping it.")


def _show(entry):
    if entry is None:
        return "missing"
    kind, name, shape, dtype, requires_grad = entry
    extra = "" if requires_grad is None else f", requires_grad={requires_grad}"
    return f"{kind} {name!r} of shape {shape}, dtype {dtype}{extra}"


def _broadcast_coalesced(group, arrays, src=0):
    """Broadcast many arrays from group rank `src` with one collective per dtype."""
    if group.size == 1 or not arrays:
        return
    from ..tensor.backend import array_module
    by_kind = {}
    for a in arrays:
        by_kind.setdefault((a.dtype, type(a)), []).append(a)
    for (dtype, _), group_arrays in by_kind.items():
        xp = array_module(group_arrays[0])
        flat = xp.concatenate([a.reshape(-1) for a in group_arrays])
        blocking(group.broadcast, flat, src)
        offset = 0
        for a in group_arrays:
            a[...] = flat[offset:offset + a.size].reshape(a.shape)
            offset += a.size


class _DDPJoinHook(JoinHook):
    """DDP on a rank that has joined: each iteration, the forward's buffer broadcast (and the
    buckets' rebuild, at the second step) and, where the others' backward synchronises, every
    bucket's all-reduce with zeros for this rank; at the end, the model of the highest rank
    among the last to join, on every rank."""

    def __init__(self, ddp, divide_by_initial_world_size):
        self.ddp = ddp
        ddp._divide_by_initial_world_size = divide_by_initial_world_size

    def main_hook(self):
        ddp, reducer = self.ddp, self.ddp.reducer
        state = ddp._join_state(training=False)
        ddp._sync_buffers(state["src"])
        if not state["syncs"]:
            return
        if state["rebuild"] and reducer._rebuild_due:
            reducer._rebuild()
        reducer.shadow(state["scale"])

    def post_hook(self, is_last_joiner):
        ddp = self.ddp
        src = ddp._join_state(training=False, last=is_last_joiner)["src"]
        tensors = list(ddp.module.parameters())
        if ddp.forward_sync_buffers:
            tensors += list(ddp.module.buffers())
        if ddp.process_group.size > 1:
            _broadcast_coalesced(ddp.process_group, [t._data for t in tensors], src=src)
        for t in tensors:
            t._version[0] += 1
