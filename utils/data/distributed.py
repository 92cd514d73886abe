"""`torch.utils.data.distributed`'s names, from `phalanx.data`."""
from ...data import DistributedSampler

__all__ = ["DistributedSampler"]
