"""Graph-level hooks, under the names PyTorch users look for (`torch.autograd.graph`)."""
from .engine import queue_callback, register_backward_start_hook
from .function import Node
from .saved_hooks import disable_saved_tensors_hooks, save_on_cpu, saved_tensors_hooks

__all__ = ["Node", "queue_callback", "register_backward_start_hook", "saved_tensors_hooks",
           "save_on_cpu", "disable_saved_tensors_hooks"]
