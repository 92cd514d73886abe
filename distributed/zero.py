"""`ZeroRedundancyOptimizer`: optimizer state sharded across ranks (ZeRO stage 1).

    opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=px.optim.Adam, lr=1e-3)

Each parameter is owned by one rank (greedy by size, group by group, so the shards weigh about
the same). A rank keeps the optimizer state of its own parameters only and updates only them;
after its local step every rank broadcasts the parameters it owns, so all replicas hold the
same weights — exactly those the unsharded optimizer would give, since every rank sees the
same (DDP-averaged) gradients. Hyperparameters changed in `param_groups` (LR schedulers) are
passed on to the local optimizer at each step. `consolidate_state_dict(to)` gathers the
shards so `state_dict()` on rank `to` returns the unsharded optimizer's state dict;
`load_state_dict` takes such a dict on every rank and keeps each rank's shard.
PyTorch's `parameters_as_bucket_view` is accepted and has no effect. It is a `Joinable`: with
`Join([ddp_model, zero_optimizer])` a rank that has run out of inputs keeps stepping (with the
gradients DDP's join gives it, the others' average) and broadcasting the parameters it owns.
"""
from ..optim.optimizer import Optimizer
from ..tensor.backend import array_module
from .algorithms.join import _DISABLED, Join, Joinable, JoinHook
from .comm_queue import blocking
from .world import resolve


class ZeroRedundancyOptimizer(Optimizer, Joinable):
    def __init__(self, params, optimizer_class, process_group=None,
                 parameters_as_bucket_view=False, overlap_with_ddp=False, **defaults):
        if overlap_with_ddp:
            raise NotImplementedError("overlap_with_ddp is not supported; step after "
                                      "backward() as usual")
        self._join_config = _DISABLED
        self.process_group = resolve(process_group)
        self.optimizer_class = optimizer_class
        self._consolidated = None
        self.optim = None
        super().__init__(params, defaults)    # calls add_param_group for each group
        self._build_local()

    # --- partitioning ----------------------------------------------------------------------
    def _partition(self):
        """owner[id(p)] for every parameter: per group, largest first, to the lightest rank."""
        size = self.process_group.size
        load = [0] * size
        owner = {}
        for group in self.param_groups:
            for p in sorted(group["params"], key=lambda p: -p.numel()):
                rank = min(range(size), key=lambda r: load[r])
                owner[id(p)] = rank
                load[rank] += p.numel()
        return owner

    def _build_local(self):
        self._owner = self._partition()
        me = self.process_group.rank
        local_groups = []
        for group in self.param_groups:
            mine = [p for p in group["params"] if self._owner[id(p)] == me]
            local_groups.append(dict(group, params=mine))
        self._local_groups = local_groups
        nonempty = [g for g in local_groups if g["params"]]
        old = self.optim
        self.optim = self.optimizer_class(nonempty, **self.defaults) if nonempty else None
        if old is not None and self.optim is not None:   # keep the state of kept parameters
            for p in (p for g in nonempty for p in g["params"]):
                if p in old.state:
                    self.optim.state[p] = old.state[p]

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        if self.optim is not None or getattr(self, "_local_groups", None) is not None:
            self._build_local()   # repartition; moved parameters' state starts afresh

    @property
    def owned_parameters(self):
        return [p for g in self._local_groups for p in g["params"]]

    # --- the update -------------------------------------------------------------------------
    def step(self, closure=None):
        Join.notify_join_context(self)
        loss = None
        if self.optim is not None:
            mine = [g for g, lg in zip(self.param_groups, self._local_groups) if lg["params"]]
            for g, og in zip(mine, self.optim.param_groups):   # e.g. an LR scheduler's change
                og.update({k: v for k, v in g.items() if k != "params"})
            loss = self.optim.step(closure)
        elif closure is not None:
            from ..autograd import enable_grad
            with enable_grad():
                loss = closure()
        self._broadcast_params()
        return loss

    def join_hook(self, **kwargs):
        return _ZeroJoinHook(self)

    @property
    def join_device(self):
        return self.param_groups[0]["params"][0].device

    @property
    def join_process_group(self):
        return self.process_group

    def _broadcast_params(self):
        """Every rank sends the parameters it owns; one broadcast per (owner, dtype)."""
        group = self.process_group
        if group.size == 1:
            return
        by_owner = {}
        for g in self.param_groups:
            for p in g["params"]:
                by_owner.setdefault((self._owner[id(p)], p._data.dtype), []).append(p)
        for (root, _), params in sorted(by_owner.items(), key=lambda kv: (kv[0][0],
                                                                           str(kv[0][1]))):
            xp = array_module(params[0]._data)
            flat = xp.concatenate([p._data.reshape(-1) for p in params])
            blocking(group.broadcast, flat, root)
            if root != group.rank:
                offset = 0
                for p in params:
                    p._data[...] = flat[offset:offset + p.numel()].reshape(p._data.shape)
                    p._version[0] += 1
                    offset += p.numel()

    # --- state dicts ---------------------------------------------------------------------------
    def _global_index(self):
        return {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}

    def _local_state(self):
        """This rank's optimizer state keyed by global parameter index."""
        if self.optim is None:
            return {}
        index = self._global_index()
        sd = self.optim.state_dict()
        local_params = [p for g in self.optim.param_groups for p in g["params"]]
        return {index[id(local_params[k])]: v for k, v in sd["state"].items()}

    def consolidate_state_dict(self, to=0):
        """Gather every rank's shard on rank `to` (every rank must call it)."""
        pieces = self.process_group.allgather_object(_to_host(self._local_state()))
        self._consolidated = None
        if self.process_group.ranks[self.process_group.rank] == to:
            merged = {}
            for piece in pieces:
                merged.update(piece)
            self._consolidated = merged

    def state_dict(self):
        """The unsharded optimizer's state dict; call consolidate_state_dict() first (on every
        rank), then this on the rank it gathered to."""
        if self._consolidated is None:
            raise RuntimeError("ZeroRedundancyOptimizer.state_dict(): call "
                               "consolidate_state_dict(to=rank) on every rank first, then "
                               "state_dict() on that rank")
        index = self._global_index()
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = [index[id(p)] for p in g["params"]]
            groups.append(packed)
        return {"state": {k: dict(v) for k, v in sorted(self._consolidated.items())},
                "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load an unsharded state dict (the same on every rank); each rank keeps its shard."""
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved)} parameter groups but the "
                             f"optimizer has {len(self.param_groups)}")
        for g, s in zip(self.param_groups, saved):
            g.update({k: v for k, v in s.items() if k != "params"})
        self._build_local()
        if self.optim is None:
            return
        index = self._global_index()
        local_params = [p for g in self.optim.param_groups for p in g["params"]]
        state = {k: state_dict["state"][index[id(p)]] for k, p in enumerate(local_params)
                 if index[id(p)] in state_dict["state"]}
        local_groups = []
        start = 0
        for g in self.optim.param_groups:
            n = len(g["params"])
            local_groups.append(dict({k: v for k, v in g.items() if k != "params"},
                                     params=list(range(start, start + n))))
            start += n
        self.optim.load_state_dict({"state": state, "param_groups": local_groups})


def _to_host(state):
    """Optimizer state with every tensor moved to host memory (for pickling)."""
    from ..tensor import Tensor
    from ..tensor.backend import to_device
    return {k: {name: (Tensor._make(to_device(v._data, "cpu").copy())
                       if isinstance(v, Tensor) else v) for name, v in s.items()}
            for k, s in state.items()}


class _ZeroJoinHook(JoinHook):
    """On a joined rank: the step the others take (its shard's update and broadcasts)."""

    def __init__(self, zero):
        self.zero = zero

    def main_hook(self):
        self.zero.step()
