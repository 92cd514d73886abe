"""`phalanx.compile`: PyTorch 2's `torch.compile`, which Phalanx answers with the eager program.

What `torch.compile` returns computes the same values as its input (that is its contract; the
options only choose how fast), so handing back the model or function itself is what
`backend="eager"` does in PyTorch too. Options that would change behaviour rather than speed
are refused: a custom backend callable (it expects a traced graph Phalanx does not make).
One visible difference: PyTorch wraps a module in an `OptimizedModule` whose state-dict keys
start with `_orig_mod.`; here the module comes back as it was, with its own keys.
"""
_BACKENDS = ("inductor", "eager", "aot_eager", "cudagraphs")
_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile(model=None, *, fullgraph=False, dynamic=None, backend="inductor", mode=None,
            options=None, disable=False):
    """Return `model` unchanged (or, without a model, a decorator that does)."""
    if callable(backend) and not isinstance(backend, str):
        raise NotImplementedError("compile: a custom backend callable needs a traced graph, "
                                  "which Phalanx does not make; drop backend= (the model runs "
                                  "eagerly)")
    if backend not in _BACKENDS:
        raise RuntimeError(f"compile: invalid backend {backend!r}; expected one of "
                           f"{', '.join(_BACKENDS)}")
    if mode not in _MODES:
        raise RuntimeError(f"compile: unrecognized mode {mode!r}; expected one of "
                           f"{', '.join(str(m) for m in _MODES[1:])}")
    if mode is not None and options is not None:
        raise RuntimeError("Either mode or options can be specified, but both can't be "
                           "specified at the same time.")
    if model is None:
        return lambda fn: fn
    if not callable(model):
        raise RuntimeError(f"compile: expected a callable (a module or a function), got "
                           f"{type(model).__name__}")
    return model
