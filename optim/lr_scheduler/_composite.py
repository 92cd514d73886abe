"""Schedules made of other schedules: one after another (SequentialLR), or all at once
(ChainedScheduler). Their state dicts hold the parts' state dicts."""
from bisect import bisect_right

from ._base import LRScheduler, _check_optimizer
from ._plateau import ReduceLROnPlateau


class _CompositeScheduler(LRScheduler):
    def state_dict(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        schedulers = state_dict.pop("_schedulers")
        self.__dict__.update(state_dict)
        for scheduler, saved in zip(self._schedulers, schedulers):
            scheduler.load_state_dict(saved)


class SequentialLR(_CompositeScheduler):
    """Run `schedulers[0]` until `milestones[0]`, then `schedulers[1]` (restarted at its epoch
    0), and so on."""

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        _check_optimizer(optimizer)
        if not schedulers:
            raise ValueError("SequentialLR expects at least one scheduler")
        _check_schedulers("SequentialLR", optimizer, schedulers)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR expects one milestone fewer than schedulers: got "
                             f"{len(schedulers)} schedulers and {len(milestones)} milestones")
        self._schedulers = list(schedulers)
        self._milestones = list(milestones)
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        # every scheduler took its initial step at construction; undo that and start the first
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for scheduler in self._schedulers:
            _undo_initial_step(scheduler)
        idx = bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()
        self._last_lr = self._schedulers[idx].get_last_lr()

    def step(self):
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()


class ChainedScheduler(_CompositeScheduler):
    """Step every scheduler in `schedulers` at each `step()`: their factors compound on the
    rate (so each must be of the chainable, recursive kind)."""

    def __init__(self, schedulers, optimizer=None):
        if not schedulers:
            raise ValueError("ChainedScheduler expects at least one scheduler to be chained, "
                             "but got none")
        optimizer = optimizer or schedulers[0].optimizer
        _check_schedulers("ChainedScheduler", optimizer, schedulers)
        self._schedulers = list(schedulers)
        self.optimizer = optimizer
        self._last_lr = self._group_lrs()

    def step(self):
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = self._group_lrs()


def _check_schedulers(kind, optimizer, schedulers):
    for i, scheduler in enumerate(schedulers):
        if not hasattr(scheduler, "optimizer"):
            raise TypeError(f"{kind}'s schedulers[{i}] ({type(scheduler).__name__}) has no "
                            f"`optimizer` attribute; pass LR schedulers")
        if isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError(f"{kind} does not support ReduceLROnPlateau (schedulers[{i}]): "
                             f"its step() needs the metric")
        if scheduler.optimizer is not optimizer:
            raise ValueError(f"{kind} expects all schedulers to drive the same optimizer, but "
                             f"schedulers[{i}] ({type(scheduler).__name__}) drives another one")


def _undo_initial_step(scheduler):
    if hasattr(scheduler, "_schedulers"):
        for s in scheduler._schedulers:
            _undo_initial_step(s)
    elif hasattr(scheduler, "last_epoch"):
        scheduler.last_epoch -= 1
