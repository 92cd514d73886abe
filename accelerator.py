"""`phalanx.accelerator`: PyTorch's device-agnostic accelerator API. The only accelerator
Phalanx drives is a CUDA GPU (through CuPy), so these answer for `phalanx.cuda`; without a
usable GPU `is_available()` is False, `current_accelerator()` None and `device_count()` 0, and
the calls that need a device raise, as PyTorch's do."""
from . import cuda as _cuda
from .tensor.backend import Device as _Device


def is_available():
    return _cuda.is_available()


def current_accelerator(check_available=False):
    """`device(type='cuda')` when a GPU is usable, else None."""
    return _Device("cuda") if _cuda.is_available() else None


def device_count():
    return _cuda.device_count()


def _need(what):
    if not _cuda.is_available():
        raise RuntimeError(f"Cannot access accelerator device when none is available "
                           f"(phalanx.accelerator.{what}); phalanx.accelerator.is_available() "
                           f"is False here")


def current_device_index():
    _need("current_device_index()")
    return _cuda.current_device()


current_device_idx = current_device_index


def set_device_index(device):
    _need("set_device_index()")
    _cuda.set_device(device)


set_device_idx = set_device_index


def synchronize(device=None):
    _need("synchronize()")
    _cuda.synchronize(device)


def current_stream(device=None):
    _need("current_stream()")
    return _cuda.current_stream(device)


def empty_cache():
    _cuda.empty_cache()


def memory_allocated(device_index=None):
    return _cuda.memory_allocated(device_index)


def memory_reserved(device_index=None):
    return _cuda.memory_reserved(device_index)


class device_index:
    """`with phalanx.accelerator.device_index(i):` makes GPU `i` current; None does nothing."""

    def __init__(self, device, /):
        self._ctx = _cuda.device(device)

    def __enter__(self):
        if self._ctx.idx >= 0:
            _need("device_index()")
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
