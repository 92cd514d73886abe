"""`torch.distributed.algorithms.ddp_comm_hooks.post_localSGD_hook`."""
from ...comm_hooks import PostLocalSGDState, post_localSGD_hook  # noqa: F401
