"""`phalanx.distributions`: probability distributions with sampling, reparameterised
sampling (`rsample`, gradients flow to the parameters), `log_prob`, `entropy` and closed-form
`kl_divergence` — PyTorch's `torch.distributions` API.

    from phalanx.distributions import Categorical
    dist = Categorical(logits=policy(state))
    action = dist.sample()
    loss = -(dist.log_prob(action) * advantage).sum()

Draws come from phalanx's generators, so `phalanx.manual_seed` makes them reproducible.
Arguments are validated (PyTorch's default, off under `python -O`), with PyTorch's errors;
`Distribution.set_default_validate_args(False)` turns validation off.
"""
from . import constraints
from .bernoulli import Bernoulli
from .binomial import Binomial
from .categorical import Categorical
from .cauchy import Cauchy
from .distribution import Distribution
from .exponential import Exponential
from .gamma import Beta, Dirichlet, Gamma
from .independent import Independent
from .kl import kl_divergence, register_kl
from .laplace import Laplace
from .mixture_same_family import MixtureSameFamily
from .multivariate_normal import MultivariateNormal
from .normal import Normal
from .one_hot_categorical import OneHotCategorical
from .poisson import Poisson
from .relaxed import RelaxedBernoulli, RelaxedOneHotCategorical
from .student_t import Chi2, StudentT
from . import transforms
from .transformed_distribution import LogNormal, TransformedDistribution
from .uniform import Uniform

__all__ = ["Bernoulli", "Beta", "Binomial", "Categorical", "Cauchy", "Dirichlet", "Distribution",
           "Exponential", "Gamma", "Independent", "Laplace", "LogNormal", "MixtureSameFamily", "MultivariateNormal",
           "Normal", "OneHotCategorical", "Poisson", "StudentT", "Chi2",
           "RelaxedBernoulli", "RelaxedOneHotCategorical",
           "TransformedDistribution", "Uniform",
           "constraints", "kl_divergence", "register_kl", "transforms"]
