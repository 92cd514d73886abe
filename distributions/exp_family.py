"""ExponentialFamily: the base of distributions with density
p(x; theta) = exp(<t(x), theta> - F(theta) + k(x)). A subclass gives its natural parameters
theta (`_natural_params`), its log-normaliser F (`_log_normalizer`) and E[k(x)]
(`_mean_carrier_measure`); entropy then follows from the Bregman divergence of F,
H = F(theta) - <theta, grad F(theta)> - E[k(x)], with grad F by autograd. kl.py uses the
same identity for two members of one family.
"""
from ..autograd import enable_grad, grad, is_grad_enabled
from .distribution import Distribution


class ExponentialFamily(Distribution):
    @property
    def _natural_params(self):
        raise NotImplementedError(f"{type(self).__name__}._natural_params")

    def _log_normalizer(self, *natural_params):
        raise NotImplementedError(f"{type(self).__name__}._log_normalizer")

    @property
    def _mean_carrier_measure(self):
        raise NotImplementedError(f"{type(self).__name__}._mean_carrier_measure")

    def entropy(self):
        recording = is_grad_enabled()
        with enable_grad():     # grad F needs a graph even under no_grad
            result = -self._mean_carrier_measure
            nparams = [p.detach().requires_grad_() for p in self._natural_params]
            lg_normal = self._log_normalizer(*nparams)
            gradients = grad(lg_normal.sum(), nparams, create_graph=recording)
            result = result + lg_normal
            for theta, g in zip(nparams, gradients):
                result = result - (theta * g).reshape(*self._batch_shape, -1).sum(-1)
        return result if recording else result.detach()
