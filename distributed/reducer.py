"""The reducer: DDP's gradient buckets and their all-reduces during backward.

Parameters are packed, in reverse registration order (roughly the order backward produces
their gradients), into flat buckets of one dtype and device: a small first bucket (1 MB, so
communication starts early), then `bucket_cap_mb` each. Every parameter's `.grad` is a view
into its bucket, so the engine accumulates straight into the bucket and nothing is copied.

During a backward that follows a DDP forward, each parameter's post-accumulate hook marks it
ready; when a bucket's parameters are all ready it is all-reduced asynchronously (on the
group's communication thread) while backward goes on. Buckets are launched strictly in index
order, so every rank issues the same collectives in the same order whatever order its
gradients arrive in. Parameters the pass does not reach are known from the start (the engine
tells us which leaves it will accumulate into), so they are ready at once and contribute their
current gradient (zeros if they had none). A callback at the end of backward launches what is
left, waits for every bucket and leaves `.grad` holding the mean over ranks; parameters no rank
used keep `.grad = None`, as without DDP.
"""
import weakref

from ..autograd import engine
from ..tensor import Tensor
from ..tensor.backend import array_module
from . import debug
from .comm_queue import blocking
from .process_group import ReduceOp

FIRST_BUCKET_BYTES = 1 << 20


class Bucket:
    """One flat gradient buffer and the parameters whose `.grad` views it."""

    def __init__(self, index, params):
        self.index = index
        self.params = params
        xp = array_module(params[0]._data)
        self.offsets, total = [], 0
        for p in params:
            self.offsets.append(total)
            total += p.numel()
        self.buffer = xp.zeros(total, dtype=params[0]._data.dtype)
        self.views = [self.buffer[o:o + p.numel()].reshape(p.shape)
                      for o, p in zip(self.offsets, params)]
        self.pending = 0           # parameters not yet ready in the running backward
        self.work = None           # its all-reduce (or comm hook) in the running backward


def assign_buckets(params, cap_bytes, first_cap_bytes=FIRST_BUCKET_BYTES):
    """Group `params` (already in launch order) into buckets: per (dtype, device), closed when
    the next parameter would overflow the cap; the first bucket of each kind is capped lower."""
    open_, closed, first_closed = {}, [], set()
    for p in params:
        key = (p._data.dtype, str(p.device))
        limit = cap_bytes if key in first_closed else min(first_cap_bytes, cap_bytes)
        group = open_.setdefault(key, [])
        if group and sum(q._data.nbytes for q in group) + p._data.nbytes > limit:
            closed.append(group)
            first_closed.add(key)
            group = open_[key] = []
        group.append(p)
    closed += [g for g in open_.values() if g]
    order = {id(p): i for i, p in enumerate(params)}
    closed.sort(key=lambda g: order[id(g[0])])
    return [Bucket(i, g) for i, g in enumerate(closed)]


def _weak(method):
    """A callable that forwards to `method` while its object lives (hooks must not keep the
    reducer alive)."""
    ref = weakref.WeakMethod(method)

    def call(*args):
        m = ref()
        return None if m is None else m(*args)
    return call


class Reducer:
    def __init__(self, params, group, bucket_cap_bytes):
        self.params = list(params)
        self.group = group
        self.buckets = assign_buckets(self.params[::-1], bucket_cap_bytes)
        self._where = {}                   # id(param) -> (bucket, slot)
        for b in self.buckets:
            for slot, p in enumerate(b.params):
                self._where[id(p)] = (b, slot)
        self.comm_hook = None              # (state, hook)
        self._armed = False                # a DDP forward happened: the next backward syncs
        self._active = False               # a synchronising backward is running
        self._ready = set()
        self._had_grad = {}
        self._next = 0
        self._used = None
        self._handles = [p.register_post_accumulate_grad_hook(_weak(self._on_grad))
                         for p in self.params]
        self._handles.append(engine.register_backward_start_hook(_weak(self._on_start)))

    def __del__(self):
        for h in getattr(self, "_handles", ()):
            h.remove()

    # --- .grad as bucket views -------------------------------------------------------------
    def _attach(self, p):
        """Make p.grad the bucket view, carrying over its values (zeros if it had none)."""
        b, slot = self._where[id(p)]
        view = b.views[slot]
        g = p.grad
        if g is not None and g._data is view:
            return
        if g is None:
            view[...] = 0
        else:
            view[...] = g._data
        p.grad = Tensor._make(view)

    # --- one backward ------------------------------------------------------------------------
    def arm(self):
        self._armed = True

    def _on_start(self, leaves):
        if not self._armed:
            return
        reached = {id(t) for t in leaves}
        used = [id(p) in reached for p in self.params]
        if not any(used):
            return                        # a backward that does not concern this model
        self._armed = False
        self._active = True
        self._ready = set()
        self._next = 0
        self._had_grad = {id(p): p.grad is not None for p in self.params}
        for p in self.params:
            self._attach(p)
        for b in self.buckets:
            b.pending, b.work = len(b.params), None
        self._used = used
        engine.queue_callback(self._finish)
        for p, u in zip(self.params, used):
            if not u:
                self._mark_ready(p)

    def _on_grad(self, p):
        if not self._active or id(p) in self._ready:
            return
        b, slot = self._where[id(p)]
        if p.grad is None or p.grad._data is not b.views[slot]:
            self._attach(p)      # the engine replaced it (e.g. create_graph=True)
        self._mark_ready(p)

    def _mark_ready(self, p):
        self._ready.add(id(p))
        b, _ = self._where[id(p)]
        b.pending -= 1
        while self._next < len(self.buckets) and self.buckets[self._next].pending == 0:
            self._launch(self.buckets[self._next])
            self._next += 1

    def _launch(self, bucket):
        if self.group.size > 1 and debug.enabled():
            debug.check(self.group, "DDP bucket all_reduce", index=bucket.index,
                        shape=tuple(bucket.buffer.shape), dtype=str(bucket.buffer.dtype))
        if self.comm_hook is None:
            bucket.work = self.group.allreduce(bucket.buffer, ReduceOp.AVG)
        else:
            state, hook = self.comm_hook
            view = GradBucket(bucket, len(self.buckets))
            bucket.work = self.group.submit(lambda: _run_hook(hook, state, view))

    def _finish(self):
        if not self._active:
            return
        try:
            for p in self.params:           # gradients that never arrived: nothing to wait for
                if id(p) not in self._ready:
                    self._attach(p)
                    self._mark_ready(p)
            for b in self.buckets:
                result = b.work.result()
                if self.comm_hook is not None and result is not None:
                    out = getattr(result, "_data", result)
                    if out is not b.buffer:
                        b.buffer[...] = out.reshape(b.buffer.shape)
            # who used what: exchanged here, where the main thread waits anyway, not during
            # backward, where a collective would compete with the computation
            counts = array_module(self.buckets[0].buffer).asarray(self._used, dtype="int32")
            blocking(self.group.allreduce, counts, ReduceOp.SUM)
            for p, c in zip(self.params, counts.tolist()):
                if c == 0 and not self._had_grad[id(p)]:
                    p.grad = None           # no rank used it: as without DDP
            for p in self.params:
                if p.grad is not None:
                    p.grad._version[0] += 1
        finally:
            self._active = False
        _advance_heartbeat()


def _run_hook(hook, state, bucket):
    out = hook(state, bucket)
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
