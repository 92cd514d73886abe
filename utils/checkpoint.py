"""`phalanx.utils.checkpoint`: torch.utils.checkpoint's API.

Checkpointing trades compute for memory: PyTorch frees a segment's activations in the forward
pass and recomputes them in the backward pass, and the values and gradients it gives are those
of running the segment plainly. Phalanx runs the segment plainly: the same values and
gradients (for parameters used inside too, with or without inputs that require grad), without
the memory saving. The options that steer the recomputation (`preserve_rng_state`,
`context_fn`, `determinism_check`, `debug`, `early_stop`) have nothing to steer here; they are
checked as PyTorch checks them.
"""
import warnings

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
               determinism_check="default", debug=False, early_stop=True, **kwargs):
    """function(*args, **kwargs): PyTorch's checkpoint's values and gradients."""
    reentrant = _reentrant(use_reentrant)
    kwargs.pop("preserve_rng_state", True)
    if determinism_check not in ("default", "none"):
        raise ValueError(f"determinism_check should be one of ['default', 'none'], but got "
                         f"{determinism_check!r}")
    if reentrant:
        if context_fn is not None or debug:
            raise ValueError("Passing `context_fn` or `debug` is only supported when "
                             "use_reentrant=False.")
        if kwargs:
            raise ValueError(f"Unexpected keyword arguments: {','.join(kwargs)}")
    elif context_fn is not None:
        # PyTorch runs the forward inside the first context and the recomputation inside the
        # second; there is no recomputation here, so only the first is entered
        forward_context, _ = context_fn()
        with forward_context:
            return function(*args, **kwargs)
    return function(*args, **kwargs)


def checkpoint_sequential(functions, segments, input, use_reentrant=None, **kwargs):
    """The modules (or functions) of `functions` applied in turn (PyTorch checkpoints them in
    `segments` segments)."""
    _reentrant(use_reentrant)
    kwargs.pop("preserve_rng_state", True)
    if kwargs:
        raise ValueError(f"Unexpected keyword arguments: {','.join(kwargs)}")
    layers = list(functions.children()) if hasattr(functions, "children") else list(functions)
    if segments < 1:
        raise ValueError(f"checkpoint_sequential: segments must be positive, got {segments}")
    for layer in layers:
        input = layer(input)
    return input
