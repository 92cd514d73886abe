"""`torch.distributed.fsdp.api`: the enums and config classes of FSDP1's
`FullyShardedDataParallel` (its constructor's arguments and its state-dict settings)."""
from dataclasses import dataclass
from enum import Enum, auto

from ...nn.modules.batchnorm import _BatchNorm

__all__ = ["ShardingStrategy", "BackwardPrefetch", "MixedPrecision", "CPUOffload",
           "StateDictType", "StateDictConfig", "FullStateDictConfig", "LocalStateDictConfig",
           "ShardedStateDictConfig", "OptimStateDictConfig", "FullOptimStateDictConfig",
           "LocalOptimStateDictConfig", "ShardedOptimStateDictConfig", "StateDictSettings"]


class ShardingStrategy(Enum):
    """FULL_SHARD: parameters, gradients and optimizer state sharded (ZeRO-3); SHARD_GRAD_OP:
    the whole parameters kept from forward to backward (ZeRO-2); NO_SHARD: replicated, the
    gradients all-reduced (DDP); HYBRID_SHARD / _HYBRID_SHARD_ZERO2: FULL_SHARD /
    SHARD_GRAD_OP within a node (a 2-D mesh's second dim), replicated across nodes."""
    FULL_SHARD = auto()
    SHARD_GRAD_OP = auto()
    NO_SHARD = auto()
    HYBRID_SHARD = auto()
    _HYBRID_SHARD_ZERO2 = auto()


class BackwardPrefetch(Enum):
    """When backward gathers the next unit's parameters (a scheduling choice: the gradients
    are the same either way)."""
    BACKWARD_PRE = auto()
    BACKWARD_POST = auto()


@dataclass
class MixedPrecision:
    """`param_dtype`: forward and backward compute in it; `reduce_dtype`: the gradients'
    reduction dtype (default: param_dtype); `buffer_dtype`: floating buffers are cast to it
    (state dicts give them back in their own dtype); `cast_forward_inputs`: every unit casts
    its floating inputs to param_dtype, `cast_root_forward_inputs`: the root does;
    `_module_classes_to_ignore`: with an auto_wrap_policy, modules of these classes are
    wrapped on their own in full precision."""
    param_dtype: object = None
    reduce_dtype: object = None
    buffer_dtype: object = None
    keep_low_precision_grads: bool = False
    cast_forward_inputs: bool = False
    cast_root_forward_inputs: bool = True
    _module_classes_to_ignore: tuple = (_BatchNorm,)


@dataclass
class CPUOffload:
    """`offload_params=True`: the sharded parameters, their gradients and the optimizer step
    stay on the CPU."""
    offload_params: bool = False


class StateDictType(Enum):
    """FULL_STATE_DICT: whole tensors under the original names; SHARDED_STATE_DICT: each
    rank's shards (DTensors, for distributed.checkpoint); LOCAL_STATE_DICT: PyTorch's flat
    parameters' shards, which Phalanx does not have."""
    FULL_STATE_DICT = auto()
    LOCAL_STATE_DICT = auto()
    SHARDED_STATE_DICT = auto()


@dataclass
class StateDictConfig:
    offload_to_cpu: bool = False


@dataclass
class FullStateDictConfig(StateDictConfig):
    """`rank0_only=True`: only rank 0 gets the state dict; the others get `{}` (every rank
    still takes part in gathering it)."""
    rank0_only: bool = False


@dataclass
class LocalStateDictConfig(StateDictConfig):
    pass


@dataclass
class ShardedStateDictConfig(StateDictConfig):
    _use_dtensor: bool = False


@dataclass
class OptimStateDictConfig:
    offload_to_cpu: bool = True


@dataclass
class FullOptimStateDictConfig(OptimStateDictConfig):
    rank0_only: bool = False


@dataclass
class LocalOptimStateDictConfig(OptimStateDictConfig):
    offload_to_cpu: bool = False


@dataclass
class ShardedOptimStateDictConfig(OptimStateDictConfig):
    _use_dtensor: bool = False


@dataclass
class StateDictSettings:
    state_dict_type: StateDictType
    state_dict_config: StateDictConfig
    optim_state_dict_config: OptimStateDictConfig
