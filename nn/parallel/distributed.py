"""`torch.nn.parallel.distributed`: where PyTorch defines DistributedDataParallel."""
from ...distributed.ddp import DistributedDataParallel  # noqa: F401

__all__ = ["DistributedDataParallel"]
