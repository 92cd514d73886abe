"""`torch.distributed.tensor`: tensors laid out over a device mesh (see dtensor.py)."""
from ..device_mesh import DeviceMesh, init_device_mesh
from . import placement_types
from .dtensor import DTensor, distribute_tensor
from .factories import empty, full, ones, rand, randn, zeros
from .placement_types import Partial, Placement, Replicate, Shard

__all__ = ["DTensor", "DeviceMesh", "Partial", "Placement", "Replicate", "Shard",
           "distribute_tensor", "empty", "full", "init_device_mesh", "ones",
           "placement_types", "rand", "randn", "zeros"]
