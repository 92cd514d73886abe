"""`phalanx.cuda.amp`: PyTorch's legacy spellings of `phalanx.amp` for CUDA; each warns, as
PyTorch's do, and names the current form."""
import warnings

from ..amp import autocast_mode as _amp
from ..amp.autocast_mode import autocast as _base_autocast
from ..amp.grad_scaler import GradScaler as _BaseGradScaler
from ..tensor import dtypes


class autocast(_base_autocast):
    def __init__(self, enabled=True, dtype=dtypes.float16, cache_enabled=True):
        warnings.warn("`phalanx.cuda.amp.autocast(args...)` is deprecated. Please use "
                      "`phalanx.amp.autocast('cuda', args...)` instead.", FutureWarning,
                      stacklevel=2)
        super().__init__("cuda", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)


class GradScaler(_BaseGradScaler):
    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        warnings.warn("`phalanx.cuda.amp.GradScaler(args...)` is deprecated. Please use "
                      "`phalanx.amp.GradScaler('cuda', args...)` instead.", FutureWarning,
                      stacklevel=2)
        super().__init__("cuda", init_scale=init_scale, growth_factor=growth_factor,
                         backoff_factor=backoff_factor, growth_interval=growth_interval,
                         enabled=enabled)


def custom_fwd(fwd=None, *, cast_inputs=None):
    warnings.warn("`phalanx.cuda.amp.custom_fwd(args...)` is deprecated. Please use "
                  "`phalanx.amp.custom_fwd(args..., device_type='cuda')` instead.",
                  FutureWarning, stacklevel=2)
    return _amp.custom_fwd(fwd, device_type="cuda", cast_inputs=cast_inputs)


def custom_bwd(bwd):
    warnings.warn("`phalanx.cuda.amp.custom_bwd(args...)` is deprecated. Please use "
                  "`phalanx.amp.custom_bwd(args..., device_type='cuda')` instead.",
                  FutureWarning, stacklevel=2)
    return _amp.custom_bwd(bwd, device_type="cuda")
