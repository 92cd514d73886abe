"""`torch.distributed.fsdp.FullyShardedDataParallel` (PyTorch's FSDP1 wrapper) built on
`fully_shard` (FSDP2): each wrapper is one `fully_shard` group of the parameters below it that
no nested wrapper holds, so forward, backward and the optimizer step are FSDP2's.

    model = FSDP(model, auto_wrap_policy=functools.partial(size_based_auto_wrap_policy,
                                                           min_num_params=10_000))
    opt = px.optim.Adam(model.parameters())         # sharded DTensors
    with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT,
                              FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
        states = model.state_dict()                 # whole tensors, original names

What the wrapper adds to fully_shard: the constructor's arguments (sharding strategies as
meshes and resharding choices, auto wrapping, meta-device initialisation, syncing rank 0's
states, buffer mixed precision, input casting by the root), the `_fsdp_wrapped_module.`
names and their removal from state dicts, the state-dict types and the static helpers
(summon_full_params, optim_state_dict, clip_grad_norm_, no_sync, ...).
"""
import contextlib
import copy
from enum import Enum, auto

from ...autograd.grad_mode import is_grad_enabled
from ...nn.modules.module import Module
from ...tensor import Tensor
from ...tensor.backend import Device
from ...tensor.meta import is_meta
from ...tensor.tensor import as_device
from ..tensor.dtensor import DTensor
from .api import (BackwardPrefetch, CPUOffload, FullOptimStateDictConfig,
                  FullStateDictConfig, LocalOptimStateDictConfig, LocalStateDictConfig,
                  MixedPrecision, OptimStateDictConfig, ShardedOptimStateDictConfig,
                  ShardedStateDictConfig, ShardingStrategy, StateDictConfig, StateDictSettings,
                  StateDictType)
from .fully_shard import (CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, OffloadPolicy,
                          _cast_floating, _states_below, fully_shard, number_units)
from .param_group import all_gather_params

__all__ = ["FullyShardedDataParallel", "OptimStateKeyType", "ShardingStrategy",
           "BackwardPrefetch", "CPUOffload", "MixedPrecision", "StateDictType",
           "StateDictConfig", "FullStateDictConfig", "LocalStateDictConfig",
           "ShardedStateDictConfig", "OptimStateDictConfig", "FullOptimStateDictConfig",
           "LocalOptimStateDictConfig", "ShardedOptimStateDictConfig", "StateDictSettings"]

FSDP_WRAPPED_MODULE = "_fsdp_wrapped_module"
FSDP_PREFIX = FSDP_WRAPPED_MODULE + "."
_HYBRID = (ShardingStrategy.HYBRID_SHARD, ShardingStrategy._HYBRID_SHARD_ZERO2)
# whether the whole parameters stay from forward to backward (None: fully_shard's default,
# resharded except at the root, which backward needs first)
_RESHARD_AFTER_FORWARD = {
    ShardingStrategy.FULL_SHARD: None, ShardingStrategy.HYBRID_SHARD: None,
    ShardingStrategy.SHARD_GRAD_OP: False, ShardingStrategy._HYBRID_SHARD_ZERO2: False,
    ShardingStrategy.NO_SHARD: False}
_CONFIGS = {StateDictType.FULL_STATE_DICT: (FullStateDictConfig, FullOptimStateDictConfig),
            StateDictType.SHARDED_STATE_DICT: (ShardedStateDictConfig,
                                               ShardedOptimStateDictConfig),
            StateDictType.LOCAL_STATE_DICT: (LocalStateDictConfig, LocalOptimStateDictConfig)}


class OptimStateKeyType(Enum):
    """How an optimizer state dict's entries are keyed: by parameter name or by index."""
    PARAM_NAME = auto()
    PARAM_ID = auto()


class FullyShardedDataParallel(Module):
    """PyTorch's FSDP1 wrapper: `module` (reachable as `.module`) with its parameters sharded
    over the ranks; `forward` runs the wrapped module's.

    Parameters are exposed as sharded DTensors (each rank's chunk along dim 0, as FSDP2's and
    as FSDP1's with `use_orig_params=True`), never as FlatParameters: `use_orig_params=False`
    only chooses PyTorch's memory layout (flat parameters), and an optimizer over either
    computes the same for the elementwise optimizers (SGD, Adam, ...), so both values give
    the original parameters here. `named_parameters()` shows the wrappers'
    `_fsdp_wrapped_module.` in the names, as PyTorch's does; state dicts use the original
    names. SHARDED_STATE_DICT's values are DTensors (PyTorch's are ShardedTensors unless
    `_use_dtensor`); LOCAL_STATE_DICT (flat-parameter shards) is refused.

    sharding_strategy: FULL_SHARD (default), SHARD_GRAD_OP (whole parameters kept from
    forward to backward), NO_SHARD (replicated, gradients all-reduced: FSDP over a mesh of
    one rank per shard group), HYBRID_SHARD / _HYBRID_SHARD_ZERO2 (a 2-D `device_mesh`
    (replicate, shard), or by default one shard group per node). backward_prefetch,
    forward_prefetch and limit_all_gathers only schedule the same collectives.

    A weight tied between modules that auto wrapping puts in different units (an embedding
    and its head) belongs to the lowest unit holding every place it is used, so it stays
    one tensor (PyTorch's FSDP1 breaks past one rank there). Once a unit's backward ran,
    its parameters that got no gradient on a rank count as zeros there, as FSDP1's flat
    parameter's (control flow that differs between ranks)."""

    def __init__(self, module, process_group=None, sharding_strategy=None, cpu_offload=None,
                 auto_wrap_policy=None, backward_prefetch=BackwardPrefetch.BACKWARD_PRE,
                 mixed_precision=None, ignored_modules=None, param_init_fn=None,
                 device_id=None, sync_module_states=False, forward_prefetch=False,
                 limit_all_gathers=True, use_orig_params=False, ignored_states=None,
                 device_mesh=None, _tied=None):
        super().__init__()
        strategy = sharding_strategy or ShardingStrategy.FULL_SHARD
        if not isinstance(strategy, ShardingStrategy):
            raise TypeError(f"FSDP: sharding_strategy must be a ShardingStrategy, got "
                            f"{sharding_strategy!r}")
        _check_placement(strategy, process_group, device_mesh)
        policy = _mp_policy(mixed_precision)
        offload = _offload_policy(cpu_offload)
        ignored_modules, ignored_params = _ignored(module, ignored_modules, ignored_states)
        if auto_wrap_policy is not None:
            from .wrap import _auto_wrap
            _tied = _tied_params(module, ignored_params)
            _auto_wrap(module, auto_wrap_policy, ignored_modules, ignored_params, dict(
                process_group=process_group, sharding_strategy=sharding_strategy,
                cpu_offload=cpu_offload, backward_prefetch=backward_prefetch,
                mixed_precision=mixed_precision, param_init_fn=param_init_fn,
                device_id=device_id, sync_module_states=sync_module_states,
                forward_prefetch=forward_prefetch, limit_all_gathers=limit_all_gathers,
                use_orig_params=use_orig_params, ignored_states=list(ignored_params) or None,
                device_mesh=device_mesh, _tied=_tied), FullyShardedDataParallel)
        own = _own_modules(module, ignored_modules)
        _materialize(own, ignored_params, param_init_fn, device_id)
        device_type = next((p.device.type for m in own for p in m.parameters(recurse=False)
                            if p not in ignored_params), "cpu")
        mesh = _mesh(strategy, process_group, device_mesh, device_type)
        if sync_module_states:
            _sync_module_states(module, own, ignored_params, mesh)
        self._buffer_dtypes = _cast_buffers(module, ignored_modules, mixed_precision)
        if not isinstance(module, FullyShardedDataParallel):   # FSDP(FSDP(m)): m's unit
            left = _tied_outside(module, _tied or {})
            fully_shard(module, mesh=mesh, reshard_after_forward=_RESHARD_AFTER_FORWARD[
                strategy], mp_policy=policy, offload_policy=offload,
                ignored_params=list(ignored_params) + left)
            module._fsdp_state.left_to_parent = frozenset(map(id, left))
            # FSDP1's flat parameter has a gradient for every parameter once the unit's
            # backward ran: zeros for those unused (on this rank, or on every rank)
            module.set_reduce_scatter_unused_params(True, recurse=False)
        self._fsdp_wrapped_module = module
        self.sharding_strategy = strategy
        self.mixed_precision = mixed_precision or MixedPrecision()
        self.cpu_offload = cpu_offload or CPUOffload()
        shard_dim = 1 if mesh.ndim == 2 and strategy in _HYBRID else 0
        self.process_group = mesh.get_group(shard_dim)
        self.rank, self.world_size = mesh.get_local_rank(shard_dim), mesh.size(shard_dim)
        self._ignored_params = ignored_params
        self._is_root = None                # known at the first forward, as PyTorch's
        self._summoned = False              # inside summon_full_params
        self._state_dict_type = StateDictType.FULL_STATE_DICT
        self._state_dict_config = FullStateDictConfig()
        self._optim_state_dict_config = FullOptimStateDictConfig()
        self._renamed = None
        self.register_state_dict_post_hook(FullyShardedDataParallel._post_state_dict)
        self.register_load_state_dict_pre_hook(FullyShardedDataParallel._pre_load)
        self.register_load_state_dict_post_hook(FullyShardedDataParallel._post_load)

    # ---- the wrapped module ------------------------------------------------------------
    @property
    def module(self):
        return self._fsdp_wrapped_module

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == FSDP_WRAPPED_MODULE:
                raise
            return getattr(self._fsdp_wrapped_module, name)

    def __getitem__(self, key):
        return self._fsdp_wrapped_module.__getitem__(key)

    def forward(self, *args, **kwargs):
        self._lazy_init()
        mp = self.mixed_precision
        if mp.param_dtype is not None and (mp.cast_forward_inputs or
                                           (self._is_root and mp.cast_root_forward_inputs)):
            args, kwargs = _cast_floating((args, kwargs), mp.param_dtype)
        output = self._fsdp_wrapped_module(*args, **kwargs)
        if self._is_root and not is_grad_enabled():
            # no backward will reshard the groups that keep their whole parameters after
            # forward (the root's, SHARD_GRAD_OP's): reshard now, so that parameters() are
            # the shards again, as FSDP1's parameters stay the same objects
            for state in _states_below(self):
                state.reshard()
        return output

    def _lazy_init(self):
        """The first wrapper run (or asked) is the root; those inside it are not."""
        if self._is_root is not None:
            return
        self._is_root = True
        for m in self.modules():
            if m is not self and isinstance(m, FullyShardedDataParallel):
                m._is_root = False
        mine = self._unit()
        for state in _states_below(self):
            state.is_root = state is mine
        number_units(self)

    def _unit(self):
        """The fully_shard state of this wrapper's group."""
        inner = self._fsdp_wrapped_module
        if isinstance(inner, FullyShardedDataParallel):
            return inner._unit()
        return inner._fsdp_state

    def check_is_root(self):
        self._lazy_init()
        return self._is_root

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """As Module's; inside summon_full_params without the `_fsdp_wrapped_module.`s."""
        clean = self._summoned
        for name, p in super().named_parameters(prefix, recurse, remove_duplicate):
            yield (name.replace(FSDP_PREFIX, "") if clean else name), p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        clean = self._summoned
        for name, b in super().named_buffers(prefix, recurse, remove_duplicate):
            yield (name.replace(FSDP_PREFIX, "") if clean else name), b

    def apply(self, fn):
        """`fn` on every submodule with this unit's whole parameters in place (changes are
        written back to the shards), e.g. a custom weight initialisation."""
        with FullyShardedDataParallel.summon_full_params(self, recurse=False):
            return super().apply(fn)

    # ---- training helpers --------------------------------------------------------------
    def clip_grad_norm_(self, max_norm, norm_type=2.0):
        """Scale every gradient so that their norm over all ranks is at most `max_norm`;
        returns that total norm (before clipping)."""
        from ...nn.utils.clip_grad import clip_grad_norm_
        self._lazy_init()
        if not self._is_root:
            raise RuntimeError("`clip_grad_norm_()` should only be called on the root FSDP "
                               "instance")
        return clip_grad_norm_(self.parameters(), max_norm, norm_type)

    @contextlib.contextmanager
    def no_sync(self):
        """Backwards inside accumulate whole gradients without reducing them; the first
        backward after it reduces their sum (gradient accumulation)."""
        self._lazy_init()
        if not self._is_root:
            raise RuntimeError("`no_sync()` on inner FSDP instances is not supported. Please "
                               "call `no_sync()` on root FSDP module.")
        states = _states_below(self)
        before = [s.requires_gradient_sync for s in states]
        for s in states:
            s.requires_gradient_sync = False
        try:
            yield
        finally:
            for s, sync in zip(states, before):
                s.requires_gradient_sync = sync

    def register_comm_hook(self, state, hook):
        raise NotImplementedError("FSDP.register_comm_hook is not supported: gradients are "
                                  "reduce-scattered (or all-reduced for NO_SHARD) by FSDP "
                                  "itself; remove the hook")

    @staticmethod
    def fsdp_modules(module, root_only=False):
        """The FSDP wrappers in `module` (itself included); with `root_only`, those inside
        no other."""
        found = [m for m in module.modules() if isinstance(m, FullyShardedDataParallel)]
        if root_only:
            inner = {id(n) for m in found for n in m.modules()
                     if n is not m and isinstance(n, FullyShardedDataParallel)}
            found = [m for m in found if id(m) not in inner]
        return found

    @staticmethod
    @contextlib.contextmanager
    def summon_full_params(module, recurse=True, writeback=True, rank0_only=False,
                           offload_to_cpu=False, with_grads=False):
        """Inside, the wrappers' parameters are whole (in their own dtype, not mixed
        precision's) and registered on the modules; with `writeback`, changes made to them
        are kept in the shards on exit. `rank0_only`: only rank 0 keeps them whole (the
        others get their shards back at once); `with_grads`: their `.grad`s are whole too."""
        if writeback and rank0_only:
            raise NotImplementedError("writeback=True and rank0_only=True is not supported "
                                      "yet")
        if with_grads and offload_to_cpu:
            raise NotImplementedError("summon_full_params(with_grads=True, offload_to_cpu="
                                      "True) is not supported; pass offload_to_cpu=False")
        wrappers = FullyShardedDataParallel.fsdp_modules(module) if recurse else \
            [module] if isinstance(module, FullyShardedDataParallel) else []
        wrappers = [w for w in wrappers if not w._summoned
                    and not isinstance(w._fsdp_wrapped_module, FullyShardedDataParallel)]
        if offload_to_cpu and any(p.device.type != "cpu" for w in wrappers
                                  for p in w.parameters()):
            raise NotImplementedError("summon_full_params(offload_to_cpu=True) with "
                                      "parameters on a GPU is not supported; pass False")
        from ..world import get_rank
        keep = not rank0_only or get_rank() == 0
        saved = []          # per wrapper: its parameters' (whole gradient, accumulated)
        try:
            for w in wrappers:
                state = w._unit()
                # gradients accumulated under no_sync (whole, not reduced yet) stay aside
                # and come back on exit: the next synced backward reduces them with its own
                saved.append([(p.unsharded.grad, p.accumulated) for p in state.params])
                for p in state.params:
                    p.unsharded._grad = p.accumulated = None
                w._summoned = True
                _unshard_in_own_dtype(state)
                # every rank gathers (a collective), even those that drop them (rank0_only)
                grads = [_whole_grad(p, *held) for p, held in zip(state.params, saved[-1])] \
                    if with_grads else []
                if not keep:
                    state.reshard()
                for p, g in zip(state.params, grads if keep else []):
                    p.unsharded.grad = g
            yield
        finally:
            for w, held in reversed(list(zip(wrappers, saved))):
                state = w._unit()
                for p, (grad, accumulated) in zip(state.params, held):
                    if writeback and keep and not is_meta(p.unsharded._data):
                        p.sharded._write_whole(p.unsharded._data)
                        p.sharded._version[0] += 1      # the next forward gathers again
                    # unchecked: the param is in its own dtype now, the gradient may be in
                    # mixed precision's (the next forward gathers in that dtype again)
                    p.unsharded._grad, p.accumulated = grad, accumulated
                state.reshard()
                w._summoned = False

    # ---- state dicts -------------------------------------------------------------------
    @staticmethod
    def set_state_dict_type(module, state_dict_type, state_dict_config=None,
                            optim_state_dict_config=None):
        """Make every wrapper in `module` give and take state dicts of `state_dict_type`;
        returns the settings it had."""
        if state_dict_type is StateDictType.LOCAL_STATE_DICT:
            raise NotImplementedError(
                "StateDictType.LOCAL_STATE_DICT holds the shards of PyTorch's flat "
                "parameters, which Phalanx does not have: use SHARDED_STATE_DICT (each "
                "rank's shards as DTensors) or FULL_STATE_DICT")
        config_cls, optim_cls = _CONFIGS[state_dict_type]
        state_dict_config = config_cls() if state_dict_config is None else state_dict_config
        optim_state_dict_config = optim_cls() if optim_state_dict_config is None else \
            optim_state_dict_config
        for given, cls in ((state_dict_config, config_cls),
                           (optim_state_dict_config, optim_cls)):
            if type(given) is not cls:
                raise RuntimeError(f"Expected state_dict_config of type {cls} but got "
                                   f"{type(given)} (for {state_dict_type})")
        previous = FullyShardedDataParallel.get_state_dict_type(module)
        for w in FullyShardedDataParallel.fsdp_modules(module):
            w._state_dict_type, w._state_dict_config = state_dict_type, state_dict_config
            w._optim_state_dict_config = optim_state_dict_config
        return previous

    @staticmethod
    def get_state_dict_type(module):
        wrappers = FullyShardedDataParallel.fsdp_modules(module)
        if not wrappers:
            raise ValueError(f"no FullyShardedDataParallel module in "
                             f"{type(module).__name__}: wrap it with FSDP first")
        settings = [StateDictSettings(w._state_dict_type, w._state_dict_config,
                                      w._optim_state_dict_config) for w in wrappers]
        other = next((s for s in settings if s != settings[0]), None)
        if other is not None:
            raise AssertionError(f"All FSDP modules must have the same state dict settings; "
                                 f"got {settings[0]} and {other}")
        return settings[0]

    @staticmethod
    @contextlib.contextmanager
    def state_dict_type(module, state_dict_type, state_dict_config=None,
                        optim_state_dict_config=None):
        previous = FullyShardedDataParallel.set_state_dict_type(
            module, state_dict_type, state_dict_config, optim_state_dict_config)
        try:
            yield
        finally:
            FullyShardedDataParallel.set_state_dict_type(
                module, previous.state_dict_type, previous.state_dict_config,
                previous.optim_state_dict_config)

    def _post_state_dict(self, state_dict, prefix, local_metadata):
        """Original names; whole tensors for FULL_STATE_DICT (`{}`-like on ranks other than
        0 with rank0_only), buffers in their own dtype, on the CPU if asked."""
        _rename(state_dict, prefix + FSDP_PREFIX, prefix)
        config = self._state_dict_config
        full = self._state_dict_type is StateDictType.FULL_STATE_DICT
        mine = [k for k in state_dict if k.startswith(prefix)]
        for k in mine:
            v = state_dict[k]
            if full and isinstance(v, DTensor):
                v = v.full_tensor().detach()     # collective: every rank gathers
            dtype = self._buffer_dtypes.get(k[len(prefix):])
            if dtype is not None and isinstance(v, Tensor) and v.dtype != dtype:
                v = v.to(dtype)
            if config.offload_to_cpu and isinstance(v, Tensor) and v.device.type != "cpu":
                v = v.cpu()
            state_dict[k] = v
        if full and config.rank0_only and self.rank != 0:
            ignored = self._ignored_names(prefix)
            for k in mine:
                if k not in ignored:
                    del state_dict[k]

    def _ignored_names(self, prefix):
        return {prefix + name.replace(FSDP_PREFIX, "") for name, p in
                self._fsdp_wrapped_module.named_parameters(remove_duplicate=False)
                if p in self._ignored_params}

    def _pre_load(self, state_dict, prefix, *_):
        """The wrapped module's entries go under `_fsdp_wrapped_module.` for the load; the
        caller's dict gets its names back afterwards (_post_load)."""
        self._renamed = (state_dict, prefix)
        _rename(state_dict, prefix, prefix + FSDP_PREFIX,
                skip=lambda k: k.startswith(prefix + FSDP_PREFIX))

    def _post_load(self, incompatible_keys):
        state_dict, prefix = self._renamed
        self._renamed = None
        _rename(state_dict, prefix + FSDP_PREFIX, prefix)
        for keys in incompatible_keys:
            keys[:] = [k.replace(FSDP_PREFIX, "") for k in keys]

    # ---- optimizer state dicts (keyed by the parameters' original names) -----------------
    @staticmethod
    def optim_state_dict(model, optim, optim_state_dict=None, group=None):
        """`optim`'s state keyed by parameter names, as `model`'s state dict type says:
        whole tensors (FULL_STATE_DICT) or each rank's shards (SHARDED_STATE_DICT)."""
        from ..checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
        if optim_state_dict is not None:
            raise NotImplementedError("FSDP.optim_state_dict(optim_state_dict=...) is not "
                                      "supported: the optimizer's own state is read; pass "
                                      "None")
        _check_group(model, group)
        settings = FullyShardedDataParallel.get_state_dict_type(model)
        full = settings.state_dict_type is StateDictType.FULL_STATE_DICT
        config = settings.optim_state_dict_config
        sd = get_optimizer_state_dict(model, optim,
                                      options=StateDictOptions(full_state_dict=full))
        return _finish(sd, config.offload_to_cpu, full and config.rank0_only)

    @staticmethod
    def optim_state_dict_to_load(model, optim, optim_state_dict, is_named_optimizer=False,
                                 load_directly=False, group=None):
        """A name-keyed optimizer state dict (from optim_state_dict) as `optim.load_state_dict`
        takes it (loaded at once with `load_directly`). With FULL_STATE_DICT and
        rank0_only only rank 0's dict is read (it is broadcast)."""
        from ..checkpoint.state_dict import _broadcast, _optimizer_state_dicts_to_load
        if is_named_optimizer:
            raise NotImplementedError("FSDP.optim_state_dict_to_load(is_named_optimizer=True)"
                                      " (torchrec's KeyedOptimizer) is not supported")
        _check_group(model, group)
        settings = FullyShardedDataParallel.get_state_dict_type(model)
        if settings.state_dict_type is StateDictType.FULL_STATE_DICT and \
                settings.optim_state_dict_config.rank0_only:
            optim_state_dict = _broadcast(optim_state_dict)
        loadable = _optimizer_state_dicts_to_load(model, [optim], optim_state_dict)[0]
        if load_directly:
            optim.load_state_dict(loadable)
        return loadable

    @staticmethod
    def full_optim_state_dict(model, optim, optim_input=None, rank0_only=True, group=None):
        """(Deprecated in PyTorch.) The whole optimizer state keyed by parameter names, on
        the CPU; with `rank0_only` the other ranks get `{}`."""
        from ..checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
        if optim_input is not None:
            raise NotImplementedError("FSDP.full_optim_state_dict(optim_input=...) (deprecated "
                                      "in PyTorch) is not supported: pass the optimizer only")
        _check_group(model, group)
        sd = get_optimizer_state_dict(model, optim,
                                      options=StateDictOptions(full_state_dict=True))
        return _finish(sd, True, rank0_only)

    @staticmethod
    def shard_full_optim_state_dict(full_optim_state_dict, model, optim_input=None,
                                    optim=None):
        """(Deprecated in PyTorch.) A full_optim_state_dict's result, which every rank holds,
        as `optim.load_state_dict` takes it."""
        from ..checkpoint.state_dict import _optimizer_state_dicts_to_load
        _need_optim(optim_input, optim, "shard_full_optim_state_dict")
        return _optimizer_state_dicts_to_load(model, [optim], full_optim_state_dict)[0]

    @staticmethod
    def scatter_full_optim_state_dict(full_optim_state_dict, model, optim_input=None,
                                      optim=None, group=None):
        """(Deprecated in PyTorch.) As shard_full_optim_state_dict, with only rank 0's dict
        read (the others may pass None)."""
        from ..checkpoint.state_dict import _broadcast, _optimizer_state_dicts_to_load
        _need_optim(optim_input, optim, "scatter_full_optim_state_dict")
        _check_group(model, group)
        return _optimizer_state_dicts_to_load(model, [optim],
                                              _broadcast(full_optim_state_dict))[0]

    @staticmethod
    def sharded_optim_state_dict(model, optim, group=None):
        """(Deprecated in PyTorch: optim_state_dict under SHARDED_STATE_DICT.) The optimizer
        state keyed by parameter names, each rank's shards as DTensors (PyTorch's are
        ShardedTensors); flatten_sharded_optim_state_dict makes it loadable again."""
        from ..checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
        _check_group(model, group)
        return get_optimizer_state_dict(model, optim,
                                        options=StateDictOptions(full_state_dict=False))

    @staticmethod
    def flatten_sharded_optim_state_dict(sharded_optim_state_dict, model, optim):
        """(Deprecated in PyTorch: optim_state_dict_to_load.) A sharded_optim_state_dict's
        result as `optim.load_state_dict` takes it."""
        from ..checkpoint.state_dict import _optimizer_state_dicts_to_load
        return _optimizer_state_dicts_to_load(model, [optim], sharded_optim_state_dict)[0]

    @staticmethod
    def rekey_optim_state_dict(optim_state_dict, optim_state_key_type, model,
                               optim_input=None, optim=None):
        """`optim_state_dict` keyed by parameter names (OptimStateKeyType.PARAM_NAME, as FSDP's
        optimizer state dicts are) or by the optimizer's parameter indices (PARAM_ID, as a
        plain optimizer's `state_dict()`): between a wrapped model's and an unwrapped one's.
        The indices are `optim`'s parameter order, or `model.parameters()`' without it."""
        from ..checkpoint.state_dict import _fqns
        if optim_input is not None:
            raise NotImplementedError("FSDP.rekey_optim_state_dict(optim_input=...) (deprecated "
                                      "in PyTorch) is not supported: pass optim=")
        if optim_state_key_type not in (OptimStateKeyType.PARAM_NAME,
                                        OptimStateKeyType.PARAM_ID):
            raise AssertionError(f"Expected optim_state_key_type to be PARAM_NAME or "
                                 f"PARAM_ID, got {optim_state_key_type}")
        keys = list(optim_state_dict["state"]) + [
            k for g in optim_state_dict["param_groups"] for k in g["params"]]
        named = [type(k) is str for k in keys]
        numbered = [type(k) is int for k in keys]
        if any(named) and not all(named) or any(numbered) and not all(numbered):
            raise ValueError(f"Invalid parameter keys: {optim_state_dict['state'].keys()}")
        to_names = optim_state_key_type is OptimStateKeyType.PARAM_NAME
        if all(named if to_names else numbered):
            return optim_state_dict
        params = [p for g in optim.param_groups for p in g["params"]] if optim is not None \
            else list(model.parameters())
        names = _fqns(model)
        index_to_name = [names[id(p)] for p in params]
        new_key = (lambda i: index_to_name[i]) if to_names else \
            {name: i for i, name in enumerate(index_to_name)}.__getitem__
        groups = copy.deepcopy(optim_state_dict["param_groups"])
        for group in groups:
            group["params"] = sorted(new_key(k) for k in group["params"])
        return {"state": {new_key(k): v for k, v in optim_state_dict["state"].items()},
                "param_groups": groups}


# ---- construction helpers ----------------------------------------------------------------
def _check_placement(strategy, process_group, device_mesh):
    """PyTorch's rules for process_group / device_mesh, before any child is wrapped."""
    if process_group is not None and device_mesh is not None:
        raise ValueError("Cannot pass both process_group and device_mesh at the same time. "
                         "Please just pass only one of them.")
    if strategy in _HYBRID:
        if isinstance(process_group, tuple):
            raise NotImplementedError(
                f"FSDP({strategy}) with a (shard, replicate) process_group tuple is not "
                f"supported; pass device_mesh=init_device_mesh(device, (replicas, "
                f"shard_size)) instead")
        if process_group is not None:
            raise ValueError(f"Expected process_group to be passed in as either None or "
                             f"Tuple[dist.ProcessGroup, dist.ProcessGroup] for {strategy} but "
                             f"got {type(process_group)}")
        if device_mesh is not None and device_mesh.ndim != 2:
            raise ValueError(f"FSDP({strategy}) needs a 2-D device_mesh (replicate, shard); "
                             f"got one of {device_mesh.ndim} dims")
    else:
        if isinstance(process_group, tuple):
            raise ValueError(f"FSDP({strategy}): a process_group tuple is only for "
                             f"HYBRID_SHARD; pass one group")
        if device_mesh is not None and device_mesh.ndim != 1:
            raise ValueError(f"FSDP({strategy}) needs a 1-D device_mesh; got one of "
                             f"{device_mesh.ndim} dims (a 2-D mesh is for HYBRID_SHARD)")


_hybrid_meshes = {}        # (world group, device type) -> its (nodes, ranks per node) mesh


def _mesh(strategy, process_group, device_mesh, device_type):
    """The fully_shard mesh of a strategy: 1-D (FULL_SHARD, SHARD_GRAD_OP), 2-D (replicate,
    shard) for the hybrid ones and for NO_SHARD (shard groups of one rank)."""
    from ..device_mesh import DeviceMesh, _world_mesh, init_device_mesh
    from ..local_backend import LocalProcessGroup
    from ..world import _world, get_local_world_size, get_rank, get_world_size, \
        init_process_group, is_initialized
    if not is_initialized():
        init_process_group()
    if strategy in _HYBRID:
        if device_mesh is not None:
            return device_mesh
        world, per_node = get_world_size(), get_local_world_size()
        if world % per_node:
            raise ValueError(f"FSDP({strategy}): {world} ranks do not make whole nodes of "
                             f"{per_node}; pass a 2-D device_mesh")
        key = (id(_world()), device_type)
        if key not in _hybrid_meshes or _hybrid_meshes[key][0] is not _world():
            _hybrid_meshes[key] = (_world(), init_device_mesh(device_type,
                                                              (world // per_node, per_node)))
        return _hybrid_meshes[key][1]
    if device_mesh is not None:
        mesh = device_mesh
    elif process_group is not None:
        mesh = DeviceMesh.from_group(process_group, device_type)
    else:
        mesh = _world_mesh(device_type)
    if strategy is ShardingStrategy.NO_SHARD:     # no collective: a group of this rank alone
        mesh = DeviceMesh.from_group([mesh.get_group(), LocalProcessGroup(get_rank())],
                                     device_type, mesh=mesh._ranks.reshape(-1, 1))
    return mesh


def _mp_policy(mixed):
    if mixed is None:
        return MixedPrecisionPolicy(cast_forward_inputs=False)
    if not isinstance(mixed, MixedPrecision):
        raise TypeError(f"FSDP: mixed_precision must be a MixedPrecision, got {mixed!r}")
    if mixed.keep_low_precision_grads:
        raise NotImplementedError("MixedPrecision(keep_low_precision_grads=True) is not "
                                  "supported: gradients come back in the parameters' dtype; "
                                  "pass False")
    # the wrapper casts the inputs itself (the root, or every unit: FSDP1's two flags)
    return MixedPrecisionPolicy(param_dtype=mixed.param_dtype,
                                reduce_dtype=mixed.reduce_dtype, cast_forward_inputs=False)


def _offload_policy(cpu_offload):
    if cpu_offload is None:
        return OffloadPolicy()
    if not isinstance(cpu_offload, CPUOffload):
        raise TypeError(f"FSDP: cpu_offload must be a CPUOffload, got {cpu_offload!r}")
    return CPUOffloadPolicy() if cpu_offload.offload_params else OffloadPolicy()


def _ignored(module, ignored_modules, ignored_states):
    """(every module ignored, every parameter ignored) from the two arguments."""
    if ignored_modules is not None and ignored_states is not None:
        raise ValueError("Cannot pass both ignored_modules and ignored_states at the same "
                         "time. Please just pass ignored_states.")
    states = list(ignored_states if ignored_states is not None else ignored_modules or ())
    params = [s for s in states if isinstance(s, Tensor)]
    modules = [s for s in states if isinstance(s, Module)]
    if len(params) + len(modules) != len(states) or (params and ignored_states is None) or \
            (params and modules):
        what = "ignored_states expects all nn.Parameter or all nn.Module" if \
            ignored_states is not None else "ignored_modules expects nn.Module"
        raise ValueError(f"{what} list elements but got types "
                         f"{sorted({type(s).__name__ for s in states})}")
    for m in modules:
        if isinstance(m, FullyShardedDataParallel):
            raise ValueError("`ignored_modules` should not include FSDP modules")
    expanded = {c for m in modules for c in m.modules()
                if not isinstance(c, FullyShardedDataParallel)}
    return expanded, set(params) | {p for m in expanded for p in m.parameters(recurse=False)}


def _tied_params(root, ignored_params):
    """{id(parameter): ids of the modules holding it} for the parameters under `root` that
    more than one module holds (tied weights), before auto wrapping splits them into units."""
    holders = {}
    for m in root.modules():
        for p in m._parameters.values():
            if p is not None and p not in ignored_params:
                holders.setdefault(id(p), set()).add(id(m))
    return {i: held for i, held in holders.items() if len(held) > 1}


def _tied_outside(module, tied):
    """The tied parameters under `module` that a module outside it holds too: its unit
    leaves them to the enclosing unit holding every place (PyTorch's lowest common ancestor
    rule for shared parameters), so that one group trains one tensor."""
    inside = {id(m) for m in module.modules()}
    left = {}
    for m in module.modules():
        for p in m._parameters.values():
            if p is not None and id(p) in tied and not tied[id(p)] <= inside:
                left[id(p)] = p
    return list(left.values())


def _own_modules(module, ignored_modules):
    """The modules this unit manages: below `module`, not inside a nested wrapper (or a
    fully_shard-ed module) nor ignored, in breadth-first order (PyTorch's)."""
    out, queue, seen = [], [module], {module}
    while queue:
        m = queue.pop(0)
        out.append(m)
        for child in m.children():
            if child not in seen and child not in ignored_modules and not isinstance(
                    child, (FullyShardedDataParallel, FSDPModule)):
                seen.add(child)
                queue.append(child)
    return [] if isinstance(module, FullyShardedDataParallel) else out


def _materialize(own, ignored_params, param_init_fn, device_id):
    """Modules with meta parameters or buffers are made real first (PyTorch's order): by
    `param_init_fn(module)` on each, or by `to_empty` + `reset_parameters()`; then the unit
    moves to `device_id`."""
    device = None if device_id is None else as_device(device_id)
    states = [t for m in own for t in list(m.parameters(recurse=False)) +
              list(m.buffers(recurse=False)) if t not in ignored_params]
    if any(t.is_meta for t in states):
        if param_init_fn is not None:
            if not callable(param_init_fn):
                raise ValueError(f"Expected {param_init_fn} to be callable but got "
                                 f"{type(param_init_fn)}")
            for m in own:
                param_init_fn(m)
        else:
            target = device or _default_device()
            for m in own:
                if not list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
                    continue
                if not hasattr(m, "reset_parameters"):
                    raise ValueError(f"FSDP: {type(m).__name__} holds meta tensors but has no "
                                     f"reset_parameters() to initialise them; pass "
                                     f"param_init_fn=")
                m.to_empty(device=target, recurse=False)
                m.reset_parameters()
    if device is not None:
        for m in own:
            for p in m.parameters(recurse=False):
                if p not in ignored_params and p.device != device:
                    p._data = p.to(device)._data
                    p._version[0] += 1
            for name, b in m._buffers.items():
                if b is not None and b.device != device:
                    m._buffers[name] = b.to(device)


def _default_device():
    """Where meta modules are materialised without device_id: the GPU of an NCCL world,
    else the CPU (PyTorch's is the current accelerator)."""
    from ..world import get_backend
    if get_backend() == "nccl":
        from ... import cuda
        return Device("cuda", cuda.current_device())
    return Device("cpu")


def _sync_module_states(module, own, ignored_params, mesh):
    """Rank 0's parameters and buffers on every rank of the mesh (over the replicate dim,
    then the shard dim, as PyTorch's hybrid sync), before sharding."""
    from ..ddp import _broadcast_coalesced
    tensors = [p for m in own for p in m.parameters(recurse=False) if p not in ignored_params]
    seen = set()
    for m in module.modules():       # buffers not synced yet (nested wrappers did theirs)
        if m is not module and isinstance(m, FullyShardedDataParallel):
            seen.update(id(b) for b in m.buffers())
    tensors += [b for b in module.buffers() if id(b) not in seen]
    for p in tensors:
        if p.is_meta:
            raise ValueError("FSDP(sync_module_states=True): the module still has meta "
                             "tensors; materialise it (param_init_fn or to_empty) first")
    groups = [mesh.get_group(0), mesh.get_group(1)] if mesh.ndim == 2 else [mesh.get_group()]
    for group in groups:
        _broadcast_coalesced(group, [t._data for t in tensors], src=0)
    for t in tensors:
        t._version[0] += 1


def _cast_buffers(module, ignored_modules, mixed):
    """Cast this unit's floating buffers to mixed precision's buffer_dtype; returns
    {name in `module`: original dtype} for the state dicts."""
    if mixed is None or mixed.buffer_dtype is None:
        return {}
    original = {}

    def visit(m, prefix):
        if m in ignored_modules:
            return
        for name, b in m._buffers.items():
            if b is not None and b.is_floating_point() and b.dtype != mixed.buffer_dtype:
                original[prefix + name] = b.dtype
                m._buffers[name] = b.to(mixed.buffer_dtype)
        for name, child in m._modules.items():
            if child is not None and not isinstance(child, (FullyShardedDataParallel,
                                                            FSDPModule)):
                visit(child, prefix + name + ".")
    visit(module, "")
    return original


# ---- state-dict helpers --------------------------------------------------------------------
def _rename(state_dict, old, new, skip=lambda key: False):
    """Keys starting with `old` start with `new` instead, in place and in order."""
    if not any(k.startswith(old) and not skip(k) for k in state_dict):
        return
    items = list(state_dict.items())
    state_dict.clear()
    for k, v in items:
        state_dict[new + k[len(old):] if k.startswith(old) and not skip(k) else k] = v


def _finish(sd, offload_to_cpu, rank0_only):
    from ..checkpoint.state_dict import _map_values
    from ..world import get_rank
    if rank0_only and get_rank() != 0:
        return {}
    if offload_to_cpu:
        sd = _map_values(sd, lambda v: v.cpu() if isinstance(v, Tensor) and
                         not isinstance(v, DTensor) and v.device.type != "cpu" else v)
    return sd


def _check_group(model, group):
    """`group` must be None or the model's own group (the parameters know their meshes)."""
    if group is None:
        return
    groups = {id(w.process_group) for w in FullyShardedDataParallel.fsdp_modules(model)}
    if id(group) not in groups:
        raise ValueError("FSDP optimizer state dicts: group= must be None or the model's "
                         "process group (the one the FSDP wrappers were built with)")


def _need_optim(optim_input, optim, name):
    if optim_input is not None or optim is None:
        raise NotImplementedError(f"FSDP.{name} needs optim= (the optimizer the state dict "
                                  f"is for); the deprecated optim_input is not supported")


def _whole_grad(p, grad, accumulated):
    """The whole gradient summon_full_params(with_grads=True) shows for `p`: the reduced one
    (gathered: every rank must call), else what no_sync backwards accumulated on this rank
    (not reduced yet), in the parameter's own dtype; None if neither."""
    if p.sharded.grad is not None:
        return Tensor._make(p.sharded.grad.full_tensor()._data)
    if grad is None and accumulated is None:
        return None
    whole = accumulated if grad is None else grad._data if accumulated is None else \
        accumulated + grad._data.astype(accumulated.dtype)
    return Tensor._make(whole.astype(p.sharded._data.dtype, copy=False))


def _unshard_in_own_dtype(state):
    """All-gather a group's whole parameters in the shards' dtype (not mixed precision's
    param_dtype) and register them on the modules."""
    for p in state.params:
        p.unsharded.requires_grad = p.sharded.requires_grad
    all_gather_params(state.params, state.group, None)
    for p in state.params:
        p.register(p.unsharded)
