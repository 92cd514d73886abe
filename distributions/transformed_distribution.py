"""TransformedDistribution(base, transforms): the law of t_n(...t_1(x)) for x ~ base, with
log_prob by the change of variables (log p_base(x) - sum log|dt/dx|); LogNormal is the
exponential of a Normal. Transforms are elementwise (event_dim 0)."""
from ..tensor import Size
from . import constraints
from .distribution import Distribution
from .normal import Normal
from .transforms import ExpTransform, Transform
from .utils import sum_rightmost


class TransformedDistribution(Distribution):
    arg_constraints = {}

    def __init__(self, base_distribution, transforms, validate_args=None):
        if isinstance(transforms, Transform):
            transforms = [transforms]
        elif not isinstance(transforms, (list, tuple)) or \
                not all(isinstance(t, Transform) for t in transforms):
            raise ValueError(f"transforms must be a Transform or a list of Transforms, but "
                             f"was {transforms!r}")
        for t in transforms:
            if t.event_dim != 0:
                raise NotImplementedError(f"TransformedDistribution: {type(t).__name__} with "
                                          f"event_dim {t.event_dim}; only elementwise "
                                          f"transforms are supported")
        self.base_dist = base_distribution
        self.transforms = list(transforms)
        super().__init__(base_distribution.batch_shape, base_distribution.event_shape,
                         validate_args)

    @property
    def has_rsample(self):
        return self.base_dist.has_rsample

    @constraints.dependent_property
    def support(self):
        return self.transforms[-1].codomain if self.transforms else self.base_dist.support

    def sample(self, sample_shape=Size()):
        x = self.base_dist.sample(sample_shape)
        for t in self.transforms:
            x = t(x)
        return x

    def rsample(self, sample_shape=Size()):
        x = self.base_dist.rsample(sample_shape)
        for t in self.transforms:
            x = t(x)
        return x

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        event_dim = len(self.event_shape)
        log_prob, y = 0.0, value
        for t in reversed(self.transforms):
            x = t.inv(y)
            log_prob = log_prob - sum_rightmost(t.log_abs_det_jacobian(x, y), event_dim)
            y = x
        return log_prob + self.base_dist.log_prob(y)

    def cdf(self, value):
        """For increasing transforms (all of these but an AffineTransform of negative
        scale): the base cdf at the pre-image."""
        for t in reversed(self.transforms):
            value = t.inv(value)
        return self.base_dist.cdf(value)

    def icdf(self, value):
        x = self.base_dist.icdf(value)
        for t in self.transforms:
            x = t(x)
        return x


class LogNormal(TransformedDistribution):
    """exp(X) for X ~ Normal(loc, scale)."""
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        super().__init__(Normal(loc, scale, validate_args=validate_args), ExpTransform(),
                         validate_args=validate_args)

    @property
    def loc(self):
        return self.base_dist.loc

    @property
    def scale(self):
        return self.base_dist.scale

    @property
    def mean(self):
        return (self.loc + self.scale ** 2 / 2).exp()

    @property
    def mode(self):
        return (self.loc - self.scale ** 2).exp()

    @property
    def variance(self):
        s2 = self.scale ** 2
        return s2.expm1() * (2 * self.loc + s2).exp()

    def entropy(self):
        return self.base_dist.entropy() + self.loc
