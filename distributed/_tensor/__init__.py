"""`torch.distributed._tensor`: the older path of `torch.distributed.tensor`, which code
written for PyTorch 2.0–2.3 still imports."""
from ..tensor import *  # noqa: F401,F403
from ..tensor import __all__  # noqa: F401
from . import device_mesh, placement_types  # noqa: F401
