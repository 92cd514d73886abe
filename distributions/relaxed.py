"""Relaxed (continuous, reparameterised) stand-ins for discrete draws, the Gumbel-softmax /
Concrete distributions: RelaxedOneHotCategorical (points of the simplex) and RelaxedBernoulli
(points of (0, 1)), each the transform of a log-space base with a closed-form density.

    ExpRelaxedCategorical    log-softmax((logits + Gumbel noise) / temperature)
    LogitRelaxedBernoulli    (logits + Logistic noise) / temperature
"""
import numpy as np

from ..tensor import Size, rand, softplus
from . import constraints
from .bernoulli import BinaryParameters, _probs_or_logits
from .categorical import Categorical
from .distribution import Distribution
from .transformed_distribution import TransformedDistribution
from .transforms import ExpTransform, SigmoidTransform
from .utils import broadcast_all, clamp_probs


def _uniform(shape, like):
    eps = float(np.finfo(like.dtype.np).eps)
    return rand(shape, dtype=like.dtype, device=like.device).clamp(eps, 1 - eps)


class ExpRelaxedCategorical(Distribution):
    arg_constraints = {"probs": constraints.simplex,
                       "logits": constraints.independent(constraints.real, 1)}
    support = constraints.independent(constraints.real, 1)
    has_rsample = True

    def __init__(self, temperature, probs=None, logits=None, validate_args=None):
        self._categorical = Categorical(probs, logits)
        self.temperature = temperature
        super().__init__(self._categorical.batch_shape, self._categorical.param_shape[-1:],
                         validate_args)

    @property
    def logits(self):
        return self._categorical.logits

    @property
    def probs(self):
        return self._categorical.probs

    def rsample(self, sample_shape=Size()):
        shape = self._extended_shape(sample_shape)
        gumbels = -(-_uniform(shape, self.logits).log()).log()
        scores = (self.logits + gumbels) / self.temperature
        return scores - scores.logsumexp(-1, keepdim=True)

    def log_prob(self, value):
        k = self._categorical._num_events
        if self._validate_args:
            self._validate_sample(value)
        temperature = self.temperature if hasattr(self.temperature, "log") else \
            self.logits.new_full((), float(self.temperature))
        log_scale = temperature.new_full(tuple(temperature.shape), float(k)).lgamma() \
            + temperature.log() * (k - 1)
        score = self.logits - value * temperature
        return (score - score.logsumexp(-1, keepdim=True)).sum(-1) + log_scale


class _Relaxed(TransformedDistribution):
    """A relaxed distribution: its base's draws through a transform, the base's parameters."""
    has_rsample = True

    @property
    def temperature(self):
        return self.base_dist.temperature

    @property
    def logits(self):
        return self.base_dist.logits

    @property
    def probs(self):
        return self.base_dist.probs


class RelaxedOneHotCategorical(_Relaxed):
    arg_constraints = {"probs": constraints.simplex,
                       "logits": constraints.independent(constraints.real, 1)}
    support = constraints.simplex

    def __init__(self, temperature, probs=None, logits=None, validate_args=None):
        base = ExpRelaxedCategorical(temperature, probs, logits, validate_args=validate_args)
        super().__init__(base, ExpTransform(), validate_args=validate_args)


class LogitRelaxedBernoulli(BinaryParameters, Distribution):
    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = constraints.real
    has_rsample = True

    def __init__(self, temperature, probs=None, logits=None, validate_args=None):
        _probs_or_logits(probs, logits)
        self.temperature = temperature
        if probs is not None:
            (self.probs,) = broadcast_all(probs)
        else:
            (self.logits,) = broadcast_all(logits)
        param = self.probs if probs is not None else self.logits
        super().__init__(param.shape, Size(), validate_args)

    def rsample(self, sample_shape=Size()):
        shape = self._extended_shape(sample_shape)
        probs = clamp_probs(self.probs.expand(*shape))
        u = _uniform(shape, probs)
        return (u.log() - (-u).log1p() + probs.log() - (-probs).log1p()) / self.temperature

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        logits, value = broadcast_all(self.logits, value)
        temperature = self.temperature
        diff = logits - value * temperature
        log_t = temperature.log() if hasattr(temperature, "log") else float(np.log(temperature))
        return log_t + diff - 2 * softplus(diff, 1.0, float("inf"))


class RelaxedBernoulli(_Relaxed):
    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = constraints.unit_interval

    def __init__(self, temperature, probs=None, logits=None, validate_args=None):
        base = LogitRelaxedBernoulli(temperature, probs, logits, validate_args=validate_args)
        super().__init__(base, SigmoidTransform(), validate_args=validate_args)
