"""Phalanx: data-parallel deep-learning training on NumPy/CuPy, with a PyTorch-like API.

    import phalanx as px
    x = px.randn(4, 3, requires_grad=True)
    (x @ x.T).sum().backward()

The tensor library is imported here; `nn`, `optim`, `data`, `distributed` and the launcher
load on first use.
"""
import importlib
import os as _os
import sys as _sys
import warnings as _warnings

from . import tensor as _tensor_lib
from .tensor import *  # noqa: F401,F403  (the torch-like top-level namespace)
from .tensor import Tensor, tensor  # noqa: F811  (rebinds `tensor`: the function, not the folder)
from .autograd import (enable_grad, inference_mode, is_grad_enabled,
                       is_inference_mode_enabled, no_grad, set_grad_enabled)
from . import autograd
from .tensor import linalg, random, return_types, special  # noqa: F401  (modules, as torch's)
from .compile_api import compile  # noqa: A004  (torch.compile: the eager program)

for _name in ("linalg", "random", "return_types", "special"):  # so `import phalanx.linalg` works as in PyTorch
    _sys.modules[f"{__name__}.{_name}"] = globals()[_name]

# PyTorch computes inf and nan silently; NumPy would warn ("overflow encountered in exp") from
# inside Phalanx's ops, naming Phalanx's lines. Anomaly mode is the tool for finding them.
_warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"phalanx(\.|$)")

__version__ = "0.1.0"

_LAZY_SUBMODULES = {"nn", "optim", "data", "distributed", "launcher", "serialization", "utils",
                    "cuda", "accelerator", "backends", "distributions", "profiler",
                    "onnx", "multiprocessing", "amp", "cpu", "fft", "func", "testing",
                    "futures", "jit", "hub", "sparse", "functional", "xpu", "compiler"}
_FROM_SERIALIZATION = {"save", "load"}
_FROM_SPECTRAL = {"stft", "istft"}
_FROM_AMP = {"GradScaler", "autocast", "is_autocast_enabled", "get_autocast_dtype",
             "set_autocast_enabled", "set_autocast_dtype", "is_autocast_available",
             "is_autocast_cache_enabled", "set_autocast_cache_enabled", "clear_autocast_cache",
             "is_autocast_cpu_enabled", "set_autocast_cpu_enabled", "get_autocast_cpu_dtype",
             "set_autocast_cpu_dtype", "get_autocast_gpu_dtype", "set_autocast_gpu_dtype"}


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _FROM_SERIALIZATION:
        value = getattr(importlib.import_module(f"{__name__}.serialization"), name)
    elif name in _FROM_SPECTRAL:
        value = getattr(importlib.import_module(f"{__name__}.spectral"), name)
    elif name in _FROM_AMP:
        value = getattr(importlib.import_module(f"{__name__}.amp"), name)
    elif name == "OutOfMemoryError":        # torch.OutOfMemoryError is torch.cuda's
        value = importlib.import_module(f"{__name__}.cuda").OutOfMemoryError
    elif not name.startswith("_") and name in _functional_aliases().__all__:
        value = getattr(_functional_aliases(), name)
    else:
        raise AttributeError(f"module 'phalanx' has no attribute {name!r}")
    globals()[name] = value
    return value


def _functional_aliases():
    """torch.conv2d, torch.dropout, ...: they need nn, so they load on first use."""
    return importlib.import_module(f"{__name__}.functional_aliases")


def __dir__():
    return sorted(set(globals()) | _LAZY_SUBMODULES | _FROM_SERIALIZATION | _FROM_SPECTRAL |
                  _FROM_AMP |
                  set(_functional_aliases().__all__))


if _os.environ.get("PHALANX_PROFILE"):  # `phalanx run --profile DIR`: this rank records its run
    importlib.import_module(f"{__name__}.profiler.environment").start_from_environment()
