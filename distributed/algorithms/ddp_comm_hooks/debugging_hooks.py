"""`torch.distributed.algorithms.ddp_comm_hooks.debugging_hooks`."""
from ...comm_hooks import noop_hook  # noqa: F401
