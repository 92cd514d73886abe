"""GeneralizedPareto(loc, scale, concentration): the law of exceedances over a high
threshold; concentration 0 is the Exponential, > 0 a Pareto, -1 a Uniform. Reparameterised
through its closed inverse cdf (TensorFlow Probability's formulation, as PyTorch's)."""
import math

from ..tensor import Size, broadcast_to, ones_like, rand, where, zeros_like
from . import constraints
from .distribution import Distribution
from .utils import broadcast_all


class GeneralizedPareto(Distribution):
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive,
                       "concentration": constraints.real}
    has_rsample = True

    def __init__(self, loc, scale, concentration, validate_args=None):
        self.loc, self.scale, self.concentration = broadcast_all(loc, scale, concentration)
        super().__init__(self.loc.shape, Size(), validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(GeneralizedPareto, batch_shape, _instance, "loc", "scale",
                                   "concentration")

    def _safe_concentration(self):
        """(concentration ~ 0, concentration with those entries set to 1): the closed forms
        divide by it, the limits at 0 take over there."""
        c = self.concentration
        eq_zero = c.isclose(zeros_like(c))
        return eq_zero, where(eq_zero, ones_like(c), c)

    def rsample(self, sample_shape=Size()):
        shape = self._extended_shape(sample_shape)
        return self.icdf(rand(shape, dtype=self.loc.dtype, device=self.loc.device))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = self._z(value)
        eq_zero, c = self._safe_concentration()
        y = 1 / c + ones_like(z)
        nonzero = where(y == 0, y, y * (c * z).log1p())
        return -self.scale.log() - where(eq_zero, z, nonzero)

    def log_survival_function(self, value):
        """log(1 - cdf(value))."""
        if self._validate_args:
            self._validate_sample(value)
        z = self._z(value)
        eq_zero, c = self._safe_concentration()
        return where(eq_zero, -z, -(c * z).log1p() / c)

    def log_cdf(self, value):
        return (-self.log_survival_function(value).exp()).log1p()

    def cdf(self, value):
        return self.log_cdf(value).exp()

    def icdf(self, value):
        eq_zero, c = self._safe_concentration()
        log_u = (-value).log1p()
        return where(eq_zero, self.loc - self.scale * log_u,
                     self.loc + self.scale / c * (-c * log_u).expm1())

    def _z(self, x):
        return (x - self.loc) / self.scale

    @property
    def mean(self):
        """nan where concentration >= 1."""
        valid = self.concentration < 1
        c = where(valid, self.concentration, 0.5)
        return where(valid, self.loc + self.scale / (1 - c), math.nan)

    @property
    def variance(self):
        """nan where concentration >= 1/2."""
        valid = self.concentration < 0.5
        c = where(valid, self.concentration, 0.25)
        return where(valid, self.scale ** 2 / ((1 - c) ** 2 * (1 - 2 * c)), math.nan)

    def entropy(self):
        return broadcast_to(self.scale.log() + self.concentration + 1, self._batch_shape)

    @property
    def mode(self):
        return self.loc

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        lower = self.loc
        bounded = self.concentration < 0        # an upper end only for concentration < 0
        c = where(bounded, self.concentration, -1.0)
        return constraints.interval(lower, where(bounded, lower - self.scale / c, math.inf))
