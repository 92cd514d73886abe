"""`phalanx.cpu.amp`: PyTorch's legacy spellings of `phalanx.amp` for the CPU."""
from ..amp.legacy import spellings
from ..tensor import dtypes

autocast, GradScaler = spellings("cpu", dtypes.bfloat16)
