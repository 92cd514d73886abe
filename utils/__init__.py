"""`phalanx.utils`: PyTorch's `torch.utils` paths, so `from phalanx.utils.data import DataLoader`
works as `from torch.utils.data import DataLoader` does.

The code lives where it belongs (`phalanx.data` for the data pipeline); these modules only name
it under PyTorch's paths. Submodules load on first use.
"""
import importlib

_LAZY_SUBMODULES = {"data", "tensorboard", "checkpoint", "hooks", "benchmark", "dlpack", "model_zoo"}


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise  # a dependency of the submodule is missing: say which
            raise AttributeError(f"module 'phalanx.utils' has no attribute {name!r}") from e
        globals()[name] = value
        return value
    raise AttributeError(f"module 'phalanx.utils' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _LAZY_SUBMODULES)
