"""`phalanx.cuda`: the `torch.cuda` API over CuPy.

On a machine without a usable GPU (or without CuPy) the queries answer truthfully
(`is_available()` False, `device_count()` 0, memory counters 0, seeding silently ignored, as
in PyTorch) and every call that needs a device raises one clear error naming the reason.
"""
from ._state import device_count, is_available
from ._state import device_index as _device_index, parse_index as _parse_index
from ._state import probe as _probe, require as _require
from .memory import (OutOfMemoryError, empty_cache, max_memory_allocated,
                     max_memory_reserved, mem_get_info, memory_allocated, memory_reserved,
                     reset_max_memory_allocated, reset_peak_memory_stats)
from .random import (get_rng_state, get_rng_state_all, initial_seed, manual_seed,
                     manual_seed_all, seed, seed_all, set_rng_state, set_rng_state_all)
from .streams import Event, Stream, StreamContext, current_stream, default_stream, stream
from . import amp  # noqa: F401  (phalanx.cuda.amp.autocast / GradScaler, legacy spellings)
from ..tensor.legacy_types import cuda as _legacy  # phalanx.cuda.FloatTensor, ... (legacy)


def is_initialized():
    return is_available()


def init():
    _require("phalanx.cuda.init()")


def current_device():
    return _device_index(None, "phalanx.cuda.current_device()")


def set_device(device):
    """Make `device` (an int, 'cuda:N' or a phalanx.device) the current GPU; a negative index
    is ignored, as in PyTorch."""
    idx = _parse_index(device, "phalanx.cuda.set_device()")
    if idx < 0:
        return
    _require("phalanx.cuda.set_device()").cuda.Device(idx).use()


def synchronize(device=None):
    """Wait for all work queued on `device` (default: the current GPU)."""
    cp = _require("phalanx.cuda.synchronize()")
    with cp.cuda.Device(_device_index(device, "phalanx.cuda.synchronize()")):
        cp.cuda.runtime.deviceSynchronize()


def get_device_name(device=None):
    cp = _require("phalanx.cuda.get_device_name()")
    props = cp.cuda.runtime.getDeviceProperties(_device_index(device))
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else name


def get_device_capability(device=None):
    cp = _require("phalanx.cuda.get_device_capability()")
    props = cp.cuda.runtime.getDeviceProperties(_device_index(device))
    return props["major"], props["minor"]


def get_device_properties(device=None):
    """CUDA's device properties as a dict (CuPy's form; PyTorch returns an object)."""
    cp = _require("phalanx.cuda.get_device_properties()")
    return cp.cuda.runtime.getDeviceProperties(_device_index(device))


def is_bf16_supported(including_emulation=True):
    # CuPy has no bfloat16 arrays: phalanx.bfloat16 lives on the CPU only
    return False


class device:
    """Context manager that makes a GPU current: `with phalanx.cuda.device(1): ...`.
    `device(None)` and negative indices do nothing, as in PyTorch."""

    def __init__(self, device):
        self.idx = -1 if device is None else _parse_index(device, "phalanx.cuda.device")
        self.prev_idx = -1

    def __enter__(self):
        if self.idx < 0:
            return self
        cp = _require(f"phalanx.cuda.device({self.idx})")
        self.prev_idx = cp.cuda.runtime.getDevice()
        if self.prev_idx != self.idx:
            cp.cuda.runtime.setDevice(self.idx)
        return self

    def __exit__(self, *exc):
        if self.idx >= 0 and self.prev_idx != self.idx:
            _require("phalanx.cuda.device").cuda.runtime.setDevice(self.prev_idx)
        return False


class device_of(device):
    """Make the device of tensor `obj` current (does nothing for CPU tensors)."""

    def __init__(self, obj):
        super().__init__(obj.device.index if obj.device.type == "cuda" else -1)


__all__ = ["Event", "OutOfMemoryError", "Stream", "StreamContext", "current_device",
           "current_stream", "default_stream", "device", "device_count", "device_of",
           "empty_cache", "get_device_capability", "get_device_name", "get_device_properties",
           "get_rng_state", "get_rng_state_all", "init", "initial_seed", "is_available",
           "is_bf16_supported", "is_initialized", "manual_seed", "manual_seed_all",
           "max_memory_allocated", "max_memory_reserved", "mem_get_info", "memory_allocated",
           "memory_reserved", "reset_max_memory_allocated", "reset_peak_memory_stats", "seed",
           "seed_all", "set_device", "set_rng_state", "set_rng_state_all", "stream",
           "synchronize"]

_LEGACY_TYPES = ("BFloat16Tensor", "BoolTensor", "ByteTensor", "CharTensor", "DoubleTensor",
                 "FloatTensor", "HalfTensor", "IntTensor", "LongTensor", "ShortTensor")
globals().update({name: getattr(_legacy, name) for name in _LEGACY_TYPES})
__all__ += list(_LEGACY_TYPES)
