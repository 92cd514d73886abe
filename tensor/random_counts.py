"""Count-valued random draws: poisson(rates) and binomial(count, prob), from the same
generators as every other draw. The GPU streams (cuRAND through CuPy) have no Poisson or
binomial sampler, so GPU tensors are refused rather than drawn elsewhere."""
import numpy as np

from . import random as _random
from .tensor import Tensor


def _stream(name, t, generator):
    if t.device.type != "cpu":
        raise NotImplementedError(f"{name}: drawing on {t.device} is not supported (the GPU "
                                  f"random streams have no {name} sampler); draw on the CPU "
                                  f"and move the result with .to({str(t.device)!r})")
    return _random._gen(generator, t.device)


def poisson(input, generator=None):
    """Draws from Poisson(rate) for each rate in `input`, in its dtype."""
    rates = input.detach()._data
    if (rates < 0).any():
        raise RuntimeError("poisson: rates must be non-negative")
    draws = np.asarray(_stream("poisson", input, generator).poisson(rates))
    return Tensor._make(draws.astype(rates.dtype))


def binomial(count, prob, generator=None):
    """Draws from Binomial(count, prob) elementwise (count and prob broadcast), in prob's
    dtype."""
    n, p = count.detach()._data, prob.detach()._data
    if (p < 0).any() or (p > 1).any():
        raise RuntimeError("binomial: prob must lie in [0, 1]")
    draws = np.asarray(_stream("binomial", prob, generator).binomial(n.astype("int64"), p))
    return Tensor._make(draws.astype(p.dtype))


__all__ = ["binomial", "poisson"]
