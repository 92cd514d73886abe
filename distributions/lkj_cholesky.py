"""LKJCholesky(dim, concentration): the LKJ distribution over Cholesky factors L of
dim x dim correlation matrices, density proportional to det(L L^T)^(concentration - 1)
(concentration 1: uniform over correlation matrices). Sampled by the onion method
(Lewandowski, Kurowicka and Joe, 2009, section 3.2), vectorised over rows as NumPyro does:
row i is sqrt(y_i) times a uniform direction in its first i coordinates, y_i ~ Beta, and its
diagonal entry completes the unit norm. Not reparameterisable.
"""
import math

from ..autograd import no_grad
from ..tensor import Size, arange, cat, mvlgamma, randn, where
from . import constraints
from .distribution import Distribution
from .gamma import Beta
from .utils import broadcast_all, finfo


class LKJCholesky(Distribution):
    arg_constraints = {"concentration": constraints.positive}
    support = constraints.corr_cholesky

    def __init__(self, dim, concentration=1.0, validate_args=None):
        if dim < 2:
            raise ValueError(f"Expected dim to be an integer greater than or equal to 2. "
                             f"Found dim={dim}.")
        self.dim = dim
        (self.concentration,) = broadcast_all(concentration)
        # y_i ~ Beta(i/2, eta + (dim - 2)/2 - (i - 1)/2) for row i = 1..dim-1 (row 0 has no
        # entry below the diagonal; its y is drawn and ignored). PyTorch 2.13 takes
        # concentration1 = i - 1/2, which is right for row 1 only: its rows from 2 on are
        # too strongly correlated.
        marginal = self.concentration + 0.5 * (dim - 2)
        offset = arange(dim - 1, dtype=self.concentration.dtype,
                        device=self.concentration.device)
        offset = cat([offset.new_zeros((1,)), offset])          # i - 1, and 0 for row 0
        self._beta = Beta(0.5 * offset + 0.5, marginal.unsqueeze(-1) - 0.5 * offset)
        super().__init__(self.concentration.shape, Size((dim, dim)), validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LKJCholesky, _instance)
        batch_shape = Size(batch_shape)
        new.dim = self.dim
        new.concentration = self.concentration.expand(batch_shape)
        new._beta = self._beta.expand(tuple(batch_shape) + (self.dim,))
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape=Size()):
        with no_grad():
            y = self._beta.sample(sample_shape).unsqueeze(-1)
            u_normal = randn(self._extended_shape(sample_shape), dtype=y.dtype,
                             device=y.device).tril(-1)
            # row 0 is all zero (its norm too): its direction is taken as zero
            row = arange(self.dim, device=y.device).unsqueeze(-1)
            norm = (u_normal ** 2).sum(-1, keepdim=True).sqrt()
            u_hypersphere = where(row == 0, 0.0, u_normal / where(row == 0, 1.0, norm))
            w = y.sqrt() * u_hypersphere
            diag = (1 - (w ** 2).sum(-1)).clamp(min=float(finfo(w.dtype).tiny)).sqrt()
            return w + diag.diag_embed()

    def log_prob(self, value):
        # log prod_i L_ii^(2 (eta - 1) + dim - i), i = 2..dim (row 1's diagonal is 1), minus
        # the log normaliser (Lewandowski, Kurowicka and Joe, page 1999)
        if self._validate_args:
            self._validate_sample(value)
        diag = value.diagonal(dim1=-2, dim2=-1)[..., 1:]
        order = arange(2, self.dim + 1, dtype=self.concentration.dtype,
                       device=self.concentration.device)
        order = 2 * (self.concentration - 1).unsqueeze(-1) + self.dim - order
        unnormalized = (order * diag.log()).sum(-1)
        dm1 = self.dim - 1
        alpha = self.concentration + 0.5 * dm1
        denominator = alpha.lgamma() * dm1
        numerator = mvlgamma(alpha - 0.5, dm1)
        # the normaliser's pi term is dim (dim - 1) / 4 log(pi); mvlgamma has
        # (dim - 1)(dim - 2) / 4 of it
        pi_constant = 0.5 * dm1 * math.log(math.pi)
        return unnormalized - (pi_constant + numerator - denominator)
