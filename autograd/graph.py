"""Graph-level hooks, under the names PyTorch users look for (`torch.autograd.graph`)."""
from .engine import queue_callback, register_backward_start_hook
from .function import Node

__all__ = ["Node", "queue_callback", "register_backward_start_hook"]
