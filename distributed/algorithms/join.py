"""Training on uneven inputs: `Join`, `Joinable`, `JoinHook` (PyTorch's `torch.distributed.
algorithms.join`, same names and contract).

    with model.join():                     # model: DistributedDataParallel
        for x, y in my_shard:              # ranks may hold different numbers of batches
            loss_fn(model(x), y).backward()
            opt.step()

A rank whose loop ends ("joins") waits in `__exit__`, and while others still train it
"shadows" their collectives so that nobody hangs: every iteration, each rank still training
says so with an all-reduce of a one (`notify_join_context`, issued by the first joinable, e.g.
at the start of DDP's forward), which a joined rank matches with a zero; while that sum is not
zero the joined rank runs each joinable's `JoinHook.main_hook()` (DDP's matches the forward's
and the backward's collectives), and once it is zero every rank runs `post_hook(is_last_joiner)`
(DDP's copies the model from one of the ranks that trained longest to all the others).

With `throw_on_early_termination=True` the first rank out ends the job instead: it raises, and
so does every other rank at its next iteration (the notify adds a second all-reduce for that).
"""
import abc
import warnings
from typing import NamedTuple

from ...tensor import full, int64, ones, zeros
from ..collectives import all_reduce
from ..world import get_rank

SKEW_WARNING = 1000       # iterations a joined rank shadows before it warns of the skew


class JoinHook:
    """What a joinable does on a rank that has joined: `main_hook()` once per iteration of the
    ranks still training (shadow their collectives), `post_hook(is_last_joiner)` once all have
    joined."""

    def main_hook(self):
        pass

    def post_hook(self, is_last_joiner: bool):
        pass


class _JoinConfig(NamedTuple):
    enable: bool
    throw_on_early_termination: bool
    is_first_joinable: bool


_DISABLED = _JoinConfig(False, False, False)


class Joinable(abc.ABC):
    """A class whose per-iteration collectives a joined rank can shadow. Subclasses call
    `Joinable.__init__`, implement `join_hook(**kwargs)`, `join_device` and
    `join_process_group`, and call `Join.notify_join_context(self)` before their collectives
    each iteration."""

    @abc.abstractmethod
    def __init__(self):
        super().__init__()
        self._join_config = _DISABLED

    @abc.abstractmethod
    def join_hook(self, **kwargs) -> JoinHook:
        ...

    @property
    @abc.abstractmethod
    def join_device(self):
        ...

    @property
    @abc.abstractmethod
    def join_process_group(self):
        ...


class Join:
    """Context manager for uneven inputs over `joinables` (hooks run in the given order; all of
    them on one process group; the first one's device carries the join's own all-reduces).
    `enable=False` makes it do nothing; `kwargs` go to every joinable's `join_hook`."""

    def __init__(self, joinables, enable=True, throw_on_early_termination=False, **kwargs):
        joinables = list(joinables)
        if not joinables:
            raise ValueError("The join context manager requires at least one joinable")
        for j in joinables:
            if not hasattr(j, "_join_config"):
                raise TypeError(f"{type(j).__name__} is not a Joinable whose constructor ran "
                                f"Joinable.__init__; Join takes DistributedDataParallel, "
                                f"ZeroRedundancyOptimizer or your own Joinable subclasses")
        groups = {id(j.join_process_group) for j in joinables}
        if len(groups) > 1:
            raise ValueError("Using join context manager with multiple process groups: every "
                             "joinable must use the same process_group")
        self._joinables = joinables
        self._join_hooks = [j.join_hook(**kwargs) for j in joinables]
        self._enable = enable
        self._throw_on_early_termination = throw_on_early_termination
        self._process_group = joinables[0].join_process_group
        self._device = joinables[0].join_device
        self._rank = get_rank(self._process_group)

    def __enter__(self):
        for i, j in enumerate(self._joinables):
            j._join_config = _JoinConfig(self._enable, self._throw_on_early_termination, i == 0)
        return self

    def __exit__(self, kind, value, traceback):
        try:
            if self._enable and kind is None:
                self._shadow_until_all_joined()
        finally:
            for j in self._joinables:
                j._join_config = _DISABLED

    def _shadow_until_all_joined(self):
        is_last_joiner, iterations = True, 0
        while self._count_not_joined():
            if self._throw_on_early_termination:
                self._flag(1)        # the others' check in notify_join_context sees it
                raise RuntimeError(f"Rank {self._rank} exhausted all inputs.")
            for hook in self._join_hooks:
                hook.main_hook()
            is_last_joiner = False
            iterations += 1
            if iterations == SKEW_WARNING + 1:
                warnings.warn(f"Detected uneven input skew of greater than {SKEW_WARNING}. "
                              f"This means that rank {self._rank} has at least {SKEW_WARNING} "
                              f"fewer inputs than other currently-active ranks. This level of "
                              f"skew could lead to performance degradation during training.",
                              stacklevel=3)
        for hook in self._join_hooks:
            hook.post_hook(is_last_joiner)

    def _count_not_joined(self):
        return int(self._flag(0, async_op=True))

    def _flag(self, value, async_op=False):
        """The sum over the ranks of `value`, in a collective of the kind the ranks still
        training issue opposite it (MPI does not match a blocking call with a non-blocking
        one)."""
        t = full((1,), value, dtype=int64, device=self._device)
        work = all_reduce(t, group=self._process_group, async_op=async_op)
        if work is not None:
            work.wait()
        return t.item()

    @staticmethod
    def notify_join_context(joinable):
        """Tell the join context that this rank has not joined (call it each iteration, before
        the joinable's collectives). Returns the all-reduce's work (it sums to the number of
        ranks still training) for the first joinable of an enabled context, else None. With
        `throw_on_early_termination`, raises RuntimeError on every rank once one has joined."""
        config = getattr(joinable, "_join_config", None)
        if config is None:
            raise TypeError(f"{type(joinable).__name__} did not run Joinable.__init__")
        if not (config.enable and config.is_first_joinable):
            return None
        device, group = joinable.join_device, joinable.join_process_group
        work = all_reduce(ones(1, dtype=int64, device=device), group=group, async_op=True)
        if config.throw_on_early_termination:
            joined = zeros(1, dtype=int64, device=device)
            all_reduce(joined, group=group)
            if joined.item():
                raise RuntimeError("Detected at least one rank that exhausted inputs. "
                                   "Throwing across all ranks.")
        return work
