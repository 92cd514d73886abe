"""The scheduler base class and the helpers every schedule shares."""
import functools
import warnings

from ..optimizer import Optimizer

EPOCH_DEPRECATION_WARNING = (
    "passing an epoch to scheduler.step() is deprecated (as in PyTorch): it jumps to that "
    "epoch, through the schedule's closed form where it has one, instead of advancing by one. "
    "Call scheduler.step() without arguments once per epoch.")


def _per_group(name, optimizer, value):
    """One value per param group: a list of that length, or one value repeated."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(f"{name} must have one value per param group: got {len(value)} "
                             f"values for {len(optimizer.param_groups)} param groups")
        return list(value)
    return [value] * len(optimizer.param_groups)


def _check_optimizer(optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer; pass the optimizer "
                        f"whose learning rate the schedule drives")


def _warn_outside_step(get_lr):
    """`get_lr` computes the next rates from the current ones, so a call from outside `step`
    does not give the current rates: warn, as PyTorch does, and point at get_last_lr()."""
    @functools.wraps(get_lr)
    def wrapper(self):
        if not getattr(self, "_get_lr_called_within_step", False):
            warnings.warn("To get the last learning rate computed by the scheduler, please use "
                          "`get_last_lr()`.", UserWarning, stacklevel=2)
        return get_lr(self)
    return wrapper


class LRScheduler:
    """Base class: `get_lr()` gives the rates for `last_epoch`; `step()` advances and applies
    them. The constructor takes the first step (epoch 0), as PyTorch does."""

    _get_lr_called_within_step = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_lr" in cls.__dict__:
            cls.get_lr = _warn_outside_step(cls.get_lr)

    def __init__(self, optimizer, last_epoch=-1):
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] "
                                   f"when resuming a scheduler with last_epoch={last_epoch}; "
                                   f"load the optimizer's state dict first, or start with "
                                   f"last_epoch=-1")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self):
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def state_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)

    def get_last_lr(self):
        """The rates the last `step()` set, one per param group."""
        return self._last_lr

    def get_lr(self):
        raise NotImplementedError

    def step(self, epoch=None):
        """Advance one epoch and set the rates. `epoch` (deprecated in PyTorch, still accepted
        with a warning) jumps to that epoch instead, through the closed form where the
        schedule has one."""
        if self._step_count == 1 and not getattr(self.optimizer, "_opt_called", False):
            warnings.warn("lr_scheduler.step() was called before optimizer.step(): the first "
                          "value of the schedule is skipped. Call optimizer.step() first.",
                          UserWarning, stacklevel=2)
        self._step_count += 1
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _update_lr(self, epoch=None):
        """Advance one epoch (recursive form), or jump to `epoch` (closed form where the
        schedule has one)."""
        self._get_lr_called_within_step = True
        try:
            if epoch is None:
                self.last_epoch += 1
                values = self.get_lr()
            else:
                self.last_epoch = epoch
                closed_form = getattr(self, "_get_closed_form_lr", None)
                values = closed_form() if closed_form is not None else self.get_lr()
        finally:
            self._get_lr_called_within_step = False
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = self._group_lrs()

    def _group_lrs(self):
        return [group["lr"] for group in self.optimizer.param_groups]


class _LRScheduler(LRScheduler):
    """The base class's old name, which PyTorch still exports and older code subclasses."""
