"""Composable activation checkpointing: `checkpoint(module)` makes the module's own forward
run under the non-reentrant `utils.checkpoint.checkpoint`, with no wrapper module (parameter
names and state dicts unchanged), as `torch.distributed._composable.checkpoint` does."""
import functools

from ...utils.checkpoint import checkpoint as _checkpoint

_OPTIONS = ("preserve_rng_state", "context_fn", "determinism_check", "debug", "early_stop")


def checkpoint(module, **kwargs):
    """Apply to `module` in place and return it; keyword arguments are the non-reentrant
    checkpoint's (preserve_rng_state, context_fn, determinism_check, debug, early_stop)."""
    if kwargs.pop("use_reentrant", False):
        raise NotImplementedError("use_reentrant=True is not supported in composable "
                                  "checkpoint. Please use torch.utils.checkpoint.checkpoint "
                                  "instead.")
    options = {name: kwargs.pop(name) for name in _OPTIONS if name in kwargs}
    if kwargs:
        raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
    forward = module.forward

    @functools.wraps(forward)
    def checkpointed(*args, **inputs):
        return _checkpoint(lambda *a: forward(*a, **inputs), *args, use_reentrant=False,
                           **options)
    module.forward = checkpointed
    return module
