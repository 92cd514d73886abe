"""MixtureSameFamily(mixture, components): pick a component with the Categorical `mixture`,
then draw from it; the components are one distribution whose rightmost batch dimension
indexes them. log_prob is the logsumexp over components of log weight + log_prob."""
from ..tensor import Size
from . import constraints
from .categorical import Categorical
from .distribution import Distribution


class MixtureSameFamily(Distribution):
    arg_constraints = {}
    has_rsample = False

    def __init__(self, mixture_distribution, component_distribution, validate_args=None):
        if not isinstance(mixture_distribution, Categorical):
            raise ValueError("The Mixture distribution needs to be an instance of "
                             "torch.distributions.Categorical")
        if not isinstance(component_distribution, Distribution):
            raise ValueError("The Component distribution need to be an instance of "
                             "torch.distributions.Distribution")
        mix_batch = tuple(mixture_distribution.batch_shape)
        comp_batch = tuple(component_distribution.batch_shape)
        if not comp_batch:
            raise ValueError("the component distribution needs a batch dimension indexing "
                             "the components")
        k = mixture_distribution._num_events
        if comp_batch[-1] != k:
            raise ValueError(f"`mixture_distribution component` ({k}) does not equal "
                             f"`component_distribution.batch_shape[-1]` ({comp_batch[-1]})")
        for a, b in zip(reversed(mix_batch), reversed(comp_batch[:-1])):
            if a != 1 and b != 1 and a != b:
                raise ValueError(f"`mixture_distribution.batch_shape` ({mix_batch}) is not "
                                 f"compatible with `component_distribution.batch_shape`"
                                 f"({comp_batch})")
        self._mixture_distribution = mixture_distribution
        self._component_distribution = component_distribution
        self._num_component = k
        self._event_ndims = len(component_distribution.event_shape)
        super().__init__(Size(comp_batch[:-1]), component_distribution.event_shape,
                         validate_args)

    @property
    def mixture_distribution(self):
        return self._mixture_distribution

    @property
    def component_distribution(self):
        return self._component_distribution

    @constraints.dependent_property
    def support(self):
        return constraints.MixtureSameFamilyConstraint(self._component_distribution.support)

    def _pad(self, t):
        """Mixture-shaped (..., K) -> (..., K, 1, ..., 1) over the event dimensions."""
        return t.reshape(*t.shape, *([1] * self._event_ndims))

    @property
    def mean(self):
        probs = self._pad(self._mixture_distribution.probs)
        return (probs * self._component_distribution.mean).sum(-1 - self._event_ndims)

    @property
    def variance(self):
        probs = self._pad(self._mixture_distribution.probs)
        dim = -1 - self._event_ndims
        mean_cond_var = (probs * self._component_distribution.variance).sum(dim)
        centred = self._component_distribution.mean - self.mean.unsqueeze(dim)
        return mean_cond_var + (probs * centred ** 2).sum(dim)

    def cdf(self, x):
        x = x.unsqueeze(-1 - self._event_ndims)
        cdf_x = self._component_distribution.cdf(x)
        return (cdf_x * self._mixture_distribution.probs).sum(-1)

    def log_prob(self, x):
        if self._validate_args:
            self._validate_sample(x)
        x = x.unsqueeze(-1 - self._event_ndims)
        log_prob_x = self._component_distribution.log_prob(x)             # (..., K)
        log_mix = self._mixture_distribution.logits.log_softmax(-1)
        return (log_prob_x + log_mix).logsumexp(-1)

    def sample(self, sample_shape=Size()):
        sample_shape = Size(sample_shape if isinstance(sample_shape, (tuple, list))
                            else (int(sample_shape),))
        which = self._mixture_distribution.sample(sample_shape)          # (S..., B...)
        draws = self._component_distribution.sample(sample_shape)        # (S..., B..., K, E...)
        index = which.reshape(*which.shape, 1, *([1] * self._event_ndims))
        index = index.expand(*draws.shape[:-1 - self._event_ndims], 1,
                             *draws.shape[draws.ndim - self._event_ndims:])
        return draws.gather(-1 - self._event_ndims, index).squeeze(-1 - self._event_ndims)
