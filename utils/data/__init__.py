"""`phalanx.utils.data`: `torch.utils.data`'s path to `phalanx.data` (one implementation, two
names). The submodules `dataloader`, `dataset`, `sampler` and `distributed` mirror PyTorch's."""
from ...data import *  # noqa: F401,F403
from ...data import __all__  # noqa: F401
from . import dataloader, dataset, distributed, sampler  # noqa: F401
