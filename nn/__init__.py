"""`phalanx.nn`: modules, parameters, layers, losses, `functional`, `init`, `utils` and
`attention`, under PyTorch's names. `nn.SyncBatchNorm` and
`nn.parallel.DistributedDataParallel` live in `phalanx.distributed` (which builds on nn) and
load on first access."""
import importlib

from . import attention, functional, init, parallel, utils  # noqa: F401
from .modules import *  # noqa: F401,F403
from .modules import Module  # noqa: F401
from .parameter import Buffer, Parameter  # noqa: F401
from .parallel.data_parallel import DataParallel  # noqa: F401


def __getattr__(name):
    if name == "SyncBatchNorm":
        return importlib.import_module("phalanx.distributed.sync_batchnorm").SyncBatchNorm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
