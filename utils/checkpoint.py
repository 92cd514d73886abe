"""`phalanx.utils.checkpoint`: torch.utils.checkpoint's API, trading compute for memory.

The segment runs once without recording (its activations are freed as it goes) while the
tensors that gradients can flow to are noted: every tensor requiring grad that an op inside
receives (the inputs, parameters, tensors captured from outside). One graph node then stands
for the whole segment. Its backward runs the segment again with recording on — with the random
state and autocast state of the first run, so dropout draws the same masks — and takes the
gradients of those tensors from the recomputed graph. Values and gradients are those of running
the segment plainly.
"""
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
        with _forked_rng(self.rng), _autocast(self.autocast), enable_grad():
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


def _rng_states(args):
    """The CPU generator's state and, for each GPU an argument lives on, that GPU's."""
    cuda = sorted({a.device.index or 0 for a in args
                   if isinstance(a, Tensor) and a.device.type == "cuda"})
    states = {"cpu": _random.get_rng_state()}
    if cuda:
        from .. import cuda as _cuda
        states.update({i: _cuda.get_rng_state(i) for i in cuda})
    return states


class _forked_rng:
    """Run a block from the saved random states, then put the current ones back."""

    def __init__(self, states):
        self.states = states

    def __enter__(self):
        if self.states is None:
            return
        from .. import cuda as _cuda
        self.current = {k: (_random.get_rng_state() if k == "cpu" else _cuda.get_rng_state(k))
                        for k in self.states}
        self._set(self.states)

    def __exit__(self, *exc):
        if self.states is not None:
            self._set(self.current)
        return False

    @staticmethod
    def _set(states):
        from .. import cuda as _cuda
        for k, s in states.items():
            if k == "cpu":
                _random.set_rng_state(s)
            else:
                _cuda.set_rng_state(s, k)


class _autocast:
    """Re-enter the autocast regions the first run was in."""

    def __init__(self, regions):
        self.regions = regions

    def __enter__(self):
        from ..amp import autocast
        self.entered = [autocast(d, dtype=dt) for d, dt in self.regions]
        for region in self.entered:
            region.__enter__()

    def __exit__(self, *exc):
        for region in reversed(self.entered):
            region.__exit__(*exc)
        return False


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

    end = -1
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        input = checkpoint(run(start, end + 1), input, use_reentrant=use_reentrant,
                           preserve_rng_state=preserve_rng_state)
    return run(end + 1, len(layers))(input)
