"""`torch.distributed.fsdp.wrap`: which submodules `FullyShardedDataParallel(...,
auto_wrap_policy=...)` makes units of their own, with PyTorch's rules.

A policy is either a function `policy(module, recurse, nonwrapped_numel) -> bool` (used through
functools.partial) or a `ModuleWrapPolicy` / `CustomPolicy` object:

- a function is asked bottom-up: with `recurse=True` whether to look into `module`'s children,
  then (after they are wrapped) with `recurse=False` and the parameters left unwrapped below
  `module` whether to wrap `module` itself;
- a policy object picks its modules in one walk, and every picked module but the root is
  wrapped, children before parents.

The root is always a unit (the wrapper built by the user's call).
"""
import contextlib
import copy

from ... import nn

__all__ = ["always_wrap_policy", "lambda_auto_wrap_policy", "transformer_auto_wrap_policy",
           "size_based_auto_wrap_policy", "enable_wrap", "wrap", "CustomPolicy",
           "ModuleWrapPolicy"]


def always_wrap_policy(*args, **kwargs):
    """Wrap every submodule."""
    return True


def lambda_auto_wrap_policy(module, recurse, nonwrapped_numel, lambda_fn):
    """Wrap the modules for which `lambda_fn(module)` is true."""
    return True if recurse else lambda_fn(module)


def transformer_auto_wrap_policy(module, recurse, nonwrapped_numel, transformer_layer_cls):
    """Wrap every instance of `transformer_layer_cls` (a set of classes), e.g. the blocks."""
    return True if recurse else isinstance(module, tuple(transformer_layer_cls))


def size_based_auto_wrap_policy(module, recurse, nonwrapped_numel, min_num_params=int(1e8),
                                force_leaf_modules=None, exclude_wrap_modules=None):
    """Wrap a module once at least `min_num_params` parameters below it are not wrapped yet;
    never look into `force_leaf_modules` (default: MultiheadAttention), never wrap
    `exclude_wrap_modules` (default: ModuleList, ModuleDict: they have no forward)."""
    if force_leaf_modules is None:
        force_leaf_modules = size_based_auto_wrap_policy.FORCE_LEAF_MODULES
    if exclude_wrap_modules is None:
        exclude_wrap_modules = size_based_auto_wrap_policy.EXCLUDE_WRAP_MODULES
    large = nonwrapped_numel >= min_num_params
    if recurse:
        return large and not isinstance(module, tuple(force_leaf_modules))
    return large and not isinstance(module, tuple(exclude_wrap_modules))


size_based_auto_wrap_policy.EXCLUDE_WRAP_MODULES = {nn.ModuleList, nn.ModuleDict}
size_based_auto_wrap_policy.FORCE_LEAF_MODULES = {nn.MultiheadAttention}


class _Policy:
    """A policy object: `_run_policy` maps each module to wrap to its constructor kwargs."""

    def _run_policy(self, root_module, ignored_modules, root_kwargs):
        raise NotImplementedError


class ModuleWrapPolicy(_Policy):
    """Wrap every instance of `module_classes`, with the root's arguments."""

    def __init__(self, module_classes):
        self._module_classes = set(module_classes)

    def _run_policy(self, root_module, ignored_modules, root_kwargs):
        classes = tuple(self._module_classes)
        return {m: copy.copy(root_kwargs) for m in root_module.modules()
                if m not in ignored_modules and isinstance(m, classes)}

    def __call__(self, module, recurse, *args, **kwargs):
        """As a function policy (PyTorch's ModuleWrapPolicy is callable as one too)."""
        return True if recurse else isinstance(module, tuple(self._module_classes))

    def __repr__(self):
        return f"{super().__repr__()}({self._module_classes})"


class CustomPolicy(_Policy):
    """`lambda_fn(module)` returns False (not wrapped), True (wrapped with the root's
    arguments) or a dict of arguments that override the root's for that unit."""

    def __init__(self, lambda_fn):
        self._lambda_fn = lambda_fn

    def _run_policy(self, root_module, ignored_modules, root_kwargs):
        picked = {}
        for m in root_module.modules():
            if m in ignored_modules:
                continue
            verdict = self._lambda_fn(m)
            if not isinstance(verdict, (dict, bool)):
                raise ValueError(f"The lambda_fn passed to CustomPolicy should return "
                                 f"False/True or a kwarg dict, but it returned {verdict}")
            if verdict:
                picked[m] = dict(root_kwargs, **verdict) if isinstance(verdict, dict) \
                    else copy.copy(root_kwargs)
        return picked


# ---- applying a policy (the FSDP constructor's auto wrap) -------------------------------
def _auto_wrap(root, policy, ignored_modules, ignored_params, root_kwargs, wrapper_cls):
    """Replace the submodules of `root` that `policy` picks by `wrapper_cls(module,
    **kwargs)`, children first (the root itself is the caller's to wrap)."""
    for name, m in root.named_modules():
        if isinstance(m, wrapper_cls) or hasattr(m, "_fsdp_state"):
            raise ValueError(f"FSDP auto wrapping requires modules to not already have FSDP "
                             f"applied but found {name} in\n{root}")
    mixed = root_kwargs.get("mixed_precision")
    classes = tuple(set(mixed._module_classes_to_ignore)) if mixed is not None else ()
    if isinstance(policy, _Policy):
        root_kwargs = dict(root_kwargs, auto_wrap_policy=None)
        picked = policy._run_policy(root, ignored_modules, root_kwargs)
        for m in root.modules():       # their own units, in full precision
            if classes and m not in ignored_modules and isinstance(m, classes):
                picked[m] = dict(picked.get(m, root_kwargs), mixed_precision=None)
        _full_precision(root, classes)
        _post_order_wrap(root, lambda m: wrapper_cls(m, **picked[m])
                         if m in picked and m is not root else None)
        return
    if classes:
        _full_precision(root, classes)
        inner = policy

        def policy(module, recurse, nonwrapped_numel):
            return inner(module=module, recurse=recurse,
                         nonwrapped_numel=nonwrapped_numel) or \
                (recurse or isinstance(module, classes))
    _recursive_wrap(root, policy, wrapper_cls, ignored_modules, ignored_params,
                    only_wrap_children=True, **root_kwargs)


def _recursive_wrap(module, auto_wrap_policy, wrapper_cls, ignored_modules, ignored_params,
                    only_wrap_children=False, **kwargs):
    """(`module`, wrapped or not, the number of parameter elements wrapped below it and in
    it): a function policy applied bottom-up, as PyTorch's."""
    numel = sum(p.numel() for p in module.parameters() if p not in ignored_params)
    if not auto_wrap_policy(module=module, recurse=True, nonwrapped_numel=numel):
        return module, 0
    wrapped = 0
    for name, child in list(module.named_children()):
        if child in ignored_modules:
            continue
        child, n = _recursive_wrap(child, auto_wrap_policy, wrapper_cls, ignored_modules,
                                   ignored_params, **kwargs)
        setattr(module, name, child)
        wrapped += n
    if not only_wrap_children and auto_wrap_policy(module=module, recurse=False,
                                                   nonwrapped_numel=numel - wrapped):
        return _wrap(module, wrapper_cls, **kwargs), numel
    return module, wrapped


def _post_order_wrap(root, wrap_fn):
    """`wrap_fn(module)` on every module below `root`, children first; a module it returns
    replaces the original in its parent."""
    seen = {root}

    def visit(module, parent, name):
        for child_name, child in list(module.named_children()):
            if child not in seen:
                seen.add(child)
                visit(child, module, child_name)
        replacement = wrap_fn(module)
        if replacement is not None:
            setattr(parent, name, replacement)
    visit(root, None, "")


def _full_precision(root, classes):
    """Modules of `classes` (mixed precision's `_module_classes_to_ignore`) compute in
    float32: their unit has no mixed precision, their floating inputs are cast to float32
    and their outputs back to the inputs' dtype (PyTorch's rule, float32 included)."""
    from .fully_shard import _cast_floating, _tensors
    from ... import float32
    for m in root.modules():
        if not classes or not isinstance(m, classes):
            continue
        m._wrap_overrides = {"mixed_precision": None}
        seen = {}

        def before(module, args, seen=seen):
            dtypes = [t.dtype for t in _tensors(args) if t.is_floating_point()]
            if dtypes and dtypes[0] != float32:
                seen[module] = dtypes[0]
            return _cast_floating(args, float32)

        def after(module, args, output, seen=seen):
            if module in seen:
                return _cast_floating(output, seen[module])
        m.register_forward_pre_hook(before)
        m.register_forward_hook(after)


def _wrap(module, wrapper_cls, **kwargs):
    overrides = getattr(module, "_wrap_overrides", None)
    return wrapper_cls(module, **dict(kwargs, **(overrides or {})))


# ---- enable_wrap / wrap: wrapping by hand inside a context ------------------------------
class _ConfigAutoWrap:
    in_autowrap_context = False
    wrapper_cls = None
    kwargs = {}


@contextlib.contextmanager
def enable_wrap(*, wrapper_cls, **wrapper_kwargs):
    """Inside, `wrap(module)` returns `wrapper_cls(module, **wrapper_kwargs)`."""
    if _ConfigAutoWrap.in_autowrap_context:
        raise NotImplementedError("You are already within an autowrap context and we "
                                  "currently do not supported nested autowrap.")
    _ConfigAutoWrap.in_autowrap_context = True
    _ConfigAutoWrap.wrapper_cls, _ConfigAutoWrap.kwargs = wrapper_cls, wrapper_kwargs
    try:
        yield
    finally:
        _ConfigAutoWrap.in_autowrap_context = False
        _ConfigAutoWrap.wrapper_cls, _ConfigAutoWrap.kwargs = None, {}


def wrap(module, **wrap_overrides):
    """`module` wrapped with enable_wrap's class and arguments (`wrap_overrides` win), or
    `module` itself outside enable_wrap."""
    if not _ConfigAutoWrap.in_autowrap_context:
        return module
    return _wrap(module, _ConfigAutoWrap.wrapper_cls,
                 **dict(_ConfigAutoWrap.kwargs, **wrap_overrides))
