"""`torch.distributed._composable`'s path, where PyTorch 2.4-2.5 scripts import FSDP2 from
(`_composable.fsdp.fully_shard`), and its composable activation checkpointing
(`checkpoint(module)`: the module itself recomputes its activations in backward, its names
unchanged)."""
from .checkpoint_activation import checkpoint

__all__ = ["checkpoint"]
