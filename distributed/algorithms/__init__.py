"""PyTorch's `torch.distributed.algorithms` paths: the join context manager for uneven inputs
(`join.py`), and DDP's communication hooks so that scripts importing them from there run
unchanged (the hooks themselves live in `phalanx.distributed.comm_hooks`)."""
from .join import Join, Joinable, JoinHook

__all__ = ["Join", "Joinable", "JoinHook"]
