"""`Optimizer`: parameter groups, per-parameter state, `step`, `zero_grad` and state dicts.

A subclass says what state a parameter needs (`_init_state`) and how one group is updated
(`_update_group`); the update itself is a function over lists of raw arrays (NumPy or CuPy),
written once per algorithm next to its class. State dicts follow PyTorch's format: `state` is
keyed by the parameter's index in the order of `param_groups`, and each group lists `params` as
indices, so a PyTorch optimizer's state dict (with its tensors converted) loads here and back.
"""
import contextlib
import copy
import functools
import itertools
from collections import OrderedDict, defaultdict

import numpy as np

from ..autograd.function import RemovableHandle
from ..autograd.grad_mode import enable_grad
from ..profiler import recorder as _profiler
from ..tensor import backend
from ..tensor.tensor import Tensor


class _RequiredParameter:
    """Marks a default the caller must give (an option with no sensible default)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


# hooks every optimizer runs around its step: global pre-hooks before its own, its own post-hooks
# before the global ones (as in PyTorch)
_global_step_pre_hooks = OrderedDict()
_global_step_post_hooks = OrderedDict()


def register_optimizer_step_pre_hook(hook):
    """`hook(optimizer, args, kwargs)` runs before every optimizer's `step`; it may return new
    `(args, kwargs)`. Returns a handle whose `.remove()` unregisters it."""
    return _DictHandle(_global_step_pre_hooks, hook)


def register_optimizer_step_post_hook(hook):
    """`hook(optimizer, args, kwargs)` runs after every optimizer's `step`."""
    return _DictHandle(_global_step_post_hooks, hook)


def _with_step_hooks(step):
    """Run the registered pre- and post-hooks around `step` (once, even if a subclass's step
    calls its parent's)."""
    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        if getattr(self, "_in_step", False):
            return step(self, *args, **kwargs)
        self._in_step = True
        try:
            for hook in [*_global_step_pre_hooks.values(), *self._step_pre_hooks.values()]:
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError(f"a step pre-hook must return None or a tuple "
                                           f"(new_args, new_kwargs), but {hook} returned "
                                           f"{result!r}")
                    args, kwargs = result
            if _profiler.enabled:  # a span on the profiler's timeline, and a step counted
                out = _profiler.optimizer_step(self, step, args, kwargs)
            else:
                out = step(self, *args, **kwargs)
            self._opt_called = True  # lets an LR scheduler warn when it is stepped first
            for hook in [*self._step_post_hooks.values(), *_global_step_post_hooks.values()]:
                hook(self, args, kwargs)
            return out
        finally:
            self._in_step = False
    return wrapper


class Optimizer:
    """Base class of every optimizer.

    `params` is an iterable of tensors, or of dicts each holding `params` and the options that
    differ from `defaults` for that group.
    """

    # whether each element's update reads only that element (and its state): such an
    # optimizer steps FSDP's sharded parameters chunk by chunk
    _elementwise = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "step" in cls.__dict__:
            cls.step = _with_step_hooks(cls.step)

    def _init_hooks(self):
        """The optimizer's own hook registries (for wrappers that skip `__init__`, too)."""
        self._step_pre_hooks = OrderedDict()
        self._step_post_hooks = OrderedDict()
        self._state_dict_pre_hooks = OrderedDict()
        self._state_dict_post_hooks = OrderedDict()
        self._load_state_dict_pre_hooks = OrderedDict()
        self._load_state_dict_post_hooks = OrderedDict()

    _defaults_order = ()

    def __init__(self, params, defaults):
        order = [k for k in self._defaults_order if k in defaults]
        self.defaults = {**{k: defaults[k] for k in order}, **defaults}
        self.state = defaultdict(dict)
        self.param_groups = []
        self._init_hooks()
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got a Tensor; pass [tensor] or "
                            "model.parameters()")
        param_groups = list(params)
        if not param_groups:
            raise ValueError("optimizer got an empty parameter list (did the model register "
                             "its parameters, or are they all filtered out?)")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines) + "\n)"

    # ---- parameter groups ------------------------------------------------------------------
    def add_param_group(self, param_group):
        """Add a group of parameters with its own options (the rest come from `defaults`)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the order of a set changes between runs; use a list")
        params = list(params)
        # (name, tensor) pairs, as model.named_parameters() gives, keep their names
        names = [p[0] for p in params if isinstance(p, tuple)]
        if names and len(names) != len(params):
            raise ValueError("all optimizer params should be with/without names. Some param "
                             "names are missing")
        if names:
            params = [p[1] for p in params]
        for group in self.param_groups:
            if bool(names) != ("param_names" in group):
                raise ValueError(f"all optimizer param groups should be with/without names. "
                                 f"cannot add param group {'with' if names else 'without'} "
                                 f"names to the optimizer")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but parameter {i} of the "
                                f"group is a {type(p).__name__}")
            if not self._elementwise and hasattr(p, "_placements"):
                raise NotImplementedError(
                    f"{type(self).__name__} on a sharded parameter (a DTensor, parameter {i} "
                    f"of the group): its update reads more than one element at a time, so "
                    f"each rank's chunk alone would give the wrong step. Use an elementwise "
                    f"optimizer (SGD, Adam, AdamW, ...) with fully_shard, or DDP")
            if not p.is_leaf:
                raise ValueError(f"can't optimize a non-leaf Tensor (parameter {i} of the group, "
                                 f"shape {tuple(p.shape)}, made by {type(p.grad_fn).__name__}); "
                                 f"optimize the leaf it was computed from, or use "
                                 f".detach().requires_grad_()")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter group lists the same parameter more than once")
        group = dict(param_group, params=params)
        if isinstance(group.get("lr", self.defaults.get("lr")), Tensor):
            # PyTorch keeps it a tensor that schedulers fill in place; here rates are numbers
            raise NotImplementedError("lr as a Tensor is not supported; pass a float "
                                      "(lr.item())")
        if names:
            group["param_names"] = names
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if id(p) in seen:
                raise ValueError(f"some parameters appear in more than one parameter group "
                                 f"(parameter {i} of the new group, shape {tuple(p.shape)}); "
                                 f"each parameter must belong to exactly one group")
        self.param_groups.append(group)

    # ---- gradients and the update ----------------------------------------------------------
    def zero_grad(self, set_to_none=True):
        """Reset the gradients: drop them (default) or fill them with zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if g.grad_fn is not None:
                        g.detach_()
                    else:
                        g.requires_grad = False
                    g._data.fill(0)
                    g._version[0] += 1

    @_with_step_hooks
    def step(self, closure=None):
        """One update of every parameter that has a gradient. `closure`, when given, recomputes
        the loss (with gradients) and its value is returned."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = []
            for p in params:
                state = self.state[p]
                if not state:
                    state.update(self._init_state(p, group))
                states.append(state)
            with _complex_as_real(params, states):
                self._update_group(group, params, [p.grad._data for p in params], states)
            for p in params:
                p._version[0] += 1
        return loss

    def _init_state(self, param, group):
        """The state a parameter starts with (a dict of tensors); empty by default."""
        return {}

    def _update_group(self, group, params, grads, states):
        """Update `params` (tensors) in place from `grads` (arrays) and `states` (their dicts)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _update_group (or "
                                  f"override step)")

    # ---- hooks -----------------------------------------------------------------------------
    def register_step_pre_hook(self, hook):
        """`hook(optimizer, args, kwargs)` runs before each `step`; it may return new
        `(args, kwargs)`."""
        return _DictHandle(self._step_pre_hooks, hook)

    def register_step_post_hook(self, hook):
        """`hook(optimizer, args, kwargs)` runs after each `step`."""
        return _DictHandle(self._step_post_hooks, hook)

    def register_state_dict_pre_hook(self, hook, prepend=False):
        """`hook(optimizer)` runs before `state_dict` builds the dict."""
        return _DictHandle(self._state_dict_pre_hooks, hook, prepend)

    def register_state_dict_post_hook(self, hook, prepend=False):
        """`hook(optimizer, state_dict)` runs on the dict `state_dict` built; it may return
        a replacement."""
        return _DictHandle(self._state_dict_post_hooks, hook, prepend)

    def register_load_state_dict_pre_hook(self, hook, prepend=False):
        """`hook(optimizer, state_dict)` runs before `load_state_dict` (on a shallow copy of
        the dict); it may return a replacement."""
        return _DictHandle(self._load_state_dict_pre_hooks, hook, prepend)

    def register_load_state_dict_post_hook(self, hook, prepend=False):
        """`hook(optimizer)` runs after `load_state_dict`."""
        return _DictHandle(self._load_state_dict_post_hooks, hook, prepend)

    # ---- state dicts -----------------------------------------------------------------------
    def state_dict(self):
        """`{"state": {index: {name: tensor}}, "param_groups": [{..., "params": [indices]}]}`.

        The tensors are the optimizer's own (not copies), as in PyTorch: save or copy the dict
        before stepping again if you need a snapshot."""
        for hook in list(self._state_dict_pre_hooks.values()):
            hook(self)
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {(index[id(k)] if isinstance(k, Tensor) else k): dict(v)
                 for k, v in self.state.items() if v}
        state_dict = {"state": state, "param_groups": groups}
        for hook in list(self._state_dict_post_hooks.values()):
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def load_state_dict(self, state_dict):
        """Load a dict made by `state_dict` (here or by PyTorch, tensors converted). State
        tensors are copied onto each parameter's device and (floating) dtype; `step` stays a
        float32 scalar on the CPU. Saved `param_names` replace the optimizer's; without them
        its own are kept."""
        state_dict = dict(state_dict)
        for hook in list(self._load_state_dict_pre_hooks.values()):
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups but "
                             f"the optimizer has {len(self.param_groups)}")
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(f"loaded state dict's parameter group {i} has "
                                 f"{len(saved['params'])} parameters but the optimizer's has "
                                 f"{len(group['params'])}; was it saved for another model?")
        id_map = {saved_id: p for group, saved in zip(self.param_groups, saved_groups)
                  for saved_id, p in zip(saved["params"], group["params"])}
        state = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in id_map:
                p = id_map[key]
                state[p] = {name: _cast_state(p, name, v) for name, v in value.items()}
            else:
                state[key] = value
        for group, saved in zip(self.param_groups, saved_groups):
            saved["params"] = group["params"]
            if "param_names" in group:
                saved.setdefault("param_names", group["param_names"])
            for name, default in self.defaults.items():
                if default is not required:
                    saved.setdefault(name, default)
        self.state = state
        self.param_groups = saved_groups
        for hook in list(self._load_state_dict_post_hooks.values()):
            hook(self)


@contextlib.contextmanager
def _complex_as_real(params, states):
    """While a group updates, complex parameters, their gradients and their complex states are
    seen as (real, imaginary) pairs of reals, as PyTorch's optimizers see them: Adam's second
    moment is then |re|^2 and |im|^2 apart, not the square of a complex number."""
    if not any(p.dtype.is_complex for p in params):
        yield
        return
    swapped = []
    for p, state in zip(params, states):
        if p.dtype.is_complex:
            for t in [p, p.grad, *(v for v in state.values() if isinstance(v, Tensor))]:
                if t._data.dtype.kind == "c":
                    swapped.append((t, t._data))
                    t._data = _real_pairs(t._data)
    try:
        yield
    finally:
        for t, data in swapped:
            t._data = data
        for p, state in zip(params, states):      # state made during the update, as pairs
            for t in state.values():
                if p.dtype.is_complex and isinstance(t, Tensor) and \
                        t._data.dtype.kind == "f" and t.shape == (*p.shape, 2):
                    t._data = t._data.view(p._data.dtype).reshape(p.shape)


def _real_pairs(arr):
    if arr.ndim and arr.strides[-1] != arr.itemsize:
        raise NotImplementedError(f"an optimizer step on a complex parameter whose last "
                                  f"dimension is strided ({arr.strides}): make it contiguous")
    return arr.reshape(arr.shape + (1,)).view(arr.real.dtype)


def _cast_state(param, name, value):
    """A copy of one state entry placed like `param`: floating tensors take its dtype too."""
    if name == "step":
        return step_tensor(float(value.item() if isinstance(value, Tensor) else value))
    if isinstance(value, Tensor):
        like_param = tuple(value.shape) == tuple(param.shape)
        local_from = getattr(param, "_local_from", None)
        # a sharded parameter's state: this rank's part of a whole tensor or of a DTensor
        arr = local_from(value) if local_from is not None and like_param else value._data
        arr = backend.to_device(arr, param.device)
        dtype = param._data.dtype if arr.dtype.kind == "f" else arr.dtype
        arr = arr.astype(dtype, copy=True)
        return state_like(param, arr) if like_param else Tensor._make(arr)
    if isinstance(value, dict):
        return {k: _cast_state(param, k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast_state(param, None, v) for v in value)
    return value


def implementation_options(**options):
    """The defaults entries for PyTorch's options that pick how an update runs, not what it
    computes (each optimizer passes those its PyTorch signature has), validated as PyTorch does.
    `foreach` and `fused` choose among kernels that give the same update, so any value is
    honoured by the one implementation here. `capturable` (CUDA-graph capture, which keeps the
    step count on the device and changes its precision) and `differentiable` (autograd through
    the update) have no counterpart: they must stay False."""
    unknown = set(options) - {"foreach", "fused", "capturable", "differentiable"}
    if unknown:
        raise TypeError(f"unknown implementation options {sorted(unknown)}")
    if options.get("capturable"):
        raise NotImplementedError("capturable=True is not supported: Phalanx has no CUDA-graph "
                                  "capture; leave capturable=False")
    if options.get("differentiable"):
        raise NotImplementedError("differentiable=True is not supported: the update runs "
                                  "outside autograd; leave differentiable=False")
    if options.get("fused") and options.get("foreach"):
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    return options


def step_tensor(value=0.0):
    """The per-parameter step count: a float32 scalar on the CPU, as in PyTorch, so reading it
    never waits for a GPU."""
    return Tensor._make(np.array(value, dtype=np.float32))


def zeros_state(param, fill=0.0):
    """A state tensor shaped, typed and placed like `param` (a DTensor's is a DTensor laid
    out alike, as in PyTorch)."""
    xp = backend.array_module(param._data)
    return state_like(param, xp.full_like(param._data, fill))


def state_like(param, arr):
    """The array `arr` as a state tensor of `param`: a DTensor laid out as a DTensor
    parameter is (FSDP's sharded optimizer state), else a plain tensor."""
    like = getattr(param, "_like", None)
    return Tensor._make(arr) if like is None else like(arr)


class _DictHandle(RemovableHandle):
    """A hook stored in an ordered dict under a fresh key; `.remove()` deletes it."""

    __slots__ = ()
    _ids = itertools.count()

    def __init__(self, hooks, hook, prepend=False):
        key = next(self._ids)
        hooks[key] = hook
        if prepend:  # run before the hooks already registered
            hooks.move_to_end(key, last=False)
        super().__init__(hooks, key)

    def remove(self):
        self._container.pop(self._item, None)
