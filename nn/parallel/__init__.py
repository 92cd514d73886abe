"""`phalanx.nn.parallel.DistributedDataParallel` and `DataParallel`, as PyTorch users import them.

It lives in `phalanx.distributed` (which builds on `nn`), so it is looked up on first access:
importing `phalanx.nn` never imports the distributed layer.
"""
import importlib

from .data_parallel import DataParallel

__all__ = ["DataParallel", "DistributedDataParallel"]


def __getattr__(name):
    if name == "DistributedDataParallel":
        return importlib.import_module("phalanx.distributed.ddp").DistributedDataParallel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
