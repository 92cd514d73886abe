"""`torch.distributed.algorithms.ddp_comm_hooks`: PyTorch's module paths to the hooks of
`phalanx.distributed.comm_hooks`, and `DDPCommHookType` / `register_ddp_comm_hook`, which
register one by name (`register_ddp_comm_hook(DDPCommHookType.FP16_COMPRESS, model)`)."""
import enum
from functools import partial

from . import debugging_hooks, default_hooks, powerSGD_hook, quantization_hooks

__all__ = ["DDPCommHookType", "register_ddp_comm_hook"]
# a partial as an Enum value must be marked a member from Python 3.13 (3.10 has no marker)
_member = getattr(enum, "member", lambda value: value)


def _plain(comm_hook, model, state):
    model.register_comm_hook(state, comm_hook)


def _power_sgd(comm_hook, model, state, matrix_approximation_rank, start_powerSGD_iter=1_000):
    """`state` is the process group here; the PowerSGDState is made with PyTorch's values."""
    model.register_comm_hook(
        powerSGD_hook.PowerSGDState(process_group=state,
                                    matrix_approximation_rank=matrix_approximation_rank,
                                    start_powerSGD_iter=start_powerSGD_iter), comm_hook)


class DDPCommHookType(enum.Enum):
    """The built-in hooks by name; `.value(model=..., state=process_group)` registers one."""
    ALLREDUCE = _member(partial(_plain, comm_hook=default_hooks.allreduce_hook))
    FP16_COMPRESS = _member(partial(_plain, comm_hook=default_hooks.fp16_compress_hook))
    BF16_COMPRESS = _member(partial(_plain, comm_hook=default_hooks.bf16_compress_hook))
    QUANTIZE_PER_TENSOR = _member(
        partial(_plain, comm_hook=quantization_hooks.quantization_pertensor_hook))
    QUANTIZE_PER_CHANNEL = _member(
        partial(_plain, comm_hook=quantization_hooks.quantization_perchannel_hook))
    POWER_SGD = _member(partial(_power_sgd, comm_hook=powerSGD_hook.powerSGD_hook,
                                    matrix_approximation_rank=1))
    POWER_SGD_RANK2 = _member(partial(_power_sgd, comm_hook=powerSGD_hook.powerSGD_hook,
                                          matrix_approximation_rank=2))
    BATCHED_POWER_SGD = _member(
        partial(_power_sgd, comm_hook=powerSGD_hook.batched_powerSGD_hook,
                matrix_approximation_rank=1))
    BATCHED_POWER_SGD_RANK2 = _member(
        partial(_power_sgd, comm_hook=powerSGD_hook.batched_powerSGD_hook,
                matrix_approximation_rank=2))
    NOOP = _member(partial(_plain, comm_hook=debugging_hooks.noop_hook))


def register_ddp_comm_hook(comm_hook_type, model, state=None):
    """Register the hook `comm_hook_type` names on the DDP `model`; `state` is the process
    group (None: the world)."""
    comm_hook_type.value(model=model, state=state)
