"""Helpers shared by the distributions: broadcasting parameters, probs <-> logits, and the
cached property that lets a distribution hold either probs or logits."""
import numpy as np

from ..tensor import Tensor, broadcast_tensors, tensor


def broadcast_all(*values):
    """Tensors (numbers become tensors of the default dtype, or of the tensors' dtype)
    broadcast to one shape."""
    ref = next((v for v in values if isinstance(v, Tensor)), None)
    if ref is None:
        tensors = [tensor(float(v)) for v in values]
    else:
        tensors = [v if isinstance(v, Tensor) else
                   tensor(float(v), dtype=ref.dtype, device=ref.device) for v in values]
        if not all(isinstance(v, (Tensor, int, float)) for v in values):
            bad = [type(v).__name__ for v in values if not isinstance(v, (Tensor, int, float))]
            raise ValueError(f"Input arguments must all be instances of numbers or Tensors, "
                             f"got {bad}")
    return broadcast_tensors(*tensors)


def finfo(dtype):
    return np.finfo(dtype.np)


def clamp_probs(probs):
    """probs kept in [eps, 1 - eps] so that their logits are finite."""
    eps = float(finfo(probs.dtype).eps)
    return probs.clamp(min=eps, max=1 - eps)


def logits_to_probs(logits, is_binary=False):
    return logits.sigmoid() if is_binary else logits.softmax(-1)


def probs_to_logits(probs, is_binary=False):
    ps = clamp_probs(probs)
    return ps.log() - (-ps).log1p() if is_binary else ps.log()


def sum_rightmost(value, dim):
    """Sum out the `dim` rightmost dimensions."""
    return value.sum(tuple(range(-dim, 0))) if dim else value


class lazy_property:
    """A property computed on first use and then stored on the instance (so probs and
    logits each exist only once asked for)."""

    def __init__(self, wrapped):
        self.wrapped = wrapped
        self.__doc__ = wrapped.__doc__
        self.__name__ = wrapped.__name__

    def __get__(self, instance, obj_type=None):
        if instance is None:
            return self
        value = self.wrapped(instance)
        setattr(instance, self.wrapped.__name__, value)
        return value
