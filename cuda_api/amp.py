"""`phalanx.cuda.amp`: PyTorch's legacy spellings of `phalanx.amp` for CUDA."""
import warnings

from ..amp import autocast_mode as _amp
from ..amp.legacy import spellings
from ..tensor import dtypes


autocast, GradScaler = spellings("cuda", dtypes.float16)


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
