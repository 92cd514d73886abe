"""`phalanx.utils.dlpack` (torch.utils.dlpack): tensors to and from DLPack capsules, for
zero-copy exchange with NumPy, CuPy, JAX or PyTorch."""
from ..tensor import from_dlpack

__all__ = ["from_dlpack", "to_dlpack"]


def to_dlpack(tensor):
    """A DLPack capsule over the tensor's memory (no copy; the consumer shares it)."""
    return tensor.__dlpack__()
