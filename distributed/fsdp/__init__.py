"""`torch.distributed.fsdp`: fully sharded data parallel, PyTorch's FSDP2 API (fully_shard)."""
from .fully_shard import (CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, OffloadPolicy,
                          UnshardHandle, fully_shard, register_fsdp_forward_method)

__all__ = ["CPUOffloadPolicy", "FSDPModule", "MixedPrecisionPolicy", "OffloadPolicy",
           "UnshardHandle", "fully_shard", "register_fsdp_forward_method"]


def __getattr__(name):
    if name in ("FullyShardedDataParallel", "ShardingStrategy", "StateDictType",
                "BackwardPrefetch", "CPUOffload", "MixedPrecision"):
        raise AttributeError(f"phalanx.distributed.fsdp has no {name}: Phalanx implements "
                             f"FSDP2's fully_shard(module), not the FSDP1 wrapper class")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
