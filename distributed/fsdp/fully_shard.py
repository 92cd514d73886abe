"""`fully_shard` (PyTorch's FSDP2): parameters, gradients and optimizer state sharded over the
ranks (ZeRO stage 3).

    for block in model.layers:
        fully_shard(block)
    fully_shard(model)                         # the root: what is left (embeddings, head)
    opt = px.optim.AdamW(model.parameters())   # sharded parameters: DTensors

Each call makes one group of the module's parameters not already in a nested group. Before
the module's forward the group is all-gathered; after it the whole tensors are freed again
(`reshard_after_forward`; the root keeps its own, which backward needs first). Backward
gathers a group again when the gradient reaches the module's outputs (or when an op of the
module reads a freed parameter, through saved-tensor hooks) and, once the group's gradients
are all accumulated, reduce-scatters them: each rank keeps the average of its chunk, as DDP's
average would give it. So training is the same as DDP's, with each rank storing 1/N of the
parameters, gradients and optimizer state between steps.

With a 2-D mesh (replicate, shard) the parameters are sharded along its second dimension
and replicated along the first (HSDP: e.g. sharded within a host, replicated across hosts);
gradients are reduce-scattered within the shard group and all-reduced across replicas. The
sharded parameters are then DTensors on the 1-D shard sub-mesh (PyTorch's are on the 2-D mesh
with placements (Replicate(), Shard(0))).

Over tensor parallelism (pytorch/examples' fsdp_tp_example.py): parameters made DTensors on
mesh["tp"] by parallelize_module are sharded again on mesh["dp"], the other dim of the same
2-D mesh: each rank keeps a dp chunk of its TP part; the unsharded form is the TP part (what
the TP layers compute with), and the sharded parameter is a DTensor on the 2-D mesh, cut by
TP first and then by FSDP (PyTorch's _StridedShard where both cut dim 0).

A parameter that no rank used keeps no gradient; one that only some ranks used (control flow
that depends on the rank or the data) raises the same error on every rank, unless
`set_reduce_scatter_unused_params(True)` makes the missing gradients count as zeros (each
reduce-scatter carries every parameter that requires grad and a count per parameter of the
ranks that had its gradient, so its size never depends on the data).

The module's class becomes `FSDP<Class>`, a subclass of both `FSDPModule` and its own class.
"""
from ...autograd import engine, function as _function, saved_hooks
from ...autograd.grad_mode import is_grad_enabled
from ...tensor import Tensor
from ...tensor.dtypes import to_numpy_dtype
from ..tensor.dtensor import DTensor
from .param_group import (FSDPParam, all_gather_params, fsdp_over_tp, reduce_scatter_grads,
                          sharded_by)


class MixedPrecisionPolicy:
    """`param_dtype`: the dtype forward and backward compute in (the unsharded parameters');
    `reduce_dtype`: the gradients' reduce-scatter dtype (default: param_dtype);
    `output_dtype`: floating outputs are cast to it; `cast_forward_inputs`: floating inputs
    are cast to param_dtype."""

    def __init__(self, param_dtype=None, reduce_dtype=None, output_dtype=None,
                 cast_forward_inputs=True):
        self.param_dtype, self.reduce_dtype = param_dtype, reduce_dtype
        self.output_dtype, self.cast_forward_inputs = output_dtype, cast_forward_inputs

    def __repr__(self):
        return (f"MixedPrecisionPolicy(param_dtype={self.param_dtype}, reduce_dtype="
                f"{self.reduce_dtype}, output_dtype={self.output_dtype}, cast_forward_inputs="
                f"{self.cast_forward_inputs})")


class OffloadPolicy:
    """No offloading: the sharded parameters stay on their device."""


class CPUOffloadPolicy(OffloadPolicy):
    """Sharded parameters, gradients and optimizer step on the CPU (the unsharded ones on the
    compute device)."""

    def __init__(self, pin_memory=True):
        self.pin_memory = pin_memory


class FSDPState:
    """What one `fully_shard` call manages, and its forward / backward schedule."""

    def __init__(self, modules, params, mesh, reshard_after_forward, mp_policy,
                 replicate_group=None):
        self.modules, self.params, self.mesh = modules, params, mesh   # mesh: the shard dim
        self.group = mesh.get_group()
        self.replicate_group = replicate_group                          # HSDP's other dim
        self.ranks = mesh.size() * (replicate_group.size if replicate_group else 1)
        self.reshard_after_forward = reshard_after_forward   # None: True unless root
        self.reshard_after_backward = True
        self.requires_gradient_sync = True
        self.divide_factor = None                            # None: every rank (self.ranks)
        self.mp = mp_policy
        self.param_dtype = _np(mp_policy.param_dtype)
        self.reduce_dtype = _np(mp_policy.reduce_dtype) or self.param_dtype
        self.is_root = None                                  # known at the first forward
        self.forward_prefetch, self.backward_prefetch = [], []
        self.ready = set()                  # params whose gradient this backward accumulated
        self.used = set()                   # params this step's forward graph reads
        self._first_node = 0                # graph nodes from here on are this forward's
        self.left_to_parent = frozenset()   # ids of parameters left to an enclosing call
        self.in_backward = False
        self.reduced = False                # this backward reduced the gradients already
        self.reduce_scatter_unused_params = False   # missing gradients count as zeros
        self.position = 0                   # its place under the root (number_units)
        for p in params:
            p.unsharded.register_post_accumulate_grad_hook(
                lambda _, p=p: self._grad_ready(p))

    # ---- unshard / reshard ---------------------------------------------------------------
    def unshard(self):
        for p in self.params:
            p.unsharded.requires_grad = p.sharded.requires_grad
        missing = [p for p in self.params if not p.is_current]
        if missing:
            all_gather_params(missing, self.group, self.param_dtype)
        for p in self.params:
            p.register(p.unsharded)

    def reshard(self):
        for p in self.params:
            p.register(p.sharded)
            p.free()

    def adopt_registered(self):
        """load_state_dict(assign=True) put new parameters in the shards' places."""
        for p in self.params:
            p.adopt_registered()

    # ---- forward -------------------------------------------------------------------------
    def forward(self, module, run, args, kwargs):
        """`run(*args, **kwargs)` (the module's call, or a method registered with
        register_fsdp_forward_method) between the group's pre- and post-forward."""
        args, kwargs = self.pre_forward(module, args, kwargs)
        if is_grad_enabled():
            with self.saved_tensor_hooks():
                output = run(*args, **kwargs)
        else:
            output = run(*args, **kwargs)
        return self.post_forward(output)

    def pre_forward(self, module, args, kwargs):
        if self.is_root is None:
            self._become_root(module)
        if self.is_root:
            self._forget_aborted_backward(module)
            for state in _states_below(module):     # a new step: its own forward graph
                if not state.in_backward:
                    state.used.clear()
        self._first_node = next(_function._sequence)
        self.unshard()
        for m in self.forward_prefetch:
            m._fsdp_state.unshard()
        if self.mp.cast_forward_inputs and self.param_dtype is not None:
            args, kwargs = _cast_floating((args, kwargs), self.mp.param_dtype)
        return args, kwargs

    def post_forward(self, output):
        reshard = self.reshard_after_forward
        if reshard if reshard is not None else not self.is_root:
            # an output that is one of the parameters goes out as a view, which keeps the
            # values when the parameter is freed
            whole = {id(p.unsharded) for p in self.params}
            output = _map_tensors(output, lambda t: t.view_as(t) if id(t) in whole else t)
            self.reshard()
        if is_grad_enabled():
            for t in _tensors(output):
                if t.requires_grad:
                    t.register_hook(self._pre_backward)
            self._note_used(output)
        if self.mp.output_dtype is not None:
            output = _cast_floating(output, self.mp.output_dtype)
        return output

    def _forget_aborted_backward(self, module):
        """A backward that raised never ran its end-of-backward callbacks: its bookkeeping
        and the whole gradients it left would leak into this step's."""
        for state in _states_below(module):
            if state.in_backward:
                state.in_backward = False
                state.ready.clear()
                if state.requires_gradient_sync:
                    for p in state.params:
                        p.unsharded.grad = p.accumulated = None
                state.reshard()

    def _become_root(self, module):
        """The first FSDP module called is the root; those below it are not."""
        for m in module.modules():
            state = getattr(m, "_fsdp_state", None)
            if state is not None and state.is_root is None:
                state.is_root = state is self
        number_units(module)

    def saved_tensor_hooks(self):
        """Hooks that keep a reference to the parameter, not its whole tensor, in the graph
        (so resharding after forward frees it); other tensors go to the hooks outside."""
        outer = saved_hooks._stack.hooks[-1] if saved_hooks._stack.hooks else None
        by_tensor = {id(p.unsharded): p for p in self.params}
        by_array = {id(p.unsharded._data): p for p in self.params}

        def pack(t):
            p = by_tensor.get(id(t)) or by_array.get(id(t._data))
            if p is not None and (t is p.unsharded or t._data is p.unsharded._data):
                return _ParamRef(p, t is not p.unsharded)
            return t if outer is None else (outer, outer[0](t))

        def unpack(packed):
            if type(packed) is _ParamRef:
                self._enter_backward()
                self.unshard()
                whole = packed.param.unsharded      # or its values (a TP parameter's part)
                return Tensor._make(whole._data) if packed.values else whole
            if outer is None:
                return packed
            hooks, inner = packed
            return hooks[1](inner)
        return saved_hooks.saved_tensors_hooks(pack, unpack)

    # ---- backward ------------------------------------------------------------------------
    def _pre_backward(self, grad):
        self._enter_backward()
        self.unshard()
        for m in self.backward_prefetch:
            m._fsdp_state.unshard()

    def _enter_backward(self):
        if not self.in_backward:
            self.in_backward = True
            self.reduced = False
            engine.queue_callback(self._end_backward)

    def _note_used(self, output):
        """Add the parameters this forward's graph reads (the leaves of the nodes it made):
        the group reduces once their gradients are in, so a parameter some ranks leave
        unused does not hold its group back there, and every rank reduces the groups in
        the same order (PyTorch fires at the end of each unit's backward)."""
        mine = {id(p.unsharded): p for p in self.params}
        todo = [t.grad_fn for t in _tensors(output) if t.grad_fn is not None]
        seen = set()
        while todo:
            node = todo.pop()
            if id(node) in seen or getattr(node, "seq", -1) < self._first_node:
                continue
            seen.add(id(node))
            for edge in node.edges:
                if edge is None:
                    continue
                target = edge[0]
                if edge[1] == -1:                   # a leaf
                    if id(target) in mine:
                        self.used.add(mine[id(target)])
                elif target is not None:
                    todo.append(target)

    def _grad_ready(self, param):
        self.ready.add(param)
        wanted = self.used or {p for p in self.params if p.unsharded.requires_grad}
        if self.ready >= wanted:
            self._finish_gradients()

    def _finish_gradients(self):
        try:
            if self.requires_gradient_sync:
                reduce_scatter_grads(self.params, self.group, self.reduce_dtype,
                                     self.divide_factor or self.ranks, self.replicate_group,
                                     self.reduce_scatter_unused_params, self.position)
                self.reduced = True
            elif self.reduce_dtype is not None:
                for p in self.params:  # microbatches add up in reduce_dtype, as PyTorch's
                    p.accumulate(self.reduce_dtype)
        finally:        # also when the reduction raised: every rank resharded alike, so
            if self.reshard_after_backward:     # the next forward gathers on every rank
                self.reshard()
            self.ready.clear()

    def _end_backward(self):
        """At the end of a backward: gradients that arrived without completing the group
        (unused parameters) are reduced now, and so is a group that got none here: other
        ranks may have used it (every rank's reduce-scatter must happen, the same size); the
        group is resharded. The root also reshards the groups below it whose backward never
        ran (prefetched, or frozen)."""
        self.in_backward = False
        if self.ready or any(p.has_grad() for p in self.params) or \
                self.requires_gradient_sync and not self.reduced and \
                any(p.unsharded.requires_grad for p in self.params):
            self._finish_gradients()
        elif self.reshard_after_backward:
            self.reshard()
        if self.is_root:
            for state in _states_below(self.modules[0]):
                if not state.in_backward and state.reshard_after_backward and \
                        state is not self:
                    state.reshard()


class _ParamRef:
    __slots__ = ("param", "values")

    def __init__(self, param, values):
        self.param, self.values = param, values


class FSDPModule:
    """The methods a `fully_shard`-ed module gains (its class becomes `FSDP<Class>`)."""

    def __call__(self, *args, **kwargs):
        return self._fsdp_state.forward(self, super().__call__, args, kwargs)

    def __reduce__(self):
        raise TypeError("a fully_shard-ed module is not pickled; save its state_dict()")

    def unshard(self, async_op=False):
        """All-gather this module's parameters now (e.g. ahead of its forward); with
        `async_op=True` returns a handle whose wait() is immediate (the gather is done)."""
        self._fsdp_state.unshard()
        return UnshardHandle() if async_op else None

    def reshard(self):
        """Free this module's whole parameters, leaving the shards registered."""
        self._fsdp_state.reshard()

    def set_requires_gradient_sync(self, requires_gradient_sync, *, recurse=True):
        """False: backward keeps accumulating unsharded gradients without reduce-scatter
        (gradient accumulation); the next backward with True reduces the sum."""
        for state in self._states(recurse):
            state.requires_gradient_sync = requires_gradient_sync

    def set_reshard_after_forward(self, reshard_after_forward, recurse=True):
        if not isinstance(reshard_after_forward, bool):
            raise ValueError(f"reshard_after_forward should be a bool, got "
                             f"{type(reshard_after_forward)}")
        for state in self._states(recurse):
            state.reshard_after_forward = reshard_after_forward

    def set_reshard_after_backward(self, reshard_after_backward, *, recurse=True):
        for state in self._states(recurse):
            state.reshard_after_backward = reshard_after_backward

    def set_reduce_scatter_unused_params(self, reduce_scatter_unused_params, *,
                                         recurse=True):
        """True: a parameter that got no gradient on some ranks (control flow that depends
        on the rank or the data, mixtures of experts) is reduced with zeros from those
        ranks, and gets a zero gradient where no rank used it, once its group's backward
        ran. False (default): a parameter no rank used keeps no gradient, and one only
        some ranks used raises on every rank."""
        for state in self._states(recurse):
            state.reduce_scatter_unused_params = reduce_scatter_unused_params

    def set_modules_to_forward_prefetch(self, modules):
        """All-gather these modules' parameters when this module's forward starts."""
        self._fsdp_state.forward_prefetch = _fsdp_modules(modules)

    def set_modules_to_backward_prefetch(self, modules):
        """All-gather these modules' parameters when this module's backward starts."""
        self._fsdp_state.backward_prefetch = _fsdp_modules(modules)

    def set_gradient_divide_factor(self, factor):
        """Divide the summed gradients by `factor` instead of the number of ranks."""
        self._fsdp_state.divide_factor = float(factor)      # this module's group only

    def _states(self, recurse):
        modules = self.modules() if recurse else (self,)
        return [m._fsdp_state for m in modules if isinstance(m, FSDPModule)]


def register_fsdp_forward_method(module, method_name):
    """Make `module.<method_name>` (e.g. `generate`) gather and free the parameters as
    `module(...)` does, for code that calls it instead of forward."""
    if not isinstance(module, FSDPModule):
        return                           # PyTorch: nothing to do for a plain module
    method = getattr(module, method_name)

    def run(*args, **kwargs):
        return module._fsdp_state.forward(module, method, args, kwargs)
    module.__dict__[method_name] = run


class UnshardHandle:
    def wait(self):
        return None


def fully_shard(module, *, mesh=None, reshard_after_forward=None, shard_placement_fn=None,
                mp_policy=MixedPrecisionPolicy(), offload_policy=OffloadPolicy(),
                ignored_params=None, dp_mesh_dims=None):
    """Shard `module`'s parameters (those not in an already fully_shard-ed submodule) over
    `mesh` (default: every rank); see the module docstring. Returns `module`."""
    modules = tuple(module) if isinstance(module, (list, tuple)) else (module,)
    if not modules:
        raise ValueError("fully_shard needs a module or a non-empty list of modules")
    for m in modules:
        if isinstance(m, FSDPModule):
            raise ValueError(f"{type(m).__name__} is fully_shard-ed already")
    if dp_mesh_dims is not None:
        raise NotImplementedError("fully_shard(dp_mesh_dims=...) is not supported; pass a "
                                  "1-D mesh")
    if not (reshard_after_forward is None or isinstance(reshard_after_forward, bool)):
        raise NotImplementedError(f"fully_shard(reshard_after_forward="
                                  f"{reshard_after_forward!r}): resharding to a smaller "
                                  f"world is not supported; pass True or False")
    if type(offload_policy) is not OffloadPolicy:
        _check_offload(offload_policy, modules)
    params = _managed(modules, set(map(id, ignored_params or ())))
    if mesh is None:
        from ..device_mesh import _world_mesh
        device = next((p.device.type for p, _ in params), "cpu")
        mesh = _world_mesh("cuda" if device == "cuda" else "cpu")
    replicate_group = None
    if mesh.ndim == 2:      # HSDP: replicated along dim 0, sharded along dim 1
        mesh, replicate_group = mesh._line(1), mesh.get_group(0)
    elif mesh.ndim != 1:
        raise NotImplementedError(f"fully_shard on a {mesh.ndim}-D mesh is not supported; "
                                  f"pass a 1-D mesh (FSDP) or a 2-D one (HSDP: replicate, "
                                  f"shard)")
    for p, _ in params:
        if isinstance(p, DTensor):     # tensor parallel: its mesh and ours make one 2-D mesh
            if replicate_group is not None:
                raise NotImplementedError("fully_shard: HSDP (a 2-D mesh) of tensor-parallel "
                                          "parameters is not supported; pass the dp mesh")
            fsdp_over_tp(mesh, p._mesh)
    fsdp_params = [FSDPParam(p, places, mesh, _shard_dim(shard_placement_fn, p))
                   for p, places in params]
    state = FSDPState(modules, fsdp_params, mesh, reshard_after_forward, mp_policy,
                      replicate_group)
    for m in modules:
        m.__dict__["_fsdp_state"] = state
        m.__class__ = _fsdp_class(type(m))
        m.register_state_dict_pre_hook(lambda *_: state.reshard())
        m.register_load_state_dict_pre_hook(lambda *_: state.reshard())
        m.register_load_state_dict_post_hook(lambda *_: state.adopt_registered())
    return module


def _managed(modules, ignored):
    """[(parameter, [(module, name), ...])] under `modules`, outside fully_shard-ed
    submodules and `ignored`, each parameter once with every place it is registered. A
    parameter a nested call left to this one (`FSDPState.left_to_parent`: FSDP1's auto
    wrapping, for a tie between units) is taken with its places inside that call's modules.
    One an earlier call sharded (a tie to a module outside that call: two copies would train
    apart) raises."""
    found = {}
    left = {i for m in modules for state in _states_below(m) for i in state.left_to_parent}

    def walk(m, nested):
        nested = nested or isinstance(m, FSDPModule)
        for name, p in m._parameters.items():
            if p is None or id(p) in ignored or nested and id(p) not in left:
                continue
            if p.ndim == 0 or hasattr(p, "_placements") and p._mesh.ndim != 1:
                raise ValueError(
                    f"fully_shard: cannot shard {type(m).__name__}.{name}: "
                    + ("a 0-d parameter has no dim to split (pass it in ignored_params)"
                       if p.ndim == 0 else "it is sharded on a 2-D mesh already"))
            found.setdefault(id(p), (p, []))[1].append((m, name))
        for child in m._modules.values():
            if child is not None:
                walk(child, nested)
    for m in modules:                   # none is fully_shard-ed (checked by the caller)
        walk(m, False)
    for p, places in found.values():
        earlier = sharded_by(p)
        if earlier is not None:
            module, name = places[0]
            other, other_name = earlier.places[0]
            mine, theirs = _class_name(module), _class_name(other)
            raise ValueError(
                f"fully_shard: {mine}.{name} is the parameter {theirs}.{other_name} (tied), "
                f"which an earlier fully_shard call shards on its own: a tied parameter must "
                f"be in one group; call fully_shard on a module holding every place it is "
                f"used (their common parent), not on {theirs} alone (with FSDP and "
                f"enable_wrap/wrap: do not wrap {theirs} or {mine} by itself)")
    return list(found.values())


def _class_name(module):
    """A module's own class name (FSDP<Class>'s Class)."""
    cls = type(module)
    return (cls.__bases__[1] if isinstance(module, FSDPModule) else cls).__name__


def _shard_dim(shard_placement_fn, param):
    if shard_placement_fn is None or param.ndim == 0:
        return 0
    placement = shard_placement_fn(param)
    if placement is None:
        return 0
    if not placement.is_shard():
        raise ValueError(f"shard_placement_fn must return a Shard placement or None, got "
                         f"{placement!r}")
    return placement.dim % param.ndim


def _check_offload(policy, modules):
    if not isinstance(policy, CPUOffloadPolicy):
        raise TypeError(f"offload_policy must be an OffloadPolicy, got {policy!r}")
    for m in modules:
        for p in m.parameters():
            if p.device.type != "cpu":
                raise NotImplementedError("CPUOffloadPolicy with parameters on a GPU is not "
                                          "supported; keep the model on the CPU or do not "
                                          "offload")


_classes = {}


def _fsdp_class(cls):
    if cls not in _classes:
        _classes[cls] = type(f"FSDP{cls.__name__}", (FSDPModule, cls),
                             {"__module__": cls.__module__})
    return _classes[cls]


def _fsdp_modules(modules):
    modules = list(modules)
    for m in modules:
        if not isinstance(m, FSDPModule):
            raise ValueError(f"prefetching needs fully_shard-ed modules, got "
                             f"{type(m).__name__}")
    return modules


def number_units(root):
    """Number each unit under `root` by its place there, the same on every rank: the
    reduce-scatters carry it, so ranks reducing units in different orders raise instead of
    mixing their gradients."""
    for position, m in enumerate(root.modules()):
        state = getattr(m, "_fsdp_state", None)
        if state is not None:
            state.position = position


def _states_below(module):
    return [m._fsdp_state for m in module.modules() if isinstance(m, FSDPModule)]


def _map_tensors(value, fn):
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)):
        mapped = [_map_tensors(v, fn) for v in value]
        return type(value)(*mapped) if hasattr(value, "_fields") else type(value)(mapped)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


def _tensors(value):
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


def _cast_floating(value, dtype):
    return _map_tensors(value, lambda t: t.to(dtype) if t.is_floating_point() and
                        t.dtype != dtype else t)


def _np(dtype):
    return None if dtype is None else to_numpy_dtype(dtype)
