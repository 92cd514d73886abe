"""`torch.distributed.fsdp.sharded_grad_scaler.ShardedGradScaler`: `GradScaler` for sharded
(FSDP) or data-parallel training: an inf/NaN in any rank's gradients skips the step on every
rank, and float16 gradients (FSDP's mixed precision) are unscaled in place.

    scaler = ShardedGradScaler("cuda")
    scaler.scale(loss).backward()
    scaler.step(optimizer)      # skipped on every rank if one rank's shard overflowed
    scaler.update()
"""
from ...amp.grad_scaler import GradScaler
from ...tensor.tensor import Tensor
from ..collectives import all_reduce

__all__ = ["ShardedGradScaler"]


class ShardedGradScaler(GradScaler):
    """PyTorch's signature (note backoff_factor before growth_factor). `process_group`: the
    ranks whose found-inf flags are summed (default: every rank; None means the same)."""

    def __init__(self, device="cuda", init_scale=2.0 ** 16, backoff_factor=0.5,
                 growth_factor=2.0, growth_interval=2000, enabled=True, process_group=None):
        super().__init__(device, init_scale=init_scale, growth_factor=growth_factor,
                         backoff_factor=backoff_factor, growth_interval=growth_interval,
                         enabled=enabled)
        self.process_group = process_group

    def scale(self, outputs):
        """As GradScaler's, keeping each output's dtype (a float16 loss of FSDP's mixed
        precision stays float16, as PyTorch's)."""
        scaled = super().scale(outputs)
        if isinstance(outputs, Tensor) and isinstance(scaled, Tensor) and \
                scaled.dtype != outputs.dtype:
            return scaled.to(outputs.dtype)
        return scaled

    def _unscale_grads_(self, optimizer, inv_scale, allow_fp16):
        """Float16 gradients allowed; every rank's found-inf flags summed over the group
        (gradients that are not DTensors included: ignored parameters, DDP's)."""
        found = super()._unscale_grads_(optimizer, inv_scale, True)
        for f in found.values():
            all_reduce(Tensor._make(f), group=self.process_group)
        return found
