"""`phalanx.utils.checkpoint`: torch.utils.checkpoint's API, trading compute for memory.

The segment runs once without recording (its activations are freed as it goes) while the
tensors that gradients can flow to are noted: every tensor requiring grad that an op inside
receives (the inputs, parameters, tensors captured from outside). One graph node then stands
for the whole segment. Its backward runs the segment again with recording on — with the random
state and autocast state of the first run, so dropout draws the same masks — and takes the
gradients of those tensors from the recomputed graph. Values and gradients are those of running
the segment plainly.
"""
import contextlib
import warnings

from ..autograd import Function, dispatch
from ..autograd.engine import run_backward
from ..autograd.grad_mode import enable_grad, is_grad_enabled, no_grad
from ..tensor import Tensor
from ..tensor import random as _random

__all__ = ["checkpoint", "checkpoint_sequential"]


def _reentrant(use_reentrant):
    if use_reentrant is None:
        warnings.warn("torch.utils.checkpoint: the use_reentrant parameter should be passed "
                      "explicitly. use_reentrant=False is recommended, but if you need to "
                      "preserve the current default behavior, you can pass "
                      "use_reentrant=True.", UserWarning, stacklevel=3)
        return True
    return use_reentrant


def checkpoint(function, *args, use_reentrant=None, context_fn=None,
               determinism_check="default", debug=False, early_stop=True,
               preserve_rng_state=True, **kwargs):
    """function(*args, **kwargs), its activations recomputed in backward instead of kept."""
    reentrant = _reentrant(use_reentrant)
    if determinism_check not in ("default", "none"):
        raise ValueError(f"determinism_check should be one of ['default', 'none'], but got "
                         f"{determinism_check!r}")
    if reentrant and (context_fn is not None or debug):
        raise ValueError("Passing `context_fn` or `debug` is only supported when "
                         "use_reentrant=False.")
    if reentrant and kwargs:
        raise ValueError(f"Unexpected keyword arguments: {','.join(kwargs)}")
    forward_context, recompute_context = context_fn() if context_fn is not None else (None, None)
    segment = _Segment(function, args, kwargs, preserve_rng_state, recompute_context,
                       determinism_check == "default")
    with no_grad(), dispatch.intercept(segment.note_inputs):
        if forward_context is not None:
            with forward_context:
                out = function(*args, **kwargs)
        else:
            out = function(*args, **kwargs)
    if not is_grad_enabled() or not segment.tensors:
        return out
    flat, rebuild = _flatten(out)
    segment.out_meta = [(tuple(t.shape), t.dtype) for t in flat]
    return rebuild(_Recompute.apply(segment, flat, *segment.tensors))


class _Segment:
    """What the recomputation needs: the function and its arguments, the tensors gradients
    flow to (in the order first met) with their versions, and the first run's random and
    autocast states."""

    def __init__(self, function, args, kwargs, preserve_rng_state, context, check):
        self.function, self.args, self.kwargs = function, args, kwargs
        self.context, self.check = context, check
        self.out_meta = None               # the first run's output shapes and dtypes
        self.tensors, self._seen = [], set()
        for a in args:
            self._note(a)
        self.rng = _rng_states(args) if preserve_rng_state else None
        from ..amp import autocast_mode
        self.autocast = [(d, autocast_mode.get_autocast_dtype(d))
                         for d in ("cpu", "cuda") if autocast_mode.is_autocast_enabled(d)]

    def _note(self, t):
        if isinstance(t, Tensor) and t.requires_grad and id(t) not in self._seen:
            self._seen.add(id(t))
            self.tensors.append(t)

    def note_inputs(self, cls, args, kwargs, proceed):
        """A transparent interceptor (fused ops stay fused): note each op's grad inputs."""
        if cls.differentiable:
            for a in args:
                self._note(a)
        return proceed(args, kwargs)

    note_inputs.transparent = True

    def versions(self):
        return [t._version[0] for t in self.tensors]

    def recompute(self):
        """The segment run again, recording; returns its flat outputs. Its graph reaches the
        first run's tensors themselves (so a gradient taken with create_graph reaches past
        them); differentiating for `self.tensors` stops there."""
        with _as_first_run(self.rng, self.autocast), enable_grad():
            if self.context is not None:
                with self.context:
                    out = self.function(*self.args, **self.kwargs)
            else:
                out = self.function(*self.args, **self.kwargs)
        flat, _ = _flatten(out)
        if self.check and [(tuple(t.shape), t.dtype) for t in flat] != self.out_meta:
            raise RuntimeError(
                "torch.utils.checkpoint: recomputed outputs differ from the first run's "
                f"(shapes and dtypes {[(tuple(t.shape), t.dtype) for t in flat]} against "
                f"{self.out_meta}); the checkpointed function must be deterministic in its "
                "shapes, or pass determinism_check='none'")
        return flat


class _Recompute(Function):
    """The segment as one graph node: forward passes the first run's outputs through;
    backward recomputes the segment and differentiates it."""

    meta_from_inputs = False     # `tensors` are edges only (FSDP may have freed them)

    @staticmethod
    def forward(ctx, segment, flat, *tensors):
        ctx.segment, ctx.saved_versions = segment, segment.versions()
        return tuple(Tensor._make(t._data) for t in flat)

    @staticmethod
    def backward(ctx, *grads):
        segment = ctx.segment
        if segment.versions() != ctx.saved_versions:
            changed = [i for i, (a, b) in enumerate(zip(segment.versions(),
                                                        ctx.saved_versions)) if a != b]
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by "
                f"an inplace operation: checkpointed segment input(s) {changed} changed after "
                f"the forward pass; the recomputation would use the new values")
        create_graph = is_grad_enabled()
        roots = [(o, g) for o, g in zip(segment.recompute(), grads)
                 if g is not None and o.requires_grad]
        if not roots:
            return (None, None) + (None,) * len(segment.tensors)
        got = run_backward([o for o, _ in roots], [g for _, g in roots], retain_graph=create_graph,
                           create_graph=create_graph, inputs=segment.tensors, accumulate=False)
        return (None, None) + tuple(got)


def _flatten(out):
    """(the tensors in `out`, in order; a function that puts new ones in their places)."""
    if isinstance(out, Tensor):
        return [out], lambda new: new[0]
    if isinstance(out, (tuple, list, dict)):
        items = list(out.values()) if isinstance(out, dict) else list(out)
        parts = [_flatten(o) for o in items]
        flat = [t for f, _ in parts for t in f]

        def rebuild(new):
            rebuilt, i = [], 0
            for f, r in parts:
                rebuilt.append(r(new[i:i + len(f)]))
                i += len(f)
            if isinstance(out, dict):
                return type(out)(zip(out.keys(), rebuilt))
            return type(out)(rebuilt) if not hasattr(out, "_fields") else type(out)(*rebuilt)
        return flat, rebuild
    return [], lambda new: out


def _rng_state(key):
    if key == "cpu":
        return _random.get_rng_state()
    from .. import cuda
    return cuda.get_rng_state(key)


def _set_rng_state(key, state):
    if key == "cpu":
        _random.set_rng_state(state)
    else:
        from .. import cuda
        cuda.set_rng_state(state, key)


def _rng_states(args):
    """The CPU generator's state and, for each GPU an argument lives on, that GPU's."""
    gpus = {a.device.index or 0 for a in args if isinstance(a, Tensor) and a.device.type == "cuda"}
    return {key: _rng_state(key) for key in ["cpu", *sorted(gpus)]}


@contextlib.contextmanager
def _as_first_run(rng, autocast_regions):
    """The first run's random states (the current ones come back afterwards) and autocast
    regions, for the recomputation."""
    current = None if rng is None else {key: _rng_state(key) for key in rng}
    for key, state in (rng or {}).items():
        _set_rng_state(key, state)
    try:
        with contextlib.ExitStack() as regions:
            from ..amp import autocast
            for device, dtype in autocast_regions:
                regions.enter_context(autocast(device, dtype=dtype))
            yield
    finally:
        for key, state in (current or {}).items():
            _set_rng_state(key, state)


def checkpoint_sequential(functions, segments, input, use_reentrant=None, **kwargs):
    """The modules (or functions) of `functions` applied in turn, in `segments` checkpointed
    segments (the last runs plainly, as in PyTorch: backward needs it at once)."""
    use_reentrant = _reentrant(use_reentrant)
    preserve_rng_state = kwargs.pop("preserve_rng_state", True)
    if kwargs:
        raise ValueError(f"Unexpected keyword arguments: {','.join(kwargs)}")
    layers = list(functions.children()) if hasattr(functions, "children") else list(functions)
    if segments < 1:
        raise ValueError(f"checkpoint_sequential: segments must be positive, got {segments}")
    size = max(len(layers) // segments, 1)

    def run(start, end):
        def forward(x):
            for layer in layers[start:end]:
                x = layer(x)
            return x
        return forward

    stop = 0
    for stop in range(size, size * segments, size):      # the first segments - 1 segments
        input = checkpoint(run(stop - size, stop), input, use_reentrant=use_reentrant,
                           preserve_rng_state=preserve_rng_state)
    return run(stop, len(layers))(input)
