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


def swap_tensors(t1, t2):
    """Exchange everything two tensors are (data, autograd state, hooks, class and attributes)
    in place, so every reference to `t1` now sees what `t2` was and the other way round."""
    from ..tensor import Tensor
    if not (isinstance(t1, Tensor) and isinstance(t2, Tensor)):
        raise TypeError(f"swap_tensors expects two tensors, got {type(t1).__name__} and "
                        f"{type(t2).__name__}")
    slots = {name for cls in type(t1).__mro__ + type(t2).__mro__
             for name in getattr(cls, "__slots__", ()) if name not in ("__weakref__", "__dict__")}
    missing = object()
    for name in slots:
        a, b = getattr(t1, name, missing), getattr(t2, name, missing)
        for t, value in ((t1, b), (t2, a)):
            if value is missing:
                object.__delattr__(t, name)
            else:
                object.__setattr__(t, name, value)
    if hasattr(t1, "__dict__") or hasattr(t2, "__dict__"):
        d1, d2 = dict(getattr(t1, "__dict__", {})), dict(getattr(t2, "__dict__", {}))
        for t, d in ((t1, d2), (t2, d1)):
            if hasattr(t, "__dict__"):
                t.__dict__.clear()
                t.__dict__.update(d)
    if type(t1) is not type(t2):
        t1.__class__, t2.__class__ = type(t2), type(t1)
