"""`torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook`."""
from ...comm_hooks import PowerSGDState, batched_powerSGD_hook, powerSGD_hook  # noqa: F401
