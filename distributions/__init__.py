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
from .categorical import Categorical
from .distribution import Distribution
from .exponential import Exponential
from .independent import Independent
from .kl import kl_divergence, register_kl
from .laplace import Laplace
from .multivariate_normal import MultivariateNormal
from .normal import Normal
from .one_hot_categorical import OneHotCategorical
from .uniform import Uniform

__all__ = ["Bernoulli", "Categorical", "Distribution", "Exponential", "Independent", "Laplace",
           "MultivariateNormal", "Normal", "OneHotCategorical", "Uniform", "constraints",
           "kl_divergence", "register_kl"]
