"""`Module`: the base of every layer.

Parameters, buffers and child modules are registered by attribute assignment (`__setattr__`)
into three ordered dicts; every traversal, the state dict (keys are attribute paths) and every
device/dtype move (one `_apply`) walk those dicts.
"""
import typing
import functools
import warnings
from collections import OrderedDict, namedtuple

import numpy as np

from ...autograd import RemovableHandle, no_grad
from ...tensor import Tensor, backend, dtypes
from ...tensor.memory_formats import check_memory_format
from ..parameter import Buffer, Parameter
from .backward_hooks import BackwardHooks


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _addindent(s, n):
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    return lines[0] + "\n" + "\n".join(" " * n + line for line in lines[1:])


def _parse_to(args, kwargs):
    """(device, dtype) from the arguments of `Module.to`, as `Tensor.to` reads them."""
    device, dtype = kwargs.get("device"), kwargs.get("dtype")
    unknown = set(kwargs) - {"device", "dtype", "non_blocking", "memory_format"}
    if unknown:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(unknown)}")
    check_memory_format(kwargs.get("memory_format"), "Module.to")
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, (dtypes.dtype, np.dtype)) or a in (float, int, bool):
            dtype = a
        elif isinstance(a, (str, int, backend.Device)):
            device = backend.Device("cuda", a) if isinstance(a, int) else a
        else:
            raise TypeError(f"to() expects a device, a dtype or a tensor, got {a!r}")
    if dtype is not None:
        dtype = dtypes.from_numpy_dtype(dtypes.to_numpy_dtype(dtype))
        if not dtype.is_floating_point:
            raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got "
                            f"desired dtype={dtype}")
    return device, dtype


# Hooks of every module (`register_module_*` below, PyTorch's global hooks): the call hooks
# run before each module's own, the registration hooks may replace what is registered.
_global_forward_pre_hooks = []
_global_forward_hooks = []
_global_backward_pre_hooks = []
_global_backward_hooks = []
_global_parameter_registration_hooks = []
_global_buffer_registration_hooks = []
_global_module_registration_hooks = []


def register_module_forward_pre_hook(hook):
    """`hook(module, args)` before every module's forward (see `Module.register_forward_pre_hook`)."""
    return _register(_global_forward_pre_hooks, (hook, False))


def register_module_forward_hook(hook, *, with_kwargs=False, always_call=False):
    """`hook(module, args, output)` after every module's forward (see
    `Module.register_forward_hook`)."""
    return _register(_global_forward_hooks, (hook, with_kwargs, always_call))


def register_module_full_backward_pre_hook(hook):
    """Every module's `register_full_backward_pre_hook`."""
    return _register(_global_backward_pre_hooks, hook)


def register_module_full_backward_hook(hook):
    """Every module's `register_full_backward_hook`."""
    return _register(_global_backward_hooks, hook)


def register_module_backward_hook(hook):
    raise NotImplementedError("register_module_backward_hook (deprecated in PyTorch) is not "
                              "supported; use register_module_full_backward_hook(hook)")


def register_module_parameter_registration_hook(hook):
    """`hook(module, name, param)` whenever a module registers a parameter; a non-None result
    is registered instead."""
    return _register(_global_parameter_registration_hooks, hook)


def register_module_buffer_registration_hook(hook):
    """`hook(module, name, buffer)` whenever a module registers a buffer; a non-None result
    is registered instead."""
    return _register(_global_buffer_registration_hooks, hook)


def register_module_module_registration_hook(hook):
    """`hook(module, name, submodule)` whenever a module registers a submodule; a non-None
    result is registered instead."""
    return _register(_global_module_registration_hooks, hook)


def _registered(hooks, module, name, value):
    for hook in list(hooks):
        out = hook(module, name, value)
        if out is not None:
            value = out
    return value


class Module:
    """Base class of all layers. Subclasses assign parameters/submodules in `__init__` (after
    `super().__init__()`) and define `forward`."""

    training: bool
    _version = 1
    call_super_init = False      # PyTorch's flags: kept for code that reads them
    dump_patches = False
    T_destination = typing.TypeVar("T_destination", bound=typing.Dict[str, typing.Any])
    _HOOK_LISTS = ("_forward_pre_hooks", "_forward_hooks", "_backward_hooks",
                   "_backward_pre_hooks", "_state_dict_pre_hooks", "_state_dict_hooks",
                   "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected arguments "
                            f"{args} {kwargs}")
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent_buffers_set"] = set()
        d["_modules"] = OrderedDict()
        for name in self._HOOK_LISTS:
            d[name] = []

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required '
                                  f'"forward" function')

    # ---- registration ----------------------------------------------------------------------
    def _check_name(self, name, kind):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {kind} before Module.__init__() call (call "
                                 f"super().__init__() first)")
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f"{kind} name can't contain \".\" or be empty, got {name!r}")
        if hasattr(self, name) and name not in self._parameters and \
                name not in self._buffers and name not in self._modules:
            raise KeyError(f"attribute {name!r} already exists")

    def register_parameter(self, name, param):
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter "
                            f"'{name}' (nn.Parameter or None required)")
        if param is not None and param.grad_fn is not None:
            raise ValueError(f"cannot assign non-leaf tensor to parameter '{name}': a model "
                             f"parameter must be a leaf; wrap a detached copy: "
                             f"nn.Parameter(t.detach())")
        self._parameters[name] = _registered(_global_parameter_registration_hooks, self, name,
                                             param)

    def register_buffer(self, name, tensor, persistent=True):
        self._check_name(name, "buffer")
        if name in self._parameters:
            raise KeyError(f"attribute '{name}' already exists as a parameter")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer "
                            f"'{name}' (Tensor or None required)")
        if isinstance(tensor, Buffer):
            persistent = tensor.persistent
            tensor = Tensor._make(tensor._data)
        self._buffers[name] = _registered(_global_buffer_registration_hooks, self, name, tensor)
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._check_name(name, "module")
        self._modules[name] = _registered(_global_module_registration_hooks, self, name, module)

    register_module = add_module

    def __setattr__(self, name, value):
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call "
                                     "(call super().__init__() first)")
            self._discard(name, keep="_parameters")
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                f"(nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            if params is None:
                raise AttributeError("cannot assign module before Module.__init__() call "
                                     "(call super().__init__() first)")
            self._discard(name, keep="_modules")
            self._modules[name] = _registered(_global_module_registration_hooks, self, name,
                                              value)
        elif params is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module "
                                f"'{name}' (nn.Module or None expected)")
            d["_modules"][name] = None
        elif isinstance(value, Buffer):
            self._discard(name, keep="_buffers")
            self.register_buffer(name, value)
        elif params is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                f"(Tensor or None expected)")
            d["_buffers"][name] = _registered(_global_buffer_registration_hooks, self, name,
                                              value)
        else:
            object.__setattr__(self, name, value)

    def _discard(self, name, keep):
        """Forget `name` everywhere except in the registry `keep` (where it keeps its place)."""
        d = self.__dict__
        d.pop(name, None)
        for k in ("_parameters", "_buffers", "_modules"):
            if k != keep:
                d[k].pop(name, None)
        if keep != "_buffers":
            d["_non_persistent_buffers_set"].discard(name)

    def __getattr__(self, name):
        # only called when normal lookup fails: look in the registries
        d = self.__dict__
        for k in ("_parameters", "_buffers", "_modules"):
            reg = d.get(k)
            if reg is not None and name in reg:
                return reg[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        d = self.__dict__
        for k in ("_parameters", "_buffers", "_modules"):
            if name in d[k]:
                del d[k][name]
                d["_non_persistent_buffers_set"].discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) |
                      set(self._modules))

    def __setstate__(self, state):
        self.__dict__.update(state)
        for name in self._HOOK_LISTS:        # pickled before these hooks existed
            self.__dict__.setdefault(name, [])

    # ---- lookup by path --------------------------------------------------------------------
    def get_submodule(self, target):
        if target == "":
            return self
        mod = self
        walked = []
        for item in target.split("."):
            if not isinstance(mod, Module) or item not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no submodule `{item}` "
                                     f"(looking up '{target}' after '{'.'.join(walked)}')")
            mod = mod._modules[item]
            walked.append(item)
        return mod

    def set_submodule(self, target, module, strict=False):
        """Put `module` at the dotted path `target`, replacing the submodule there (or, unless
        `strict`, adding it to the existing parent)."""
        if target == "":
            raise ValueError("Cannot set the submodule without a target name!")
        if not isinstance(module, Module):
            raise ValueError(f"`module` is not an nn.Module, found {type(module)}")
        parent_path, _, name = target.rpartition(".")
        parent = self.get_submodule(parent_path)
        if strict and not hasattr(parent, name):
            raise AttributeError(f"{parent._get_name()} has no attribute `{name}`")
        if hasattr(parent, name) and not isinstance(getattr(parent, name), Module):
            raise AttributeError(f"`{name}` is not an nn.Module")
        setattr(parent, name, module)

    def get_parameter(self, target):
        path, _, name = target.rpartition(".")
        mod = self.get_submodule(path)
        if name not in mod._parameters:
            raise AttributeError(f"{type(mod).__name__} has no parameter `{name}` "
                                 f"(looking up '{target}')")
        return mod._parameters[name]

    def get_buffer(self, target):
        path, _, name = target.rpartition(".")
        mod = self.get_submodule(path)
        if name not in mod._buffers:
            raise AttributeError(f"{type(mod).__name__} has no buffer `{name}` "
                                 f"(looking up '{target}')")
        return mod._buffers[name]

    # ---- traversal -------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry, prefix, recurse, remove_duplicate):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) \
            if recurse else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, value in getattr(mod, registry).items():
                if value is None:
                    continue
                if remove_duplicate:
                    if id(value) in seen:
                        continue
                    seen.add(id(value))
                yield mod_prefix + ("." if mod_prefix else "") + name, value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ---- modes and gradients ---------------------------------------------------------------
    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be boolean, got {mode!r}")
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad = p.grad.detach()
                p.grad._data[...] = 0
                p.grad._version[0] += 1

    def apply(self, fn):
        """Call `fn(module)` on every submodule (children first), then on self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- moves: one _apply for every device / dtype change --------------------------------
    def _apply(self, fn, recurse=True):
        """Replace every parameter's, gradient's and buffer's array by `fn(tensor)` (this
        module's own only, without `recurse`); the Parameter objects stay the same (optimizers
        keep their references)."""
        for m in self.children() if recurse else ():
            m._apply(fn)
        with no_grad():
            for p in self._parameters.values():
                if p is None:
                    continue
                p._data = _applied(fn, p)._data
                p._version[0] += 1
                if p.grad is not None:
                    p.grad = _applied(fn, p.grad).detach()
            for name, b in self._buffers.items():
                if b is not None:
                    self._buffers[name] = fn(b)
        return self

    def to(self, *args, **kwargs):
        """`to(device)`, `to(dtype)` (floating tensors only), `to(device, dtype)`,
        `to(tensor)`; in place, returns self."""
        device, dtype = _parse_to(args, kwargs)
        non_blocking = kwargs.get("non_blocking", False)

        def move(t):
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None,
                        non_blocking=non_blocking)
        return self._apply(move)

    def cpu(self):
        return self._apply(lambda t: t.cpu())

    def share_memory(self):
        """Every parameter, gradient and buffer moved into shared memory
        (`Tensor.share_memory_`): processes the module is passed to train the same weights
        (Hogwild). Returns self."""
        return self._apply(lambda t: t.share_memory_())

    def cuda(self, device=None):
        return self._apply(lambda t: t.cuda(device))

    def to_empty(self, *, device, recurse=True):
        """Every parameter and buffer replaced by an uninitialised one on `device` (then
        initialise them, e.g. with `reset_parameters()` or `load_state_dict`)."""
        from ...tensor import empty_like
        return self._apply(lambda t: empty_like(t, device=device), recurse=recurse)

    def xpu(self, device=None):
        raise _no_such_device("xpu")

    def ipu(self, device=None):
        raise _no_such_device("ipu")

    def mtia(self, device=None):
        raise _no_such_device("mtia")

    def compile(self, *args, **kwargs):
        """PyTorch's in-place `torch.compile` of this module: Phalanx runs it eagerly (see
        `phalanx.compile`, which checks the arguments)."""
        from ...compile_api import compile as compile_
        compile_(self, *args, **kwargs)

    def _cast(self, dtype):
        return self._apply(lambda t: t.to(dtype) if t.is_floating_point() else t)

    def float(self):
        return self._cast(dtypes.float32)

    def double(self):
        return self._cast(dtypes.float64)

    def half(self):
        return self._cast(dtypes.float16)

    def bfloat16(self):
        return self._cast(dtypes.bfloat16)

    def type(self, dst_type):
        return self._apply(lambda t: t.to(dst_type))

    # ---- state dict ------------------------------------------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """Put this module's own parameters and persistent buffers into `destination`
        (override to add or transform entries)."""
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = b if keep_vars else b.detach()
        if _has_extra_state(self):
            destination[prefix + _EXTRA_STATE] = self.get_extra_state()

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        if args:  # the positional form state_dict(destination, prefix, keep_vars)
            destination = args[0]
            if len(args) > 1:
                prefix = args[1]
            if len(args) > 2:
                keep_vars = args[2]
        if destination is None:
            destination = OrderedDict()
            destination._metadata = OrderedDict()
        local_metadata = dict(version=self._version)
        if hasattr(destination, "_metadata"):      # each module's version, for old layouts
            destination._metadata[prefix[:-1]] = local_metadata
        for hook in list(self._state_dict_pre_hooks):
            hook(self, prefix, keep_vars)
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(destination=destination, prefix=prefix + name + ".",
                             keep_vars=keep_vars)
        for hook in list(self._state_dict_hooks):
            if hook(self, destination, prefix, local_metadata) is not None:
                raise RuntimeError("state_dict post-hook must return None")
        return destination

    def get_extra_state(self):
        """Override (with `set_extra_state`) to save more than tensors in the state dict,
        under the key `_extra_state`."""
        raise RuntimeError("Reached a code path in Module.get_extra_state() that should never "
                           "be called. Please file an issue at "
                           "https://github.com/pytorch/pytorch/issues/new?template=bug-report"
                           ".yml to report this bug.")

    def set_extra_state(self, state):
        """Override (with `get_extra_state`) to restore what it saved."""
        raise RuntimeError("Reached a code path in Module.set_extra_state() that should never "
                           "be called. Please file an issue at "
                           "https://github.com/pytorch/pytorch/issues/new?template=bug-report"
                           ".yml to report this bug.")

    def register_state_dict_pre_hook(self, hook):
        """`hook(module, prefix, keep_vars)` runs before this module's `state_dict()`."""
        return _register(self._state_dict_pre_hooks, hook)

    def register_state_dict_post_hook(self, hook):
        """`hook(module, state_dict, prefix, local_metadata)` runs after this module's
        `state_dict()` has filled `state_dict`, which it may change in place."""
        return _register(self._state_dict_hooks, hook)

    def register_load_state_dict_pre_hook(self, hook):
        """`hook(module, state_dict, prefix, local_metadata, strict, missing_keys,
        unexpected_keys, error_msgs)` runs before this module loads its own entries (it may
        rename or convert them in `state_dict`)."""
        return _register(self._load_state_dict_pre_hooks, hook)

    def register_load_state_dict_post_hook(self, hook):
        """`hook(module, incompatible_keys)` runs once this module and its children have
        loaded; it may edit `incompatible_keys.missing_keys` / `.unexpected_keys` in place
        (before `strict` judges them) and must return None."""
        return _register(self._load_state_dict_post_hooks, hook)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        """Copy this module's own entries from `state_dict` (override to convert old
        layouts); records missing keys and size mismatches."""
        for hook in list(self._load_state_dict_pre_hooks):
            hook(self, state_dict, prefix, local_metadata, strict, missing_keys,
                 unexpected_keys, error_msgs)
        persistent = {k: v for k, v in self._buffers.items()
                      if k not in self._non_persistent_buffers_set}
        local = {k: v for k, v in list(self._parameters.items()) + list(persistent.items())
                 if v is not None}
        for name, target in local.items():
            key = prefix + name
            if key not in state_dict:
                if strict:
                    missing_keys.append(key)
                continue
            value = state_dict[key]
            arr = value._data if isinstance(value, Tensor) else np.asarray(value)
            shape = value.shape if isinstance(value, Tensor) else arr.shape
            if tuple(shape) != tuple(target.shape):
                error_msgs.append(
                    f"size mismatch for {key}: copying a param with shape {list(shape)} "
                    f"from checkpoint, the shape in current model is {list(target.shape)}.")
                continue
            if local_metadata.get("assign_to_params_buffers", False):
                _assign_from_state_dict(self, name, target, value, arr)
            else:
                local_from = getattr(target, "_local_from", None)   # a DTensor's part
                _copy_into(target, arr if local_from is None else local_from(value), key)
        extra = prefix + _EXTRA_STATE
        if _has_extra_state(self, "set_extra_state"):
            if extra in state_dict:
                self.set_extra_state(state_dict[extra])
            elif strict:
                missing_keys.append(extra)
        if strict:
            for key in state_dict:
                if not key.startswith(prefix):
                    continue
                rest = key[len(prefix):]
                head = rest.split(".", 1)[0]
                if rest == _EXTRA_STATE and _has_extra_state(self, "set_extra_state"):
                    continue
                if "." not in rest and rest not in local and \
                        rest not in self._non_persistent_buffers_set:
                    unexpected_keys.append(key)
                elif "." in rest and head not in self._modules:
                    unexpected_keys.append(key)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy parameters and buffers from `state_dict` (tensors or arrays, e.g. a PyTorch
        state dict converted with `.numpy()`); returns (missing_keys, unexpected_keys)."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        missing, unexpected, errors = [], [], []
        metadata = getattr(state_dict, "_metadata", None)

        def load(module, prefix):
            local = dict(metadata.get(prefix[:-1], {})) if metadata is not None else {}
            if assign:
                local["assign_to_params_buffers"] = True
            module._load_from_state_dict(state_dict, prefix, local, True, missing,
                                         unexpected, errors)
            for name, child in module._modules.items():
                if child is not None:
                    load(child, prefix + name + ".")
            keys = _IncompatibleKeys(missing, unexpected)
            for hook in list(module._load_state_dict_post_hooks):
                if hook(module, keys) is not None:
                    raise AssertionError(
                        "Hooks registered with ``register_load_state_dict_post_hook`` are not "
                        "expected to return new values, if incompatible_keys need to be "
                        "modified, it should be done inplace.")
        with no_grad():
            load(self, "")
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: " +
                              ", ".join(f'"{k}"' for k in unexpected) + ". ")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: " +
                              ", ".join(f'"{k}"' for k in missing) + ". ")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        return _IncompatibleKeys(missing, unexpected)

    # ---- calling and hooks -----------------------------------------------------------------
    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        """`hook(module, args)` (or `hook(module, args, kwargs)` with `with_kwargs=True`) runs
        before `forward`; a non-None result replaces the arguments."""
        entry = (hook, with_kwargs)
        hooks = self._forward_pre_hooks
        hooks.insert(0, entry) if prepend else hooks.append(entry)
        return RemovableHandle(hooks, entry)

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False,
                              always_call=False):
        """`hook(module, args, output)` (or `hook(module, args, kwargs, output)`) runs after
        `forward`; a non-None result replaces the output. With `always_call=True` it also runs
        (with output None) when a pre-hook or `forward` raises, before the error propagates."""
        entry = (hook, with_kwargs, always_call)
        hooks = self._forward_hooks
        hooks.insert(0, entry) if prepend else hooks.append(entry)
        return RemovableHandle(hooks, entry)

    def register_full_backward_hook(self, hook, prepend=False):
        """`hook(module, grad_input, grad_output)` runs when the gradients with respect to
        the module's positional tensor inputs are computed (one entry per positional argument
        and per output, None where there is no tensor or no gradient); a non-None result
        replaces `grad_input`. Inputs and outputs pass through an identity op for it (see
        `backward_hooks.py`)."""
        if self._legacy_backward_hooks:
            raise RuntimeError("Cannot use both regular backward hooks and full backward hooks "
                               "on a single Module. Please use only one of them.")
        return _register(self._backward_hooks, hook, prepend)

    def register_full_backward_pre_hook(self, hook, prepend=False):
        """`hook(module, grad_output)` runs when the gradients with respect to the module's
        outputs are computed; a non-None result replaces `grad_output`."""
        return _register(self._backward_pre_hooks, hook, prepend)

    _legacy_backward_hooks = ()     # a list once register_backward_hook is called

    def register_backward_hook(self, hook):
        """PyTorch's deprecated module backward hook: `hook(module, grad_input, grad_output)`
        runs on the graph node that made the module's (first) output, so `grad_input` is that
        last operation's input gradients, not the module's (register_full_backward_hook gives
        those)."""
        if self._backward_hooks:
            raise RuntimeError("Cannot use both regular backward hooks and full backward hooks "
                               "on a single Module. Please use only one of them.")
        if not self._legacy_backward_hooks:
            self._legacy_backward_hooks = []
        self._legacy_backward_hooks.append(hook)
        return RemovableHandle(self._legacy_backward_hooks, hook)

    def __call__(self, *args, **kwargs):
        if not (self._forward_pre_hooks or self._forward_hooks or self._backward_hooks or
                self._backward_pre_hooks or _global_forward_pre_hooks or
                _global_forward_hooks or _global_backward_hooks or _global_backward_pre_hooks
                or self._legacy_backward_hooks):
            return self.forward(*args, **kwargs)
        forward_hooks = _global_forward_hooks + self._forward_hooks
        backward_hooks = _global_backward_hooks + self._backward_hooks
        backward_pre_hooks = _global_backward_pre_hooks + self._backward_pre_hooks
        backward = None
        try:
            args, kwargs = self._run_forward_pre_hooks(args, kwargs)
            if backward_hooks or backward_pre_hooks:
                backward = BackwardHooks(self, backward_hooks, backward_pre_hooks)
                args = backward.gate_inputs(args)
            output = self.forward(*args, **kwargs)
        except Exception:
            self._run_always_called_hooks(forward_hooks, args, kwargs)
            raise
        for hook, with_kwargs, _ in forward_hooks:
            res = hook(self, args, kwargs, output) if with_kwargs else hook(self, args, output)
            if res is not None:
                output = res
        if self._legacy_backward_hooks:
            self._hook_last_node(args, output)
        return output if backward is None else backward.gate_outputs(output)

    def _hook_last_node(self, args, output):
        """register_backward_hook's hooks go on the node that made the first output tensor,
        with PyTorch's warnings where that node is not the whole module."""
        first = output
        while not isinstance(first, Tensor):
            if isinstance(first, dict):
                first = next((v for v in first.values() if isinstance(v, Tensor)), None)
            elif isinstance(first, (tuple, list)) and first:
                first = first[0]
            else:
                return
        node = first.grad_fn
        if node is None:
            return
        outputs = (output,) if isinstance(output, Tensor) else output
        why = None
        if not (isinstance(outputs, tuple) and all(isinstance(o, Tensor) for o in outputs)):
            why = "on a Module that does not return a single Tensor or a tuple of Tensors"
        elif not all(isinstance(a, Tensor) for a in args):
            why = "on a Module that does not take as input a single Tensor or a tuple of Tensors"
        else:
            made_by = {o.grad_fn for o in outputs if o.grad_fn is not None}
            if len(made_by) > 1:
                why = "when outputs are generated by different autograd Nodes"
            elif {a.grad_fn for a in args if a.grad_fn is not None} != \
                    {f for f, _ in node.next_functions}:
                why = "when the forward contains multiple autograd Nodes"
        if why:
            warnings.warn(f"Using a non-full backward hook {why} is deprecated and will be "
                          f"removed in future versions. This hook will be missing some "
                          f"grad_input. Please use register_full_backward_hook to get the "
                          f"documented behavior.", FutureWarning, stacklevel=3)
        for hook in self._legacy_backward_hooks:
            node.register_hook(functools.partial(_legacy_hook, hook, self))

    def _run_forward_pre_hooks(self, args, kwargs):
        for hook, with_kwargs in _global_forward_pre_hooks + self._forward_pre_hooks:
            if with_kwargs:
                res = hook(self, args, kwargs)
                if res is not None:
                    if not (isinstance(res, tuple) and len(res) == 2):
                        raise RuntimeError(f"forward pre-hook {hook} with with_kwargs=True "
                                           f"must return None or (args, kwargs), got {res!r}")
                    args, kwargs = res
            else:
                res = hook(self, args)
                if res is not None:
                    args = res if isinstance(res, tuple) else (res,)
        return args, kwargs

    def _run_always_called_hooks(self, forward_hooks, args, kwargs):
        """Forward hooks registered with `always_call=True`, after a pre-hook or `forward`
        raised: their own errors are only warned about, so the original error propagates."""
        for hook, with_kwargs, always_call in forward_hooks:
            if not always_call:
                continue
            try:
                hook(self, args, kwargs, None) if with_kwargs else hook(self, args, None)
            except Exception as e:
                warnings.warn(f"forward hook {hook} with always_call=True raised {e!r}, "
                              f"silenced because forward itself raised")

    # ---- representation --------------------------------------------------------------------
    def extra_repr(self):
        """The text inside this module's parentheses in `repr` (override in layers)."""
        return ""

    def _get_name(self):
        return type(self).__name__

    def __repr__(self):
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, m in self._modules.items():
            lines.append(f"({name}): " + _addindent(repr(m), 2))
        if not lines:
            return self._get_name() + "()"
        if len(lines) == 1 and not self._modules:
            return f"{self._get_name()}({lines[0]})"
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


_EXTRA_STATE = "_extra_state"


def _no_such_device(kind):
    return RuntimeError(f"Module.{kind}(): Phalanx runs on the CPU and on NVIDIA GPUs "
                        f"(.cuda(), .to('cuda')); it has no {kind} backend")


def _has_extra_state(module, method="get_extra_state"):
    """Whether the module's class overrides `get_extra_state` (or `set_extra_state`)."""
    return getattr(type(module), method) is not getattr(Module, method)


def _legacy_hook(hook, module, grad_inputs, grad_outputs):
    return hook(module, grad_inputs, grad_outputs)


def _register(hooks, hook, prepend=False):
    hooks.insert(0, hook) if prepend else hooks.append(hook)
    return RemovableHandle(hooks, hook)


def _assign_from_state_dict(module, name, target, value, arr):
    """`load_state_dict(assign=True)`: the module takes the state dict's tensor itself (its
    memory, dtype and device) instead of copying into its own; a parameter keeps its
    requires_grad, as in PyTorch."""
    value = value if isinstance(value, Tensor) else Tensor._make(arr)
    if isinstance(target, Parameter):
        if isinstance(value, Parameter):
            value.requires_grad_(target.requires_grad)
        else:
            value = Parameter(value, requires_grad=target.requires_grad)
    setattr(module, name, value)


def _applied(fn, t):
    """`fn(t)`; for a DTensor (FSDP's sharded parameters) `fn` of this rank's part, laid out
    alike again (to_empty, to(dtype) and moves act on what this rank holds)."""
    like = getattr(t, "_like", None)
    return fn(t) if like is None else like(fn(t._raw_local())._data)


def _copy_into(target, arr, key=""):
    """Overwrite `target`'s array with `arr` (cast to its dtype, moved to its device)."""
    if target.device.type == "meta":
        if type(arr).__name__ != "MetaArray":
            warnings.warn(f"for {key}: copying from a non-meta parameter in the checkpoint to "
                          f"a meta parameter in the current model, which is a no-op. (Did you "
                          f"mean to pass `assign=True` to assign items in the state dictionary "
                          f"to their corresponding key in the module instead of copying them "
                          f"in place?)", stacklevel=3)
        return
    arr = backend.to_device(arr, target.device)
    target._data[...] = arr.astype(target._data.dtype, copy=False)
    target._version[0] += 1
