"""`torch.distributed.algorithms.ddp_comm_hooks.default_hooks`."""
from ...comm_hooks import (allreduce_hook, bf16_compress_hook,  # noqa: F401
                           bf16_compress_wrapper, fp16_compress_hook, fp16_compress_wrapper)
