"""`phalanx.amp`: automatic mixed precision, as `torch.amp`.

`autocast` runs chosen ops in float16/bfloat16 inside a region (amp/autocast_mode.py, policies in
amp/policies.py); `GradScaler` scales the loss so float16 gradients do not underflow and skips
steps whose gradients overflowed (amp/grad_scaler.py).
"""
from .autocast_mode import (autocast, clear_autocast_cache, custom_bwd, custom_fwd,
                            get_autocast_dtype, is_autocast_available, is_autocast_cache_enabled,
                            is_autocast_enabled, set_autocast_cache_enabled, set_autocast_dtype,
                            set_autocast_enabled)
from .autocast_mode import (get_autocast_cpu_dtype, get_autocast_gpu_dtype,  # noqa: F401
                            is_autocast_cpu_enabled, set_autocast_cpu_dtype,
                            set_autocast_cpu_enabled, set_autocast_gpu_dtype)  # torch.* only
from .grad_scaler import GradScaler

__all__ = ["GradScaler", "autocast", "clear_autocast_cache", "custom_bwd", "custom_fwd",
           "get_autocast_dtype",
           "is_autocast_available", "is_autocast_cache_enabled", "is_autocast_enabled",
           "set_autocast_cache_enabled", "set_autocast_dtype", "set_autocast_enabled"]
