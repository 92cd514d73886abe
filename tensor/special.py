"""`phalanx.special`: PyTorch's torch.special under its names.

Most names are the elementwise ops Phalanx already has (gammaln is lgamma, expit is sigmoid,
multigammaln is mvlgamma, ...). The rest are Functions over scipy.special (cupyx.scipy.special
on a GPU) with their derivatives written in tensor ops:

    ndtr(x)     = Phi(x)                      d/dx = phi(x) = exp(-x^2/2) / sqrt(2 pi)
    log_ndtr(x) = log Phi(x)                  d/dx = exp(-x^2/2 - log_ndtr(x)) / sqrt(2 pi)
    ndtri(p)    = Phi^-1(p)                   d/dp = sqrt(2 pi) exp(ndtri(p)^2 / 2)
    erfcx(x)    = exp(x^2) erfc(x)            d/dx = 2 x erfcx(x) - 2 / sqrt(pi)
    i0e(x)      = exp(-|x|) I0(x)             d/dx = i1e(x) - sign(x) i0e(x)
    i1e(x)      = exp(-|x|) I1(x)             d/dx = i0e(x) - i1e(x) (sign(x) + 1 / x)
    entr(x)     = -x log x (0 at 0, -inf < 0) d/dx = -(log x + 1)
"""
import math

from .backend import special as _scipy
from .ops import elementwise as ew, mathfuncs as mf, reduction as red
from .ops.elementwise import _unary

_SQRT_2PI = math.sqrt(2 * math.pi)


def _cast(fn):
    """scipy.special's loops may compute in float64: give the result the input's dtype."""
    return lambda xp, x: fn(_scipy(xp), x).astype(x.dtype, copy=False)


_Ndtr = _unary("Ndtr", _cast(lambda sp, x: sp.ndtr(x)),
               lambda x, o, g: g * ew.exp(-0.5 * x * x) / _SQRT_2PI)
_LogNdtr = _unary("LogNdtr", _cast(lambda sp, x: sp.log_ndtr(x)),
                  lambda x, o, g: g * ew.exp(-0.5 * x * x - log_ndtr(x)) / _SQRT_2PI)
_Ndtri = _unary("Ndtri", _cast(lambda sp, x: sp.ndtri(x)),
                lambda x, o, g: g * _SQRT_2PI * ew.exp(0.5 * o * o), save_out=True)
_Erfcx = _unary("Erfcx", _cast(lambda sp, x: sp.erfcx(x)),
                lambda x, o, g: g * (2 * x * erfcx(x) - 2 / math.sqrt(math.pi)))
_I0e = _unary("I0e", _cast(lambda sp, x: sp.i0e(x)),
              lambda x, o, g: g * (i1e(x) - ew.sign(x) * i0e(x)))
_I1e = _unary("I1e", _cast(lambda sp, x: sp.i1e(x)),
              lambda x, o, g: g * (i0e(x) - i1e(x) * (ew.sign(x) + 1 / x)))
_Entr = _unary("Entr", _cast(lambda sp, x: sp.entr(x)),
               lambda x, o, g: g * -(ew.log(x) + 1))


def ndtr(input):
    return _Ndtr.apply(input)


def log_ndtr(input):
    return _LogNdtr.apply(input)


def ndtri(input):
    return _Ndtri.apply(input)


def erfcx(input):
    return _Erfcx.apply(input)


def i0e(input):
    return _I0e.apply(input)


def i1e(input):
    return _I1e.apply(input)


def entr(input):
    return _Entr.apply(input)


def xlog1py(input, other):
    """input * log1p(other), 0 where input is 0 (unless other is NaN), as xlogy does."""
    safe = ew.where(ew.eq(input, 0) & ew.le(other, -1), 0.0, other)
    return ew.mul(input, ew.log1p(safe))


def i1(input):
    return mf._i1(input)


def softmax(input, dim, *, dtype=None):
    return red.softmax(input, dim, dtype=dtype)


def log_softmax(input, dim, *, dtype=None):
    return red.log_softmax(input, dim, dtype=dtype)


def logsumexp(input, dim, keepdim=False):
    return red.logsumexp(input, dim, keepdim)


def round(input, *, decimals=0):
    return ew.round(input, decimals=decimals)


digamma = psi = mf.digamma
erf, erfc, erfinv = ew.erf, mf.erfc, mf.erfinv
exp2, expm1, log1p = mf.exp2, ew.expm1, ew.log1p
expit = ew.sigmoid
gammaln = mf.lgamma
gammainc, gammaincc = mf.igamma, mf.igammac
i0 = mf.i0
logit = mf.logit
multigammaln = mf.mvlgamma
polygamma = mf.polygamma
sinc = mf.sinc
xlogy = mf.xlogy

__all__ = ["digamma", "entr", "erf", "erfc", "erfcx", "erfinv", "exp2", "expit", "expm1",
           "gammainc", "gammaincc", "gammaln", "i0", "i0e", "i1", "i1e", "log1p", "log_ndtr",
           "log_softmax", "logit", "logsumexp", "multigammaln", "ndtr", "ndtri", "polygamma",
           "psi", "round", "sinc", "softmax", "xlog1py", "xlogy"]
