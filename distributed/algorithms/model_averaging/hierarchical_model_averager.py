"""`HierarchicalModelAverager`: average within small groups often and larger ones rarely."""
import warnings
from collections import OrderedDict

from ...world import get_world_size, new_subgroups
from . import averagers, utils

__all__ = ["HierarchicalModelAverager"]


class HierarchicalModelAverager(averagers.ModelAverager):
    """`period_group_size_dict` maps periods (increasing) to group sizes (the last one the
    whole `process_group`): at a step that is a multiple of some periods, the ranks average in
    groups of the size that goes with the longest of them (consecutive ranks), after
    `warmup_steps`. E.g. `OrderedDict([(2, 4), (8, 16)])` on 16 ranks: every 2 steps within
    groups of 4, every 8 steps all 16."""

    def __init__(self, period_group_size_dict=None, warmup_steps=0, process_group=None):
        super().__init__(process_group)
        if not period_group_size_dict:
            raise ValueError("Arg ``period_group_size_dict`` must not be empty.")
        self._periods = list(period_group_size_dict.keys())
        if self._periods[0] <= 0:
            raise ValueError("The minimum period in arg ``period_group_size_dict`` must be a "
                             "positive value.")
        if self._periods[-1] == 1:
            warnings.warn("When the maximum period in arg ``period_group_size_dict`` is 1, no "
                          "need to use model averaging because the communication cost of "
                          "all-reducing parameters will be no less than the cost of "
                          "all-reducing gradients by DistributedDataParallel in the backward "
                          "pass. Therefore, only DistributedDataParallel should be used for "
                          "this case.", stacklevel=2)
        overall = get_world_size(group=self.process_group)
        sizes = list(period_group_size_dict.values())
        if sizes[-1] != overall:
            raise ValueError(f"The last value in arg ``period_group_size_dict`` {sizes[-1]} "
                             f"must be equal to the size of arg ``process_group`` {overall}.")
        self.period_process_group_dict = OrderedDict()
        for period, size in period_group_size_dict.items():
            self.period_process_group_dict[period] = self.process_group if size == overall \
                else new_subgroups(group_size=size, group=self.process_group)[0]
        if warmup_steps < 0:
            raise ValueError("Arg ``warmup_steps`` must be a non-negative number.")
        self.warmup_steps = warmup_steps

    def _find_process_group(self):
        for period in reversed(self._periods):
            if self.step % period == 0:
                return self.period_process_group_dict[period]
        return None

    def average_parameters(self, params):
        if self.step >= self.warmup_steps:
            group = self._find_process_group()
            if group is not None:
                utils.average_parameters_or_parameter_groups(params, group)
        self.step += 1
