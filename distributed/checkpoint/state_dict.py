"""`torch.distributed.checkpoint.state_dict`: a model's and its optimizers' state dicts in one
form whether the model is plain, DDP-wrapped or fully_shard-ed.

- Model state dicts are keyed by the parameters' names (FQNs), without DDP's `module.`.
- Optimizer state dicts are keyed by FQN too (`{"state": {fqn: {...}}, "param_groups":
  [{..., "params": [fqn, ...]}]}`), so they survive a change of optimizer construction order
  or of world size.
- `full_state_dict=True` gives whole tensors (sharded ones all-gathered: every rank must
  call); with `cpu_offload=True` only rank 0 keeps them, the others get `{}`.
- `set_*` take sharded or whole state dicts; with `broadcast_from_rank0=True` only rank 0
  needs to have read the file.
"""
import dataclasses

import numpy as np

from ...tensor import Tensor

__all__ = ["StateDictOptions", "get_model_state_dict", "get_optimizer_state_dict",
           "get_state_dict", "set_model_state_dict", "set_optimizer_state_dict",
           "set_state_dict"]


@dataclasses.dataclass
class StateDictOptions:
    full_state_dict: bool = False
    cpu_offload: bool = False
    ignore_frozen_params: bool = False
    keep_submodule_prefixes: bool = True
    strict: bool = True
    broadcast_from_rank0: bool = False
    flatten_optimizer_state_dict: bool = False
    dsd_fqn_modifiers: str = "_fqn_modifiers"


def _options(options):
    options = options or StateDictOptions()
    if options.broadcast_from_rank0 and not options.full_state_dict:
        raise ValueError("full_state_dict must be True when broadcast_from_rank0 is True.")
    if options.dsd_fqn_modifiers != "_fqn_modifiers":
        raise NotImplementedError("StateDictOptions(dsd_fqn_modifiers=...) is not supported")
    return options


def _unwrapped(model):
    """The module whose names are the FQNs (DDP's and DataParallel's `.module`)."""
    inner = getattr(model, "module", None)
    return inner if inner is not None and type(model).__name__ in (
        "DistributedDataParallel", "DataParallel") else model


def _fqns(model):
    """{id(parameter): its first name}."""
    names = {}
    for name, p in _unwrapped(model).named_parameters(remove_duplicate=False):
        names.setdefault(id(p), _clean(name))
    return names


def _clean(name):
    """A parameter's name without FSDP1 wrappers' `_fsdp_wrapped_module.` and activation
    checkpointing's `_checkpoint_wrapped_module.`, as the state dicts write it (PyTorch's
    clean_tensor_name; Phalanx's compile adds no `_orig_mod.`)."""
    return name.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")


def _module_state_dict(module):
    """`module.state_dict()`, with FSDP1 wrappers inside giving their shards (the options
    decide what is gathered), whatever state-dict type they were set to."""
    from ..fsdp.fully_sharded_data_parallel import FullyShardedDataParallel as FSDP
    from ..fsdp.api import StateDictType
    if not FSDP.fsdp_modules(module):
        return module.state_dict()
    with FSDP.state_dict_type(module, StateDictType.SHARDED_STATE_DICT):
        return module.state_dict()


def _rank():
    from ..world import get_rank, is_initialized
    return get_rank() if is_initialized() else 0


def _whole(value, options):
    """A state value as the options ask: whole (gathered) and on the CPU where asked."""
    if not isinstance(value, Tensor):
        return value
    if options.full_state_dict and hasattr(value, "full_tensor"):
        value = value.full_tensor()
    if options.cpu_offload:
        value = value.cpu()
    return value


def _map_values(tree, fn):
    if isinstance(tree, dict):
        return {k: _map_values(v, fn) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_map_values(v, fn) for v in tree]
    return fn(tree)


def _rank0_only(options, state_dict):
    return {} if options.full_state_dict and options.cpu_offload and _rank() != 0 else \
        state_dict


# ---- models ------------------------------------------------------------------------------
def get_model_state_dict(model, *, submodules=None, options=None):
    options = _options(options)
    module = _unwrapped(model)
    state = _module_state_dict(module)
    if options.ignore_frozen_params:
        frozen = {_clean(name) for name, p in module.named_parameters(remove_duplicate=False)
                  if not p.requires_grad}
        state = {k: v for k, v in state.items() if k not in frozen}
    if submodules is not None:
        state = _select(module, state, submodules, options.keep_submodule_prefixes)
    state = {k: _whole(v, options) for k, v in state.items()}
    return _rank0_only(options, state)


def _select(module, state, submodules, keep_prefixes):
    wanted = set(submodules)
    prefixes = [_clean(name + ".") for name, m in module.named_modules() if m in wanted]
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                out[key if keep_prefixes else key[len(prefix):]] = value
    return out


def set_model_state_dict(model, model_state_dict, *, options=None):
    """Load `model_state_dict` (sharded, or whole: each rank keeps its part of a sharded
    parameter), into a model built on the meta device too; returns the missing and
    unexpected keys."""
    options = _options(options)
    if options.broadcast_from_rank0:
        model_state_dict = _broadcast(model_state_dict)
    module = _unwrapped(model)
    # a model still on the meta device takes the tensors themselves (as PyTorch's does):
    # copying into a meta parameter would keep nothing
    assign = any(p.is_meta for p in module.parameters())
    return module.load_state_dict(model_state_dict, strict=options.strict, assign=assign)


def _broadcast(state_dict):
    """Rank 0's state dict on every rank: its layout as msgpack data (never pickled), then
    each tensor by a broadcast. Other ranks' own `state_dict` is not read."""
    from ..collectives import broadcast
    from ..world import resolve
    root = _rank() == 0
    tensors = []

    def describe(v):
        if isinstance(v, Tensor):       # a copy: the broadcast may write into it, and a
            tensors.append(Tensor._make(v._data.copy()))   # loaded file may be read-only
            return {_TENSOR: [list(v.shape), str(v._data.dtype)]}
        return [describe(x) for x in v] if isinstance(v, tuple) else v
    layout = resolve(None).broadcast_plain(_map_values(state_dict, describe) if root else None)
    mine = iter(tensors)
    received = []

    def rebuild(v):
        if isinstance(v, dict) and set(v) == {_TENSOR}:
            shape, dtype = v[_TENSOR]
            t = next(mine) if root else Tensor._make(np.empty(shape, np.dtype(dtype)))
            received.append(t)
            return t
        return v

    def walk(v):
        if isinstance(v, dict) and set(v) != {_TENSOR}:
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return rebuild(v)
    out = walk(layout)
    for t in received:
        broadcast(t, src=0)
    return out


_TENSOR = "__phalanx_tensor__"


# ---- optimizers --------------------------------------------------------------------------
def _optimizer_list(optimizers):
    return list(optimizers) if isinstance(optimizers, (list, tuple)) else [optimizers]


def get_optimizer_state_dict(model, optimizers, *, submodules=None, options=None):
    options = _options(options)
    if submodules is not None:
        raise NotImplementedError("get_optimizer_state_dict(submodules=...) is not supported")
    names = _fqns(model)
    state, groups = {}, []
    for opt in _optimizer_list(optimizers):
        _init_optim_state(opt)      # so that a fresh optimizer's dict has tensors to load into
        params = [p for g in opt.param_groups for p in g["params"]]
        sd = opt.state_dict()
        for index, entry in sd["state"].items():
            state[names[id(params[index])]] = {k: _whole(v, options) for k, v in entry.items()}
        for group, saved in zip(opt.param_groups, sd["param_groups"]):
            groups.append(dict(saved, params=[names[id(p)] for p in group["params"]]))
    out = {"state": state, "param_groups": groups}
    if options.flatten_optimizer_state_dict:
        out = _flatten(out)
    return _rank0_only(options, out)


def _flatten(sd):
    flat = {}
    for fqn, entry in sd["state"].items():
        for k, v in entry.items():
            flat[f"state.{fqn}.{k}"] = v
    for group in sd["param_groups"]:
        for fqn in group["params"]:
            for k, v in group.items():
                if k != "params":
                    flat[f"param_groups.{fqn}.{k}"] = v
    return flat


def _unflatten(flat, optimizers, names):
    if "state" in flat and "param_groups" in flat:
        return flat
    state, groups = {}, []
    for opt in optimizers:
        for group in opt.param_groups:
            fqns = [names[id(p)] for p in group["params"]]
            saved = {k: flat[f"param_groups.{fqns[0]}.{k}"] for k in group if k != "params"
                     and f"param_groups.{fqns[0]}.{k}" in flat}
            groups.append(dict(saved, params=fqns))
    for key, v in flat.items():
        if key.startswith("state."):
            fqn, name = key[len("state."):].rsplit(".", 1)
            state.setdefault(fqn, {})[name] = v
    return {"state": state, "param_groups": groups}


def set_optimizer_state_dict(model, optimizers, optim_state_dict, *, options=None):
    """Load an FQN-keyed optimizer state dict (sharded, or whole: a sharded parameter's
    state keeps this rank's part)."""
    options = _options(options)
    if options.broadcast_from_rank0:
        optim_state_dict = _broadcast(optim_state_dict)
    optimizers = _optimizer_list(optimizers)
    for opt in optimizers:
        _init_optim_state(opt)
    for opt, loadable in zip(optimizers, _optimizer_state_dicts_to_load(
            model, optimizers, optim_state_dict)):
        opt.load_state_dict(loadable)


def _optimizer_state_dicts_to_load(model, optimizers, optim_state_dict):
    """An FQN-keyed optimizer state dict as each optimizer's `load_state_dict` takes it
    (indices in its parameter order); FSDP1's optim_state_dict_to_load returns it."""
    names = _fqns(model)
    optim_state_dict = _unflatten(optim_state_dict, optimizers, names)
    saved_groups = {fqn: g for g in optim_state_dict["param_groups"] for fqn in g["params"]}
    out = []
    for opt in optimizers:
        params = [p for g in opt.param_groups for p in g["params"]]
        state = {i: optim_state_dict["state"][names[id(p)]] for i, p in enumerate(params)
                 if names[id(p)] in optim_state_dict["state"]}
        groups, index = [], 0
        for group in opt.param_groups:
            fqns = [names[id(p)] for p in group["params"]]
            saved = saved_groups.get(fqns[0]) if fqns else None
            if saved is None:
                raise KeyError(f"the optimizer state dict has no param group holding "
                               f"{fqns[:1]}")
            groups.append(dict(saved, params=list(range(index, index + len(fqns)))))
            index += len(fqns)
        out.append({"state": state, "param_groups": groups})
    return out


def get_state_dict(model, optimizers, *, submodules=None, options=None):
    return (get_model_state_dict(model, submodules=submodules, options=options),
            get_optimizer_state_dict(model, optimizers, submodules=submodules,
                                     options=options))


def set_state_dict(model, optimizers, *, model_state_dict, optim_state_dict, options=None):
    keys = set_model_state_dict(model, model_state_dict, options=options)
    set_optimizer_state_dict(model, optimizers, optim_state_dict, options=options)
    return keys


def _init_optim_state(optim):
    """Make the optimizer's state exist (one step at learning rate 0 on zero gradients), so
    that its state dict can be filled in before loading: PyTorch's private helper that
    checkpointing code calls. Nothing happens if it has state or any gradient."""
    if optim.state or any(p.grad is not None for g in optim.param_groups
                          for p in g["params"]):
        return           # initialised, or gradients to keep (a stateless optimizer: SGD)
    from ...tensor import zeros_like
    for group in optim.param_groups:
        for p in group["params"]:
            if p.requires_grad:
                p.grad = p._like(p._data * 0) if hasattr(p, "_like") else zeros_like(p)
    lrs = [group["lr"] for group in optim.param_groups]
    for group in optim.param_groups:
        group["lr"] = 0.0
    try:
        optim.step()
    finally:                       # a step that raises (LBFGS wants a closure) undoes this
        for group, lr in zip(optim.param_groups, lrs):
            group["lr"] = lr
        optim.zero_grad(set_to_none=True)
