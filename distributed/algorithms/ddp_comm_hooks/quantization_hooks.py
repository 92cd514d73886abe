"""`torch.distributed.algorithms.ddp_comm_hooks.quantization_hooks`."""
from ...comm_hooks import quantization_perchannel_hook, quantization_pertensor_hook  # noqa: F401
