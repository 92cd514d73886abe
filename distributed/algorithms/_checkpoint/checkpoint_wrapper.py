"""Activation checkpointing of whole modules, PyTorch's `checkpoint_wrapper` API:

    apply_activation_checkpointing(model, check_fn=lambda m: isinstance(m, Block))

replaces each matching submodule by a `CheckpointWrapper` whose forward runs the module under
`phalanx.utils.checkpoint.checkpoint` (its activations recomputed in backward). The wrapper
keeps the module as `_checkpoint_wrapped_module` but hides that name: `named_parameters()`
and `state_dict()` give the unwrapped names, and `load_state_dict` takes them, so checkpoints
move between wrapped and plain models.
"""
import enum
import functools

from ....autograd.graph import save_on_cpu
from ....nn.modules.module import Module
from ....utils.checkpoint import checkpoint as _checkpoint

__all__ = ["ActivationWrapper", "CheckpointImpl", "CheckpointWrapper", "OffloadWrapper",
           "apply_activation_checkpointing", "checkpoint_wrapper", "offload_wrapper"]

_CHECKPOINT_WRAPPED_MODULE = "_checkpoint_wrapped_module"
_CHECKPOINT_PREFIX = _CHECKPOINT_WRAPPED_MODULE + "."


class CheckpointImpl(enum.Enum):
    REENTRANT = enum.auto()
    NO_REENTRANT = enum.auto()


class ActivationWrapper(Module):
    """A module wrapping `mod` whose own name never shows in parameter names or state
    dicts; attribute and item access reach `mod`."""

    def __init__(self, mod):
        super().__init__()
        self._checkpoint_wrapped_module = mod
        self.register_state_dict_post_hook(_unprefixed)
        self.register_load_state_dict_pre_hook(_prefixed)

    def forward(self, *args, **kwargs):
        raise ValueError("Subclasses should implement forward().")

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._checkpoint_wrapped_module, name)

    def __getitem__(self, key):
        return self._checkpoint_wrapped_module.__getitem__(key)

    def named_parameters(self, *args, **kwargs):
        for name, param in super().named_parameters(*args, **kwargs):
            yield name.replace(_CHECKPOINT_PREFIX, ""), param


def _unprefixed(module, state_dict, prefix, local_metadata):
    for key in [k for k in state_dict if k.startswith(prefix + _CHECKPOINT_PREFIX)]:
        state_dict[prefix + key[len(prefix + _CHECKPOINT_PREFIX):]] = state_dict.pop(key)


def _prefixed(module, state_dict, prefix, local_metadata, strict, missing_keys,
              unexpected_keys, error_msgs):
    for key in [k for k in state_dict if k.startswith(prefix)
                and not k.startswith(prefix + _CHECKPOINT_PREFIX)]:
        state_dict[prefix + _CHECKPOINT_PREFIX + key[len(prefix):]] = state_dict.pop(key)


class OffloadWrapper(ActivationWrapper):
    """Keeps the module's saved activations in host memory (pinned) until backward."""

    def forward(self, *args, **kwargs):
        with save_on_cpu(pin_memory=True):
            return self._checkpoint_wrapped_module(*args, **kwargs)


class CheckpointWrapper(ActivationWrapper):
    """Runs the module through `checkpoint_fn` (by default `utils.checkpoint.checkpoint`
    with use_reentrant as `checkpoint_impl` says), with `checkpoint_fn_kwargs`."""

    def __init__(self, mod, checkpoint_impl=CheckpointImpl.NO_REENTRANT, checkpoint_fn=None,
                 **checkpoint_fn_kwargs):
        super().__init__(mod)
        self.checkpoint_impl = checkpoint_impl
        if checkpoint_fn is None:
            checkpoint_fn = functools.partial(
                _checkpoint, use_reentrant=checkpoint_impl == CheckpointImpl.REENTRANT)
        self.checkpoint_fn = functools.partial(checkpoint_fn, **checkpoint_fn_kwargs)

    def forward(self, *args, **kwargs):
        module = self._checkpoint_wrapped_module
        if self.checkpoint_impl == CheckpointImpl.REENTRANT and kwargs:
            # the reentrant checkpoint takes positional inputs only: pass the keyword
            # arguments' values after the positional ones and rebuild them inside
            keys = tuple(kwargs)

            def run(*flat):
                split = len(flat) - len(keys)
                return module(*flat[:split], **dict(zip(keys, flat[split:])))
            return self.checkpoint_fn(run, *args, *kwargs.values())
        return self.checkpoint_fn(module, *args, **kwargs)


def offload_wrapper(module):
    return OffloadWrapper(module)


def checkpoint_wrapper(module, checkpoint_impl=CheckpointImpl.NO_REENTRANT, checkpoint_fn=None,
                       **checkpoint_fn_kwargs):
    """`module` whose forward recomputes its activations in backward (see CheckpointWrapper)."""
    return CheckpointWrapper(module, checkpoint_impl, checkpoint_fn, **checkpoint_fn_kwargs)


def apply_activation_checkpointing(model, checkpoint_wrapper_fn=checkpoint_wrapper,
                                   check_fn=lambda _: True, auto_wrap_policy=None):
    """Replace, in place, the submodules of `model` (never `model` itself) that `check_fn`
    (or `auto_wrap_policy`, an FSDP wrap policy, which then takes precedence) picks by
    `checkpoint_wrapper_fn(submodule)`, children before parents, as PyTorch's."""
    from ...fsdp.wrap import (_Policy, _post_order_wrap, _recursive_wrap,
                              lambda_auto_wrap_policy)
    policy = auto_wrap_policy if auto_wrap_policy is not None else \
        functools.partial(lambda_auto_wrap_policy, lambda_fn=check_fn)
    if isinstance(policy, _Policy):
        picked = policy._run_policy(model, ignored_modules=set(), root_kwargs={})
        _post_order_wrap(model, lambda m: checkpoint_wrapper_fn(m)
                         if m in picked and m is not model else None)
        return
    if not callable(policy):
        raise ValueError(f"Expected {policy} to be callable or be a pre-defined wrap policy")
    _recursive_wrap(model, policy, lambda m, **_: checkpoint_wrapper_fn(m), set(), set(),
                    only_wrap_children=True)
