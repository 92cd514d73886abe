"""`torch.distributed.algorithms.ddp_comm_hooks`: `default_hooks` (allreduce_hook,
fp16_compress_hook) and `powerSGD_hook` (PowerSGDState, powerSGD_hook), from
`phalanx.distributed.comm_hooks`."""
from . import default_hooks, powerSGD_hook  # noqa: F401
