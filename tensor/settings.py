"""Process-wide settings PyTorch scripts set or query: the default device and dtype (and the
legacy default tensor type), deterministic algorithms, the float32 matmul precision, denormal
flushing, inter-op threads, and introspection helpers (typename, is_storage, ...)."""
import warnings

from ..autograd import anomaly
from . import backend, dtypes
from .backend import CPU, Device
from .tensor import Tensor, _parse_type_name

_MATMUL_PRECISIONS = ("highest", "high", "medium")
_matmul_precision = "highest"


from .default_device import get_default_device, set_default_device  # noqa: E402,F401


def set_float32_matmul_precision(precision):
    """PyTorch's setting *allows* faster, less precise float32 matmuls ('high': TF32 or
    bfloat16x3; 'medium': bfloat16) where the hardware has them; Phalanx always computes at
    full float32 precision, which every setting permits."""
    global _matmul_precision
    if precision not in _MATMUL_PRECISIONS:
        raise RuntimeError(f"Invalid precision {precision!r}: expected one of "
                           f"{', '.join(_MATMUL_PRECISIONS)}")
    _matmul_precision = precision


def get_float32_matmul_precision():
    return _matmul_precision


def set_flush_denormal(mode):
    """Returns whether the request can be met, as PyTorch does: NumPy/CuPy keep denormal
    numbers, so turning flushing off succeeds and turning it on is unsupported (False)."""
    return not mode


def is_vulkan_available():
    return False


def is_storage(obj):
    """Phalanx has no storage objects (a tensor owns its array)."""
    return False


def typename(obj):
    """'phalanx.FloatTensor' for a tensor (its `type()`), else the qualified type name."""
    if isinstance(obj, Tensor):
        return obj.type()
    if hasattr(obj, "__qualname__"):
        module, qualname = getattr(obj, "__module__", "") or "", obj.__qualname__
    else:
        module, qualname = type(obj).__module__, type(obj).__qualname__
    return qualname if module in ("", "builtins") else f"{module}.{qualname}"


def set_default_tensor_type(t):
    """The legacy spelling of set_default_dtype: 'torch.DoubleTensor', phalanx.FloatTensor,
    ... (a CUDA type would also move the default device, which Phalanx does not have)."""
    warnings.warn("torch.set_default_tensor_type() is deprecated as of PyTorch 2.1, please use "
                  "set_default_dtype() and set_default_device() as alternatives.",
                  UserWarning, stacklevel=2)
    if isinstance(t, str):
        dtype, on_gpu = _parse_type_name(t)
    else:
        dtype, on_gpu = getattr(t, "dtype", None), False
        if not isinstance(dtype, dtypes.dtype):
            raise TypeError(f"invalid type object: {t!r}; pass e.g. 'torch.DoubleTensor' or "
                            f"phalanx.DoubleTensor")
    if on_gpu:
        raise NotImplementedError(f"set_default_tensor_type({t!r}): a CUDA default tensor type "
                                  f"would make the GPU the default device, which Phalanx does "
                                  f"not support; create tensors with device='cuda'")
    if not dtype.is_floating_point:
        raise TypeError(f"only floating-point types are supported as the default type, got "
                        f"{t!r}")
    dtypes.set_default_dtype(dtype)


# ---- deterministic algorithms --------------------------------------------------------------
_deterministic = {"mode": False, "warn_only": False}


def _gpu_usable():
    try:
        backend.cupy()
    except RuntimeError:
        return False
    return True


def use_deterministic_algorithms(mode, *, warn_only=False):
    """Every Phalanx op on the CPU is deterministic, so the mode holds there. On a GPU, CuPy's
    atomic scatter-adds (the backward of indexing and embedding) sum in no fixed order and
    nothing checks for them, so turning the mode on where a GPU is usable raises (or, with
    warn_only=True, warns) instead of promising what it cannot keep."""
    if mode and _gpu_usable():
        message = ("use_deterministic_algorithms(True): on a GPU, Phalanx's atomic "
                   "scatter-adds (backward of indexing and embedding) are nondeterministic and "
                   "are not detected")
        if not warn_only:
            raise NotImplementedError(message + "; pass warn_only=True to go on regardless")
        warnings.warn(message, UserWarning, stacklevel=2)
    _deterministic.update(mode=bool(mode), warn_only=bool(warn_only))


def are_deterministic_algorithms_enabled():
    return _deterministic["mode"]


def is_deterministic_algorithms_warn_only_enabled():
    return _deterministic["warn_only"]


_DEBUG_MODES = {"default": 0, "warn": 1, "error": 2}


def set_deterministic_debug_mode(debug_mode):
    """0/'default': off; 1/'warn': on, warning only; 2/'error': on."""
    if isinstance(debug_mode, str):
        if debug_mode not in _DEBUG_MODES:
            raise RuntimeError(f"invalid value of debug_mode {debug_mode!r}; expected one of "
                               f"'default', 'warn', 'error'")
        debug_mode = _DEBUG_MODES[debug_mode]
    if debug_mode not in (0, 1, 2):
        raise RuntimeError(f"invalid value of debug_mode, expected 0, 1, or 2, but got "
                           f"{debug_mode}")
    use_deterministic_algorithms(debug_mode != 0, warn_only=debug_mode == 1)


def get_deterministic_debug_mode():
    if not _deterministic["mode"]:
        return 0
    return 1 if _deterministic["warn_only"] else 2


# ---- anomaly mode (the autograd switch under torch's top-level names) ------------------------
is_anomaly_enabled = anomaly.is_anomaly_enabled
is_anomaly_check_nan_enabled = anomaly.is_anomaly_check_nan_enabled
set_anomaly_enabled = anomaly.set_anomaly_enabled


# ---- threads, tensors ----------------------------------------------------------------------
_interop_threads = [1]


def get_num_interop_threads():
    """PyTorch's inter-op pool only runs work forked by TorchScript; Phalanx has no such forks
    and runs every op on the calling thread, so the pool's size changes nothing it does."""
    return _interop_threads[0]


def set_num_interop_threads(num):
    if int(num) < 1:
        raise RuntimeError(f"Expected positive number of threads, got {num}")
    _interop_threads[0] = int(num)


def is_inference(input):
    return input.is_inference()


def get_device(input):
    """-1 for a CPU tensor, the GPU index otherwise."""
    return input.get_device()


__all__ = ["are_deterministic_algorithms_enabled", "get_default_device", "get_device",
           "get_deterministic_debug_mode", "get_num_interop_threads", "is_inference",
           "is_anomaly_check_nan_enabled", "is_anomaly_enabled", "set_anomaly_enabled",
           "is_deterministic_algorithms_warn_only_enabled", "set_default_tensor_type",
           "set_deterministic_debug_mode", "set_num_interop_threads",
           "use_deterministic_algorithms",
           "get_default_device", "get_float32_matmul_precision", "is_storage",
           "is_vulkan_available", "set_default_device", "set_float32_matmul_precision",
           "set_flush_denormal", "typename"]
