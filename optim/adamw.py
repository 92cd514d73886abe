"""`torch.optim.adamw`: the module PyTorch defines AdamW in."""
from .adam import AdamW  # noqa: F401

__all__ = ["AdamW"]
