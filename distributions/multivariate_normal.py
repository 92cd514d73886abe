"""MultivariateNormal(loc, covariance_matrix= | precision_matrix= | scale_tril=): reparameterised
through the lower Cholesky factor L of the covariance (x = loc + L eps)."""
import math

import numpy as np

from ..tensor import Size, eye, randn
from . import constraints
from ._linalg import cholesky, diagonal, solve_triangular
from .distribution import Distribution
from .utils import lazy_property

_LOG_2PI = math.log(2 * math.pi)


def batch_mahalanobis(scale_tril, diff):
    """|| L^-1 diff ||^2 over the event dimension, broadcasting L and diff's batches."""
    z = solve_triangular(scale_tril, diff.unsqueeze(-1), upper=False).squeeze(-1)
    return (z * z).sum(-1)


def _precision_to_scale_tril(precision):
    """L with L L^T = P^-1, from the Cholesky factor of P with its rows and columns
    reversed (an upper factor of P), without forming the inverse."""
    flipped = cholesky(precision.flip((-2, -1)))
    l_inv = flipped.flip((-2, -1)).mT  # lower, L^-1
    identity = eye(precision.shape[-1], dtype=precision.dtype, device=precision.device)
    return solve_triangular(l_inv, identity.expand(tuple(l_inv.shape)), upper=False)


class MultivariateNormal(Distribution):
    arg_constraints = {"loc": constraints.real_vector,
                       "covariance_matrix": constraints.positive_definite,
                       "precision_matrix": constraints.positive_definite,
                       "scale_tril": constraints.lower_cholesky}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, covariance_matrix=None, precision_matrix=None, scale_tril=None,
                 validate_args=None):
        if loc.ndim < 1:
            raise ValueError("loc must be at least one-dimensional.")
        if (covariance_matrix is not None) + (scale_tril is not None) + \
                (precision_matrix is not None) != 1:
            raise ValueError("Exactly one of covariance_matrix or precision_matrix or "
                             "scale_tril may be specified.")
        matrix = next(m for m in (scale_tril, covariance_matrix, precision_matrix)
                      if m is not None)
        name = "scale_tril" if scale_tril is not None else \
            "covariance_matrix" if covariance_matrix is not None else "precision_matrix"
        if matrix.ndim < 2:
            raise ValueError(f"{name} matrix must be at least two-dimensional, with optional "
                             f"leading batch dimensions")
        n = loc.shape[-1]
        if tuple(matrix.shape[-2:]) != (n, n):
            raise ValueError(f"{name} must have shape (..., {n}, {n}) to match loc of shape "
                             f"{tuple(loc.shape)}, got {tuple(matrix.shape)}")
        batch_shape = Size(np.broadcast_shapes(tuple(matrix.shape[:-2]), tuple(loc.shape[:-1])))
        full = tuple(batch_shape) + (n, n)
        setattr(self, name, matrix.expand(full))
        self.loc = loc.expand(tuple(batch_shape) + (n,))
        super().__init__(batch_shape, Size((n,)), validate_args)
        if scale_tril is not None:
            self._unbroadcasted_scale_tril = scale_tril
        elif covariance_matrix is not None:
            self._unbroadcasted_scale_tril = cholesky(covariance_matrix)
        else:
            self._unbroadcasted_scale_tril = _precision_to_scale_tril(precision_matrix)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(MultivariateNormal, _instance)
        batch_shape = Size(batch_shape)
        n = self.event_shape[0]
        new.loc = self.loc.expand(tuple(batch_shape) + (n,))
        new._unbroadcasted_scale_tril = self._unbroadcasted_scale_tril
        for name in ("covariance_matrix", "scale_tril", "precision_matrix"):
            if name in self.__dict__:
                setattr(new, name, self.__dict__[name].expand(tuple(batch_shape) + (n, n)))
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _full(self, matrix):
        return matrix.expand(tuple(self._batch_shape) + tuple(self._event_shape) * 2)

    @lazy_property
    def scale_tril(self):
        return self._full(self._unbroadcasted_scale_tril)

    @lazy_property
    def covariance_matrix(self):
        low = self._unbroadcasted_scale_tril
        return self._full(low @ low.mT)

    @lazy_property
    def precision_matrix(self):
        low = self._unbroadcasted_scale_tril
        identity = eye(low.shape[-1], dtype=low.dtype, device=low.device)
        l_inv = solve_triangular(low, identity.expand(tuple(low.shape)), upper=False)
        return self._full(l_inv.mT @ l_inv)

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def variance(self):
        low = self._unbroadcasted_scale_tril
        return (low * low).sum(-1).expand(tuple(self._batch_shape) + tuple(self._event_shape))

    def rsample(self, sample_shape=Size()):
        shape = self._extended_shape(sample_shape)
        eps = randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + (self._unbroadcasted_scale_tril @ eps.unsqueeze(-1)).squeeze(-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        diff = value - self.loc
        m = batch_mahalanobis(self._unbroadcasted_scale_tril, diff)
        half_log_det = diagonal(self._unbroadcasted_scale_tril).log().sum(-1)
        return -0.5 * (self._event_shape[0] * _LOG_2PI + m) - half_log_det

    def entropy(self):
        half_log_det = diagonal(self._unbroadcasted_scale_tril).log().sum(-1)
        h = 0.5 * self._event_shape[0] * (1.0 + _LOG_2PI) + half_log_det
        return h if len(self._batch_shape) == 0 else h.expand(tuple(self._batch_shape))
