"""Wishart(df, covariance_matrix= | precision_matrix= | scale_tril=): the law of the
scatter matrix sum_i x_i x_i^T of df Normal(0, Sigma) vectors, on positive-definite matrices.
Reparameterised by the Bartlett decomposition: Sigma = L L^T, A lower triangular with
sqrt(chi2(df - i)) on the diagonal and standard normals below it, then (L A)(L A)^T.
"""
import math
import warnings

import numpy as np

from ..tensor import Size, arange, cholesky_solve, eye, mvlgamma, randn, tensor, where
from ..tensor.linalg import slogdet
from . import constraints
from ._linalg import cholesky
from .exp_family import ExponentialFamily
from .multivariate_normal import _precision_to_scale_tril
from .student_t import Chi2
from .utils import finfo, lazy_property, vec_to_tril_matrix

_LOG_2 = math.log(2)


def _mvdigamma(x, p):
    """The multivariate digamma function, d/dx log Gamma_p(x)."""
    if not bool((x > (p - 1) / 2).all()):
        raise ValueError("Wrong domain for multivariate digamma function.")
    half_steps = arange(p, dtype=x.dtype, device=x.device) / 2
    return (x.unsqueeze(-1) - half_steps).digamma().sum(-1)


class Wishart(ExponentialFamily):
    support = constraints.positive_definite
    has_rsample = True
    _mean_carrier_measure = 0

    @property
    def arg_constraints(self):
        return {"covariance_matrix": constraints.positive_definite,
                "precision_matrix": constraints.positive_definite,
                "scale_tril": constraints.lower_cholesky,
                "df": constraints.greater_than(self.event_shape[-1] - 1)}

    def __init__(self, df, covariance_matrix=None, precision_matrix=None, scale_tril=None,
                 validate_args=None):
        given = [(name, m) for name, m in (("covariance_matrix", covariance_matrix),
                                          ("precision_matrix", precision_matrix),
                                          ("scale_tril", scale_tril)) if m is not None]
        if len(given) != 1:
            raise AssertionError("Exactly one of covariance_matrix or precision_matrix or "
                                 "scale_tril may be specified.")
        name, param = given[0]
        if param.ndim < 2:
            raise ValueError("scale_tril must be at least two-dimensional, with optional "
                             "leading batch dimensions")
        if isinstance(df, (int, float)):
            batch_shape = Size(param.shape[:-2])
            self.df = tensor(float(df), dtype=param.dtype, device=param.device)
        else:
            batch_shape = Size(np.broadcast_shapes(tuple(param.shape[:-2]), tuple(df.shape)))
            self.df = df.expand(batch_shape)
        event_shape = Size(param.shape[-2:])
        p = event_shape[-1]
        if bool((self.df <= p - 1).any()):
            raise ValueError(f"Value of df={df} expected to be greater than ndim - 1 = "
                             f"{p - 1}.")
        setattr(self, name, param.expand(tuple(batch_shape) + (p, p)))
        if bool((self.df < p).any()):
            warnings.warn("Low df values detected. Singular samples are highly likely to "
                          "occur for ndim - 1 < df < ndim.", stacklevel=2)
        super().__init__(batch_shape, event_shape, validate_args)
        if scale_tril is not None:
            self._unbroadcasted_scale_tril = scale_tril
        elif covariance_matrix is not None:
            self._unbroadcasted_scale_tril = cholesky(covariance_matrix)
        else:
            self._unbroadcasted_scale_tril = _precision_to_scale_tril(precision_matrix)
        self._dist_chi2 = self._bartlett_chi2()

    def _bartlett_chi2(self):
        """chi2(df - i), i = 0..p-1: the squares of the Bartlett factor's diagonal."""
        p = self._event_shape[-1]
        steps = arange(p, dtype=self._unbroadcasted_scale_tril.dtype,
                       device=self._unbroadcasted_scale_tril.device)
        return Chi2(df=self.df.unsqueeze(-1) - steps.expand(tuple(self._batch_shape) + (p,)))

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Wishart, _instance)
        batch_shape = Size(batch_shape)
        cov_shape = tuple(batch_shape) + tuple(self.event_shape)
        new._unbroadcasted_scale_tril = self._unbroadcasted_scale_tril.expand(cov_shape)
        new.df = self.df.expand(batch_shape)
        for name in ("covariance_matrix", "scale_tril", "precision_matrix"):
            if name in self.__dict__:
                setattr(new, name, self.__dict__[name].expand(cov_shape))
        ExponentialFamily.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._dist_chi2 = new._bartlett_chi2()
        new._validate_args = self._validate_args
        return new

    def _full(self, matrix):
        return matrix.expand(tuple(self._batch_shape) + tuple(self._event_shape))

    def _batch_matrix(self, value):
        """A batch-shaped value, broadcastable against batch + (p, p)."""
        return value.reshape(tuple(self._batch_shape) + (1, 1))

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
        identity = eye(self._event_shape[-1], dtype=low.dtype, device=low.device)
        return self._full(cholesky_solve(identity.expand(tuple(low.shape)), low))

    @property
    def mean(self):
        return self._batch_matrix(self.df) * self.covariance_matrix

    @property
    def mode(self):
        """nan where df <= p + 1 (no mode)."""
        factor = self.df - self.covariance_matrix.shape[-1] - 1
        factor = where(factor <= 0, math.nan, factor)
        return self._batch_matrix(factor) * self.covariance_matrix

    @property
    def variance(self):
        cov = self.covariance_matrix
        diag = cov.diagonal(dim1=-2, dim2=-1)
        return self._batch_matrix(self.df) * (cov ** 2 + diag.unsqueeze(-1) * diag.unsqueeze(-2))

    def _bartlett_sampling(self, sample_shape):
        p = self._event_shape[-1]
        low = self._unbroadcasted_scale_tril
        diag = self._dist_chi2.rsample(sample_shape).sqrt().clamp(
            min=float(finfo(low.dtype).eps))
        below = randn(tuple(sample_shape) + tuple(self._batch_shape) + (p * (p - 1) // 2,),
                      dtype=low.dtype, device=low.device)
        factor = low @ (diag.diag_embed() + vec_to_tril_matrix(below, diag=-1))
        return factor @ factor.mT

    def rsample(self, sample_shape=Size(), max_try_correction=None):
        """Draws; a draw that rounding made singular is drawn again, up to
        `max_try_correction` times (10 by default), with a warning. One that stays singular
        is returned, and scores -inf in log_prob."""
        if max_try_correction is None:
            max_try_correction = 10
        if not isinstance(sample_shape, (tuple, list)):
            sample_shape = (int(sample_shape),)
        sample = self._bartlett_sampling(sample_shape)
        singular = self._singular(sample)
        if bool(singular.any()):
            warnings.warn("Singular sample detected.", stacklevel=2)
            for _ in range(max_try_correction):
                fresh = self._bartlett_sampling(sample_shape)
                sample = where(singular, fresh, sample)
                singular = self._singular(sample)
                if not bool(singular.any()):
                    break
        return sample

    def _singular(self, sample):
        """Whether each draw of the sample shape (over its whole batch) has a matrix that
        is not positive-definite; shaped to broadcast against the sample."""
        bad = ~self.support.check(sample.detach())
        for _ in range(len(self._batch_shape)):
            bad = bad.any(-1)
        return bad.reshape(tuple(bad.shape) + (1,) * (len(self._batch_shape) + 2))

    def _half_log_det(self):
        return self._unbroadcasted_scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        nu, p = self.df, self._event_shape[-1]
        trace = cholesky_solve(value, self._unbroadcasted_scale_tril).diagonal(
            dim1=-2, dim2=-1).sum(-1)
        return (-nu * (p * _LOG_2 / 2 + self._half_log_det()) - mvlgamma(nu / 2, p)
                + (nu - p - 1) / 2 * slogdet(value).logabsdet - trace / 2)

    def entropy(self):
        nu, p = self.df, self._event_shape[-1]
        return ((p + 1) * (p * _LOG_2 / 2 + self._half_log_det()) + mvlgamma(nu / 2, p)
                - (nu - p - 1) / 2 * _mvdigamma(nu / 2, p) + nu * p / 2)

    @property
    def _natural_params(self):
        nu, p = self.df, self._event_shape[-1]
        return -self.precision_matrix / 2, (nu - p - 1) / 2

    def _log_normalizer(self, x, y):
        p = self._event_shape[-1]
        return (y + (p + 1) / 2) * (-slogdet(-2 * x).logabsdet + _LOG_2 * p) \
            + mvlgamma(y + (p + 1) / 2, p)
