"""`phalanx.backends`: PyTorch's backend switches, answering for what Phalanx really runs.

`cudnn` and `cuda` describe the GPU path (CuPy); `mps` (Apple GPUs) is never available. The
flags are plain attributes, as in PyTorch, so scripts can set them; `cudnn.deterministic`
and `cudnn.benchmark` have nothing to switch today (Phalanx's kernels are NumPy/CuPy's, chosen
once, not autotuned), which is what they promise.
"""
from . import cuda, cudnn, mps  # noqa: F401

__all__ = ["cuda", "cudnn", "mps"]
