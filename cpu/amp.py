"""`phalanx.cpu.amp`: PyTorch's legacy spellings of `phalanx.amp` for the CPU; each warns, as
PyTorch's do, and names the current form."""
import warnings

from ..amp.autocast_mode import autocast as _base_autocast
from ..amp.grad_scaler import GradScaler as _BaseGradScaler
from ..tensor import dtypes


class autocast(_base_autocast):
    def __init__(self, enabled=True, dtype=dtypes.bfloat16, cache_enabled=True):
        warnings.warn("`phalanx.cpu.amp.autocast(args...)` is deprecated. Please use "
                      "`phalanx.amp.autocast('cpu', args...)` instead.", FutureWarning,
                      stacklevel=2)
        super().__init__("cpu", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)


class GradScaler(_BaseGradScaler):
    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        warnings.warn("`phalanx.cpu.amp.GradScaler(args...)` is deprecated. Please use "
                      "`phalanx.amp.GradScaler('cpu', args...)` instead.", FutureWarning,
                      stacklevel=2)
        super().__init__("cpu", init_scale=init_scale, growth_factor=growth_factor,
                         backoff_factor=backoff_factor, growth_interval=growth_interval,
                         enabled=enabled)
