"""`torch.utils.hooks`: the handle every `register_*hook` returns, at PyTorch's path."""
from ..autograd import RemovableHandle

__all__ = ["RemovableHandle"]
