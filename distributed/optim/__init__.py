"""`torch.distributed.optim`: `ZeroRedundancyOptimizer` (see `phalanx.distributed.zero`) and
`PostLocalSGDOptimizer`, which averages parameters after each step of the optimizer it wraps
(local SGD). PyTorch's `DistributedOptimizer` works over RPC, which Phalanx does not have."""
import warnings

from ...optim.optimizer import Optimizer
from ..zero import ZeroRedundancyOptimizer

__all__ = ["DistributedOptimizer", "PostLocalSGDOptimizer", "ZeroRedundancyOptimizer"]


class PostLocalSGDOptimizer(Optimizer):
    """`optim.step()`, then `averager.average_parameters(param groups)`; `state_dict()` adds
    the averager's step counter (`"step"`), which `load_state_dict` restores."""

    def __init__(self, optim, averager):
        self._init_hooks()
        self.optim = optim
        self.param_groups = self.optim.param_groups
        self.averager = averager

    @property
    def state(self):
        return self.optim.state

    def __repr__(self):
        return self.optim.__repr__()

    def state_dict(self):
        state = self.optim.state_dict()
        state["step"] = self.averager.step
        return state

    def load_state_dict(self, state_dict):
        self.optim.load_state_dict(state_dict)
        if "step" in state_dict:
            self.averager.step = state_dict["step"]
        else:
            warnings.warn("Loaded state dict does not contain a step counter for an averager. "
                          "Setting step counter to 0.")
            self.averager.step = 0

    def step(self):
        self.optim.step()
        self.averager.average_parameters(params=self.param_groups)

    def zero_grad(self, set_to_none=True):
        self.optim.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group):
        self.optim.add_param_group(param_group)


class DistributedOptimizer:
    """PyTorch's RPC-based optimizer over remote parameters: not available."""

    def __init__(self, optimizer_class, params_rref, *args, **kwargs):
        raise NotImplementedError(
            "DistributedOptimizer works on remote parameters over torch.distributed.rpc, which "
            "Phalanx does not have; in data-parallel training use a local optimizer on the "
            "DistributedDataParallel model, or ZeroRedundancyOptimizer to shard its state")
