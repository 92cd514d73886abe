"""The reducer: DDP's gradient buckets and their all-reduces during backward.

Parameters are packed, in reverse registration order (roughly the order backward produces
their gradients), into flat buckets of one dtype and device: a small first bucket (1 MB, so
communication starts early), then `bucket_cap_mb` each. At the first DDP forward after a
synchronising backward they are packed again, once, in the order that backward's gradients
arrived on rank 0, as PyTorch's DDP rebuilds its buckets (and, as there, not with
`find_unused_parameters=True` unless `static_graph=True`, nor when rank 0's backward left
parameters unused). Buckets come from the group's
`comm_buffer`, which puts them in memory that the ranks on each host map together (an
all-reduce is then a pass over shared memory, per host when there are several). Every
parameter's `.grad` is a view into its bucket.

At the start of a backward that follows a DDP forward, the reducer offers the engine each
parameter's bucket view as the home of its gradient: ops that support it (linear's weight and
bias) compute the gradient right there, and the engine accumulates in place into a `.grad` that
already is the view. Each parameter's post-accumulate hook marks it ready; a gradient that
arrived elsewhere is copied into its view then. When a bucket's parameters are all ready it is
all-reduced (AVG) asynchronously, on the group's communication thread, while backward goes on.
Unless DDP was asked for `gradient_as_bucket_view=True`, each `.grad` gets its averaged values
back as a tensor of its own when backward ends, as in PyTorch: a gradient kept from one step
is then not overwritten by the next.
Buckets are launched strictly in index order, so every rank issues the same collectives in the
same order whatever order its gradients arrive in; the last one is launched by the callback at
the end of backward and runs on the calling thread, which has nothing else to do then. Buckets
in shared memory on a single host are all reduced then, on the calling thread: reducing them is
computation, not waiting, and a communication thread would only take a core from backward
(measured: overlapping cost more than it hid). Parameters the pass does not reach are known from
the start (the engine tells us which leaves it will accumulate into), so they are ready at once
and contribute their current gradient (zeros if they had none).

Each bucket also carries one flag per parameter, set where this rank's pass used it: the same
all-reduce tells every rank which parameters some rank used, at no extra collective (with a
comm hook, which sees only the gradients, one small all-reduce of the flags after the buckets,
on every backward).
Parameters no rank used keep `.grad = None`, as without DDP.
"""
import types
import weakref

from ..autograd import engine
from ..profiler import recorder as _profiler
from ..futures import Future
from ..tensor import Tensor
from ..tensor.backend import array_module, to_host
from . import debug
from .comm_queue import CALLER_WAITS, blocking
from .process_group import ReduceOp

FIRST_BUCKET_BYTES = 1 << 20


class Bucket:
    """One flat gradient buffer and the parameters whose `.grad` views it, followed by one
    usage flag per parameter (`flat` is what the all-reduce sends)."""

    def __init__(self, index, params, group):
        self.index = index
        self.params = params
        self.offsets, total = [], 0
        for p in params:
            self.offsets.append(total)
            total += p.numel()
        self.flat = group.comm_buffer(total + len(params), params[0]._data.dtype,
                                      array_module(params[0]._data))
        self.buffer = self.flat[:total]
        self.used = self.flat[total:]
        self.views = [self.buffer[o:o + p.numel()].reshape(p.shape)
                      for o, p in zip(self.offsets, params)]
        self.pending = 0           # parameters not yet ready in the running backward
        self.work = None           # its all-reduce (or comm hook) in the running backward


def bucket_limits(cap_bytes, first_cap_bytes=FIRST_BUCKET_BYTES):
    """The byte caps of a kind's first, second, ... bucket (the last one repeats)."""
    return [min(first_cap_bytes, cap_bytes), cap_bytes]


def assign_buckets(params, group, limits):
    """Group `params` (already in launch order) into buckets as PyTorch's DDP does: per
    (dtype, device), a bucket closes once it holds at least its cap, so it may exceed the cap
    by its last parameter; the k-th bucket of a kind is capped by `limits[k]` (the last limit
    for the rest). Their buffers come from `group.comm_buffer`."""
    open_, closed, sizes, done = {}, [], {}, {}
    for p in params:
        key = (p._data.dtype, str(p.device))
        open_.setdefault(key, []).append(p)
        sizes[key] = sizes.get(key, 0) + p._data.nbytes
        if sizes[key] >= limits[min(done.get(key, 0), len(limits) - 1)]:
            closed.append(open_.pop(key))
            sizes[key] = 0
            done[key] = done.get(key, 0) + 1
    closed += open_.values()
    order = {id(p): i for i, p in enumerate(params)}
    closed.sort(key=lambda g: order[id(g[0])])
    return [Bucket(i, g, group) for i, g in enumerate(closed)]


def _weak(method):
    """A callable that forwards to `method` while its object lives (hooks must not keep the
    reducer alive)."""
    ref = weakref.WeakMethod(method)

    def call(*args):
        m = ref()
        return None if m is None else m(*args)
    return call


class Reducer:
    def __init__(self, params, group, limits, gradient_as_bucket_view=False, rebuild=True):
        self.params = list(params)
        self.group = group
        self.as_view = gradient_as_bucket_view
        self.limits = limits               # bytes per bucket (`assign_buckets`)
        self._use(assign_buckets(self.params[::-1], group, limits))
        self._index = {id(p): i for i, p in enumerate(self.params)}
        self._arrivals = []                # indices of params in the order they got ready
        self._synced = False               # a synchronising backward has ended
        self._rebuild_due = rebuild        # refill the buckets after the first backward
        self.rebuilt = False               # they were refilled in the order gradients arrive
        self.comm_hook = None              # (state, hook)
        self._armed = False                # a DDP forward happened: the next backward syncs
        self.scale = 1.0                   # on the averaged gradients (see `arm`)
        self._active = False               # a synchronising backward is running
        self._ready = set()
        self._had_grad = []
        self._used = []
        self._next = 0
        self._handles = [p.register_post_accumulate_grad_hook(_weak(self._on_grad))
                         for p in self.params]
        self._handles.append(engine.register_backward_start_hook(_weak(self._on_start)))

    def __del__(self):
        for h in getattr(self, "_handles", ()):
            h.remove()

    def _use(self, buckets):
        self.buckets = buckets
        # how many buckets launch during backward (the rest when it ends): none when the
        # group reduces them all in shared memory on one host
        local = all(self.group.reduces_locally(b.flat) for b in buckets)
        self.overlapped = 0 if local else len(buckets) - 1
        self._where = {}                   # id(param) -> (bucket, slot)
        for b in buckets:
            for slot, p in enumerate(b.params):
                self._where[id(p)] = (b, slot)

    def _rebuild(self):
        """Once, at the first DDP forward after a synchronising backward, as PyTorch's DDP:
        refill the buckets in the order that backward's gradients arrived on rank 0 (every
        rank takes rank 0's, one broadcast), so each bucket is complete as early as it can be
        even where parameters are registered in another order than they are used."""
        self._rebuild_due = False
        arrivals = self._arrivals + [-1] * (len(self.params) - len(self._arrivals))
        if not all(self._used):             # as PyTorch, none with parameters left unused
            arrivals = [-1] * len(self.params)
        order = array_module(self.buckets[0].flat).asarray(arrivals, dtype="int64")
        if self.group.size > 1:
            blocking(self.group.broadcast, order, 0)
        order, self._arrivals = to_host(order).tolist(), []
        if -1 in order:       # rank 0's first backward left parameters out, or broke off
            return
        params = [self.params[i] for i in order]
        if [id(p) for p in params] == [id(p) for b in self.buckets for p in b.params]:
            return
        old = {id(p): self._view(p) for p in self.params}
        self._use(assign_buckets(params, self.group, self.limits))
        for p in self.params:               # gradients kept as views move to their new home
            if p.grad is not None and p.grad._data is old[id(p)]:
                view = self._view(p)
                view[...] = p.grad._data
                p.grad = Tensor._make(view)
        self.rebuilt = True

    @property
    def rebuild_pending(self):
        """The next `arm()` refills the buckets (one broadcast from rank 0)."""
        return self._synced and self._rebuild_due

    # --- one backward ------------------------------------------------------------------------
    def arm(self, scale=1.0):
        """The next backward synchronises; `scale` multiplies the averaged gradients (DDP's
        join: world size over the ranks still training, where they are averaged over those)."""
        if self._synced and self._rebuild_due:
            self._rebuild()
        self._armed = True
        self.scale = scale

    def _on_start(self, leaves):
        """Set up a synchronising backward; offer the bucket views as the gradients' homes."""
        if not self._armed:
            return None
        reached = {id(t) for t in leaves}
        used = [id(p) in reached for p in self.params]
        if not any(used):
            return None                   # a backward that does not concern this model
        self._armed = False
        self._active = True
        self._ready = set()
        self._next = 0
        self._had_grad = [p.grad is not None for p in self.params]
        self._used = used
        for b in self.buckets:
            b.pending, b.work = len(b.params), None
        if all(used):                     # the usual step: one fill per bucket
            for b in self.buckets:
                b.used[...] = 1
        else:
            for p, u in zip(self.params, used):
                b, slot = self._where[id(p)]
                b.used[slot] = u
        engine.queue_callback(self._finish)
        for p, u in zip(self.params, used):
            if not u:
                self._mark_ready(p)
        return {p: self._view(p) for p, u in zip(self.params, used) if u and p.grad is None}

    def _view(self, p):
        b, slot = self._where[id(p)]
        return b.views[slot]

    def _on_grad(self, p):
        if self._active and id(p) not in self._ready:
            self._mark_ready(p)

    def _mark_ready(self, p):
        """Put p's gradient into its bucket view and launch the buckets that are complete."""
        b, slot = self._where[id(p)]
        _fill_view(p, b.views[slot], self.as_view)
        self._ready.add(id(p))
        if self._rebuild_due and not self._synced:
            self._arrivals.append(self._index[id(p)])
        b.pending -= 1
        last = self.overlapped           # the rest are launched by _finish, on this thread
        while self._next < last and self.buckets[self._next].pending == 0:
            self.buckets[self._next].work = self._launch(self.buckets[self._next])
            self._next += 1

    def _launch(self, bucket, here=False):
        """Start the bucket's reduction: on the communication thread, or (`here`) right away
        on this thread, which saves a hand-off when the caller would only wait for it."""
        if self.group.size > 1 and debug.enabled():
            debug.check(self.group, "DDP bucket all_reduce", index=bucket.index,
                        shape=tuple(bucket.buffer.shape), dtype=str(bucket.buffer.dtype))
        if self.comm_hook is None:
            verb, args = self.group.allreduce, (bucket.flat, ReduceOp.AVG)
        else:
            state, hook = self.comm_hook
            view = GradBucket(bucket, len(self.buckets))
            verb, args = self.group.submit, (lambda: _run_hook(hook, state, view),)
        if _profiler.enabled:  # spans: its launch, its run (where it runs), its wait
            verb, args = _profiler.trace_collective(
                "ddp.bucket_allreduce", self.group.submit, verb, args,
                {"bucket": bucket.index, "bytes": int(bucket.flat.nbytes),
                 "dtype": str(bucket.flat.dtype), "overlapped": not here})
        if here:
            with CALLER_WAITS:
                return verb(*args)
        return verb(*args)

    def _finish(self):
        if not self._active:
            return
        try:
            for p in self.params:           # gradients that never arrived: nothing to wait for
                if id(p) not in self._ready:
                    self._mark_ready(p)
            for b in self.buckets[self._next:]:
                b.work = self._launch(b, here=True)
            self._collect()
        finally:
            self._active = False
            self._synced = True
        _advance_heartbeat()

    def shadow(self, scale=1.0):
        """A joined rank's side of a synchronising backward that the others run and it does
        not (`DistributedDataParallel.join`): every bucket all-reduced, in order, with zeros
        for this rank's gradients and usage flags, so the ranks still training are matched.
        Its gradients become the average they get, so its replica stays theirs."""
        self._had_grad = [p.grad is not None for p in self.params]
        self._used = [False] * len(self.params)
        self.scale = scale
        for b in self.buckets:
            b.flat[...] = 0
        for p in self.params:           # a gradient it keeps as its own gets the average
            if p.grad is None or self.as_view:
                p.grad = Tensor._make(self._view(p))
        # launched as backward launches them: MPI matches a non-blocking call only with one
        for b in self.buckets:
            b.work = self._launch(b, here=b.index >= self.overlapped)
        self._collect()
        self._synced = True
        _advance_heartbeat()

    def _collect(self):
        """Wait for every bucket's reduction and hand the averaged gradients to `.grad`."""
        for b in self.buckets:
            result = b.work.result()
            if self.comm_hook is not None and result is not None:
                out = getattr(result, "_data", result)
                if out is not b.buffer:
                    b.buffer[...] = out.reshape(b.buffer.shape)
            elif self.comm_hook is None and self.scale != 1.0:
                b.buffer *= self.scale      # join: the mean over the ranks still training
        for p, used, had_grad in zip(self.params, self._used_anywhere(), self._had_grad):
            if not used and not had_grad:
                p.grad = None               # no rank used it: as without DDP
            elif p.grad is not None:
                view = self._view(p)
                if not self.as_view and p.grad._data is view:
                    p.grad = Tensor._make(view.copy())   # a tensor of its own
                elif not self.as_view:
                    p.grad._data[...] = view             # the one it had, averaged
                p.grad._version[0] += 1

    def _used_anywhere(self):
        """Per parameter: whether some rank's pass used it (read from the reduced flags).

        When this rank used them all, so did "some rank": the flags are not read, which on a
        GPU would wait for the all-reduce (the usual step makes no host synchronisation). A
        comm hook reduces only the gradients: then one small all-reduce of the flags, on every
        rank whatever it used, since ranks must issue the same collectives."""
        if self.comm_hook is not None:
            flags = array_module(self.buckets[0].flat).asarray(self._used, dtype="int32")
            blocking(self.group.allreduce, flags, ReduceOp.SUM)
            return to_host(flags).tolist()
        if all(self._used):
            return self._used
        flags = {}
        for b in self.buckets:
            for p, f in zip(b.params, to_host(b.used).tolist()):
                flags[id(p)] = f != 0
        return [flags[id(p)] for p in self.params]


def _fill_view(p, view, as_view):
    """Put p's gradient (zeros if it has none) into its bucket view; `p.grad` becomes the view
    unless it is a tensor of its own that is to stay one (`as_view` False)."""
    g = p.grad
    if g is not None and g._data is view:   # computed or accumulated in place
        return
    if g is None:
        view[...] = 0
    else:
        view[...] = g._data
        if not as_view:
            return
    p.grad = Tensor._make(view)


def _run_hook(hook, state, bucket):
    out = hook(state, bucket)
    if isinstance(out, Future):             # PyTorch's form: a Future of the reduced bucket
        out = out.wait()
        return out[0] if isinstance(out, list) else out
    if out is not None and hasattr(out, "wait") and not hasattr(out, "_data"):
        out.wait()                          # a Work: the hook reduced bucket.buffer() in place
        out = getattr(out, "_result", None)
    return out


def _advance_heartbeat():
    try:
        from . import heartbeat
    except ImportError:
        return
    heartbeat.advance()


class GradBucket:
    """What a communication hook sees of one bucket (PyTorch's `GradBucket` API)."""

    def __init__(self, bucket, count):
        self._bucket, self._count = bucket, count

    def index(self):
        return self._bucket.index

    def buffer(self):
        """The flat gradient buffer (a tensor over the bucket's memory)."""
        return Tensor._make(self._bucket.buffer)

    def gradients(self):
        return [Tensor._make(v) for v in self._bucket.views]

    def parameters(self):
        return list(self._bucket.params)

    def offsets(self):
        return list(self._bucket.offsets)

    def is_last(self):
        return self._bucket.index == self._count - 1

    def set_buffer(self, tensor):
        self._bucket.buffer[...] = tensor._data.reshape(self._bucket.buffer.shape)

    def _astype(self, dtype):
        """This bucket with a copy of its buffer cast to `dtype` (the compress wrappers)."""
        b = self._bucket
        cast = types.SimpleNamespace(index=b.index, params=b.params, offsets=b.offsets,
                                     buffer=b.buffer.astype(dtype))
        cast.views = [cast.buffer[o:o + p.numel()].reshape(p.shape)
                      for o, p in zip(b.offsets, b.params)]
        return GradBucket(cast, self._count)
