"""Helpers shared by the distributions: broadcasting parameters, probs <-> logits, the
cached property that lets a distribution hold either probs or logits, and the packing of a
lower triangle into a vector and back."""
import math

import numpy as np

from ..tensor import Tensor, broadcast_tensors, cat, tensor

__all__ = ["broadcast_all", "clamp_probs", "lazy_property", "logits_to_probs",
           "probs_to_logits", "tril_matrix_to_vec", "vec_to_tril_matrix"]


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


def _tril_positions(n, diag):
    """Row-major (rows, cols) of the entries of an n x n matrix on or below diagonal `diag`."""
    return np.tril_indices(n, diag)


def tril_matrix_to_vec(mat, diag=0):
    """The entries of `mat` (..., n, n) on or below diagonal `diag`, in row order, as a
    vector (..., m)."""
    n = mat.shape[-1]
    if not -n <= diag < n:
        raise ValueError(f"diag ({diag}) provided is outside [{-n}, {n - 1}].")
    rows, cols = _tril_positions(n, diag)
    return mat[..., tensor(rows, device=mat.device), tensor(cols, device=mat.device)]


def vec_to_tril_matrix(vec, diag=0):
    """The inverse of `tril_matrix_to_vec`: a (..., n, n) matrix, zero above diagonal `diag`,
    filled in row order from `vec` (..., m). A gather from [0, vec], so gradients flow."""
    m = vec.shape[-1]
    # n solves n^2 + (1 + 2 diag) n - |diag| (diag + 1) - 2 m = 0
    b = 1 + 2 * diag
    root = (-b + math.sqrt(b * b + 8 * m + 4 * abs(diag) * (diag + 1))) / 2
    n = round(root)
    if abs(n - root) > float(finfo(vec.dtype).eps):
        raise ValueError(f"The size of last dimension is {m} which cannot be expressed as "
                         f"the lower triangular part of a square D x D matrix.")
    rows, cols = _tril_positions(n, diag)
    source = np.zeros((n, n), dtype=np.int64)       # 0 picks the zero put in front of vec
    source[rows, cols] = np.arange(1, len(rows) + 1)
    padded = cat([vec.new_zeros(tuple(vec.shape[:-1]) + (1,)), vec], -1)
    return padded[..., tensor(source, device=vec.device)]
