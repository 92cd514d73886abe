"""Model averagers: when to average parameters, and over which ranks."""
import abc
import warnings

from ...world import group as _group_member
from . import utils

__all__ = ["ModelAverager", "PeriodicModelAverager"]


class ModelAverager(abc.ABC):
    """Counts steps (`step`) and averages parameters over `process_group` (default: the world)
    when `average_parameters(params)` decides to."""

    def __init__(self, process_group=None):
        self.process_group = process_group if process_group is not None else \
            _group_member.WORLD
        self.step = 0

    @abc.abstractmethod
    def average_parameters(self, params):
        raise NotImplementedError


class PeriodicModelAverager(ModelAverager):
    """Average every `period` steps once `warmup_steps` steps have passed (call
    `average_parameters` after each optimizer step)."""

    def __init__(self, period, warmup_steps=0, process_group=None):
        super().__init__(process_group)
        if warmup_steps < 0:
            raise ValueError("Arg ``warmup_steps`` must be a non-negative number.")
        self.warmup_steps = warmup_steps
        if period < 1:
            raise ValueError("Arg ``period`` must be a positive value.")
        if period == 1:
            warnings.warn("When period is 1, no need to use model averaging because the "
                          "communication cost of all-reducing parameters will be no less than "
                          "the cost of all-reducing gradients by DistributedDataParallel in the "
                          "backward pass. Therefore, only DistributedDataParallel should be "
                          "used for this case.", stacklevel=2)
        self.period = period

    def average_parameters(self, params):
        if self.step >= self.warmup_steps and \
                (self.step - self.warmup_steps) % self.period == 0:
            utils.average_parameters_or_parameter_groups(params, self.process_group)
        self.step += 1
