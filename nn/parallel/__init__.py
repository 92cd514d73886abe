"""`phalanx.nn.parallel.DistributedDataParallel`, as PyTorch users import it.

It lives in `phalanx.distributed` (which builds on `nn`), so it is looked up on first access:
importing `phalanx.nn` never imports the distributed layer.
"""
import importlib

__all__ = ["DistributedDataParallel"]


def __getattr__(name):
    if name == "DistributedDataParallel":
        return importlib.import_module("phalanx.distributed.ddp").DistributedDataParallel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
