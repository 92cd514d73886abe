"""`torch.distributed.algorithms.model_averaging`: local SGD's parameter averaging.

Each rank takes optimizer steps on its own gradients (DDP with `post_localSGD_hook` past its
start, or no DDP at all) and, every `period` steps, the ranks replace their parameters by
their mean (`averagers.PeriodicModelAverager`; `HierarchicalModelAverager` averages within
ever larger groups at longer periods). `phalanx.distributed.optim.PostLocalSGDOptimizer`
runs an averager after each step of a wrapped optimizer.
"""
from . import averagers, hierarchical_model_averager, utils  # noqa: F401
