"""`phalanx.nn.utils.parametrizations`: PyTorch's parametrization-based weight_norm, through
`parametrize.register_parametrization` (state-dict keys `parametrizations.weight.original0`
for the magnitude g and `original1` for the direction v, as PyTorch's)."""
from ..modules.module import Module
from . import parametrize
from .weight_norm import _weight_norm, norm_except_dim

__all__ = ["weight_norm"]


class _WeightNorm(Module):
    def __init__(self, dim=0):
        super().__init__()
        self.dim = -1 if dim is None else dim

    def forward(self, weight_g, weight_v):
        return _weight_norm(weight_v, weight_g, self.dim)

    def right_inverse(self, weight):
        return norm_except_dim(weight, 2, self.dim), weight


def weight_norm(module, name="weight", dim=0):
    """weight = g * v / ||v|| (the norm over every dim but `dim`), g and v learnt."""
    parametrize.register_parametrization(module, name, _WeightNorm(dim), unsafe=True)
    return module
