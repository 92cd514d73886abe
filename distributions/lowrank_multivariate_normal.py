"""LowRankMultivariateNormal(loc, cov_factor, cov_diag): a multivariate normal whose
covariance is W W^T + diag(D), with W of shape (n, m), m small; reparameterised as
loc + W eps_m + sqrt(D) eps_n.
Its log_prob and entropy need only the m x m "capacitance" C = I + W^T D^-1 W (Woodbury's
identity for the inverse, the matrix determinant lemma for det = det C * prod D), never an
n x n factorisation.
"""
import math

from ..tensor import Size, broadcast_tensors, eye, randn
from . import constraints
from ._linalg import cholesky, diagonal, solve_triangular
from .distribution import Distribution
from .multivariate_normal import batch_mahalanobis
from .utils import lazy_property

_LOG_2PI = math.log(2 * math.pi)


def capacitance_tril(cov_factor, cov_diag):
    """The Cholesky factor of C = I + W^T D^-1 W."""
    m = cov_factor.shape[-1]
    capacitance = (cov_factor.mT / cov_diag.unsqueeze(-2)) @ cov_factor
    return cholesky(capacitance + eye(m, dtype=cov_factor.dtype, device=cov_factor.device))


def lowrank_logdet(cov_diag, cap_tril):
    """log det(W W^T + D) = log det C + sum log D."""
    return 2 * diagonal(cap_tril).log().sum(-1) + cov_diag.log().sum(-1)


def lowrank_mahalanobis(cov_factor, cov_diag, x, cap_tril):
    """x^T (W W^T + D)^-1 x = x^T D^-1 x - || L_C^-1 W^T D^-1 x ||^2 (Woodbury)."""
    wt_dinv_x = ((cov_factor.mT / cov_diag.unsqueeze(-2)) @ x.unsqueeze(-1)).squeeze(-1)
    return (x ** 2 / cov_diag).sum(-1) - batch_mahalanobis(cap_tril, wt_dinv_x)


class LowRankMultivariateNormal(Distribution):
    arg_constraints = {"loc": constraints.real_vector,
                       "cov_factor": constraints.independent(constraints.real, 2),
                       "cov_diag": constraints.independent(constraints.positive, 1)}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, cov_factor, cov_diag, validate_args=None):
        if loc.ndim < 1:
            raise ValueError("loc must be at least one-dimensional.")
        event_shape = tuple(loc.shape[-1:])
        if cov_factor.ndim < 2:
            raise ValueError("cov_factor must be at least two-dimensional, with optional "
                             "leading batch dimensions")
        if tuple(cov_factor.shape[-2:-1]) != event_shape:
            raise ValueError(f"cov_factor must be a batch of matrices with shape "
                             f"{event_shape[0]} x m")
        if tuple(cov_diag.shape[-1:]) != event_shape:
            raise ValueError(f"cov_diag must be a batch of vectors with shape "
                             f"{Size(event_shape)}")
        try:
            loc_, self.cov_factor, cov_diag_ = broadcast_tensors(
                loc.unsqueeze(-1), cov_factor, cov_diag.unsqueeze(-1))
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"Incompatible batch shapes: loc {loc.shape}, cov_factor "
                             f"{cov_factor.shape}, cov_diag {cov_diag.shape}") from e
        self.loc, self.cov_diag = loc_[..., 0], cov_diag_[..., 0]
        self._unbroadcasted_cov_factor = cov_factor
        self._unbroadcasted_cov_diag = cov_diag
        self._capacitance_tril = capacitance_tril(cov_factor, cov_diag)
        super().__init__(self.loc.shape[:-1], Size(event_shape), validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LowRankMultivariateNormal, _instance)
        loc_shape = tuple(batch_shape) + tuple(self.event_shape)
        new.loc = self.loc.expand(loc_shape)
        new.cov_diag = self.cov_diag.expand(loc_shape)
        new.cov_factor = self.cov_factor.expand(loc_shape + tuple(self.cov_factor.shape[-1:]))
        new._unbroadcasted_cov_factor = self._unbroadcasted_cov_factor
        new._unbroadcasted_cov_diag = self._unbroadcasted_cov_diag
        new._capacitance_tril = self._capacitance_tril
        Distribution.__init__(new, Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _full(self, value, event_dims=1):
        return value.expand(tuple(self._batch_shape) + tuple(self._event_shape) * event_dims)

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @lazy_property
    def variance(self):
        w, d = self._unbroadcasted_cov_factor, self._unbroadcasted_cov_diag
        return self._full((w ** 2).sum(-1) + d)

    @lazy_property
    def scale_tril(self):
        # W W^T + D = D^1/2 (I + D^-1/2 W W^T D^-1/2) D^1/2, so L = D^1/2 chol(K)
        n = self._event_shape[0]
        d_sqrt = self._unbroadcasted_cov_diag.sqrt().unsqueeze(-1)
        w = self._unbroadcasted_cov_factor / d_sqrt
        k = w @ w.mT + eye(n, dtype=w.dtype, device=w.device)
        return self._full(d_sqrt * cholesky(k), 2)

    @lazy_property
    def covariance_matrix(self):
        w, d = self._unbroadcasted_cov_factor, self._unbroadcasted_cov_diag
        return self._full(w @ w.mT + d.diag_embed(), 2)

    @lazy_property
    def precision_matrix(self):
        w, d = self._unbroadcasted_cov_factor, self._unbroadcasted_cov_diag
        a = solve_triangular(self._capacitance_tril, w.mT / d.unsqueeze(-2), upper=False)
        return self._full(d.reciprocal().diag_embed() - a.mT @ a, 2)

    def rsample(self, sample_shape=Size()):
        shape = tuple(self._extended_shape(sample_shape))
        w_shape = shape[:-1] + tuple(self.cov_factor.shape[-1:])
        eps_w = randn(w_shape, dtype=self.loc.dtype, device=self.loc.device)
        eps_d = randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return (self.loc + (self._unbroadcasted_cov_factor @ eps_w.unsqueeze(-1)).squeeze(-1)
                + self._unbroadcasted_cov_diag.sqrt() * eps_d)

    def _logdet(self):
        return lowrank_logdet(self._unbroadcasted_cov_diag, self._capacitance_tril)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        m = lowrank_mahalanobis(self._unbroadcasted_cov_factor, self._unbroadcasted_cov_diag,
                                value - self.loc, self._capacitance_tril)
        return -0.5 * (self._event_shape[0] * _LOG_2PI + self._logdet() + m)

    def entropy(self):
        h = 0.5 * (self._event_shape[0] * (1.0 + _LOG_2PI) + self._logdet())
        return h if len(self._batch_shape) == 0 else h.expand(tuple(self._batch_shape))
