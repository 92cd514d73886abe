"""`torch.distributed.distributed_c10d`, where PyTorch defines its process-group API: the same
names as `phalanx.distributed` (`from torch.distributed.distributed_c10d import X` keeps
working), and the private helper libraries reach for most, `_get_default_group`."""
import importlib

_package = importlib.import_module(__package__)


def _get_default_group():
    """The default process group (the world); raises before `init_process_group()`."""
    from .world import _world
    return _world()


def __getattr__(name):
    try:
        return getattr(_package, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__():
    return sorted(set(dir(_package)) | {"_get_default_group"})
