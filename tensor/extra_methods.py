"""More of torch.Tensor's surface: the rarer random fills (cauchy_, log_normal_, geometric_),
resize_/resize_as_, hardshrink and prelu, index_reduce (its in-place form is bound in
`methods` with the other in-place ops), dim_order, to_dense, layout, and the backend flags
that are False for every Phalanx tensor (is_nested, is_xla, ...).

The fills draw from the same generators as `uniform_`/`normal_` (the CPU's or the tensor's
GPU's), transforming uniform or normal draws, so they need nothing the GPU stream lacks.
"""
import math

import numpy as np

from . import backend, random as _random
from .memory_formats import is_contiguous
from .backend import array_module
from .memory_formats import NamedConstant
from .ops import elementwise as ew, shape
from .ops._util import normalize_dim
from .ops.scatter_reduce import scatter_reduce
from .storage import data_address, memory_root, storage, untyped_storage
from .tensor import Tensor


class layout(NamedConstant):
    """A tensor's memory layout (`phalanx.strided`: the only one Phalanx has)."""


strided = layout("strided")


# ---- random fills --------------------------------------------------------------------------
def _uniform_open(t, generator):
    """Uniform draws in (0, 1) in float64 (never 0, so logs and tangents stay finite)."""
    u = _random._gen(generator, t.device).uniform(0.0, 1.0, t.shape)
    xp = array_module(u)
    return xp.clip(u, np.finfo(np.float64).tiny, 1.0 - np.finfo(np.float64).epsneg)


def cauchy_(self, median=0.0, sigma=1.0, generator=None):
    """Fill with draws from Cauchy(median, sigma)."""
    if not sigma > 0:
        raise RuntimeError(f"cauchy_ expects sigma > 0.0, but found sigma={sigma}")
    u = _uniform_open(self, generator)
    return _random._fill(self, median + sigma * array_module(u).tan(math.pi * (u - 0.5)))


def log_normal_(self, mean=1.0, std=2.0, generator=None):
    """Fill with exp(N(mean, std)) draws."""
    if not std > 0:
        raise RuntimeError(f"log_normal_ expects std > 0.0, but found std={std}")
    z = _random._gen(generator, self.device).normal(mean, std, self.shape)
    return _random._fill(self, array_module(z).exp(z))


def geometric_(self, p, generator=None):
    """Fill with the number of Bernoulli(p) trials up to the first success (1, 2, ...)."""
    if not 0 < p < 1:
        raise RuntimeError(f"geometric_ expects p to be in (0, 1), but got p={p}")
    u = _uniform_open(self, generator)
    xp = array_module(u)
    return _random._fill(self, xp.ceil(xp.log(u) / math.log1p(-p)))


# ---- resize ----------------------------------------------------------------------------------
def resize_(self, *sizes, memory_format=None):
    """Give the tensor the shape `sizes` in place: its first elements (in row-major order) are
    kept, any new ones are uninitialised. When the element count does not grow, the tensor
    stays a view of the same memory."""
    if memory_format is not None:
        raise NotImplementedError("resize_: memory_format= is not supported")
    if self.requires_grad:
        raise RuntimeError("cannot resize variables that require grad")
    new_shape = tuple(int(s) for s in (sizes[0] if len(sizes) == 1 and
                                       isinstance(sizes[0], (tuple, list)) else sizes))
    if any(s < 0 for s in new_shape):
        raise RuntimeError(f"Trying to create tensor with negative dimension: {list(new_shape)}")
    d = self._data
    n = math.prod(new_shape)
    if n <= d.size and d.flags.c_contiguous:
        self._data = d.reshape(-1)[:n].reshape(new_shape)
    else:
        out = array_module(d).empty(new_shape, d.dtype)
        keep = min(n, d.size)
        out.reshape(-1)[:keep] = d.reshape(-1)[:keep]
        self._data = out
    self._version[0] += 1
    return self


def resize_as_(self, the_template, memory_format=None):
    return resize_(self, tuple(the_template.shape), memory_format=memory_format)


# ---- activations as methods ------------------------------------------------------------
def hardshrink(self, lambd=0.5):
    """x where |x| > lambd, else 0 (the gradient is 0 at |x| == lambd, as in PyTorch)."""
    return ew.where(ew.abs(self) > lambd, self, 0.0)


def prelu(self, weight):
    """max(0, x) + weight * min(0, x), with one weight per channel (dim 1; a 1-D input has
    one channel) or one shared."""
    if weight.numel() != 1:
        channels = self.shape[1] if self.ndim >= 2 else 1
        if weight.ndim != 1 or weight.shape[0] != channels:
            raise RuntimeError(f"prelu: weight of shape {list(weight.shape)} does not match "
                               f"the {channels} channels of input shape {list(self.shape)}; "
                               f"pass one weight per channel or a single one")
        if self.ndim >= 2:
            weight = shape.reshape(weight, (channels,) + (1,) * (self.ndim - 2))
    return ew.where(self > 0, self, weight * self)


# ---- index_reduce --------------------------------------------------------------------------
def index_reduce(self, dim, index, source, reduce, *, include_self=True):
    """self with the slices source.select(dim, i) folded ('prod', 'mean', 'amax', 'amin')
    into self.select(dim, index[i]): scatter_reduce with the index spread along `dim`."""
    if reduce not in ("prod", "mean", "amax", "amin"):
        raise RuntimeError(f"index_reduce(): Expected reduce to be one of prod, mean, amax or "
                           f"amin but got {reduce!r}")
    dim = normalize_dim(dim, self.ndim)
    if index.ndim > 1 or source.ndim != self.ndim or index.numel() != source.shape[dim]:
        raise IndexError(f"index_reduce(): index (shape {list(index.shape)}) must be 1-D with "
                         f"one entry per slice of source (shape {list(source.shape)}) along "
                         f"dim {dim}")
    spread = index.reshape((1,) * dim + (-1,) + (1,) * (self.ndim - dim - 1))
    return scatter_reduce(self, dim, spread.expand(*source.shape), source, reduce,
                          include_self=include_self)


# ---- layout ------------------------------------------------------------------------------
def dim_order(self, *, ambiguity_check=False):
    """The dims from outermost to innermost in memory (by decreasing stride)."""
    if ambiguity_check:
        raise NotImplementedError("dim_order: ambiguity_check= is not supported")
    strides = self.stride()
    return tuple(sorted(range(self.ndim), key=lambda i: -strides[i]))


def to_dense(self, dtype=None, *, masked_grad=None):
    """A strided tensor is already dense: itself (or a copy in `dtype`)."""
    if masked_grad is not None:
        raise NotImplementedError("to_dense: masked_grad= is only meaningful for sparse tensors")
    return self if dtype is None else self.to(dtype)


def _never(self):
    return False


def _retains_grad(self):
    """Whether retain_grad() was called on this non-leaf tensor (False for leaves)."""
    node = self.grad_fn
    return node is not None and self._output_nr in node.__dict__.get("retained_outputs", ())


def storage_offset(self):
    """How many elements into its memory block this tensor's first element lies (0 unless
    it is a view into another tensor's memory)."""
    d = self._data
    return (data_address(d) - memory_root(d)[0]) // d.itemsize


def stft(self, n_fft, hop_length=None, win_length=None, window=None, center=True,
         pad_mode="reflect", normalized=False, onesided=None, return_complex=None,
         align_to_window=None):
    from ..spectral import stft as _stft     # it needs nn.functional and fft
    return _stft(self, n_fft, hop_length, win_length, window, center, pad_mode, normalized,
                 onesided, return_complex, align_to_window)


def istft(self, n_fft, hop_length=None, win_length=None, window=None, center=True,
          normalized=False, onesided=None, length=None, return_complex=False):
    from ..spectral import istft as _istft
    return _istft(self, n_fft, hop_length, win_length, window, center, normalized, onesided,
                  length, return_complex)


def _bind():
    for fn in (cauchy_, log_normal_, geometric_, resize_, resize_as_, hardshrink, prelu,
               dim_order, to_dense, index_reduce, stft, istft):
        setattr(Tensor, fn.__name__, fn)
    Tensor.layout = property(lambda self: strided)
    Tensor.retains_grad = property(_retains_grad)
    Tensor.storage_offset = storage_offset
    Tensor.untyped_storage = untyped_storage
    Tensor.storage = storage
    Tensor.is_contiguous = is_contiguous
    # backends and layouts Phalanx never uses
    for name in ("is_nested", "is_mkldnn", "is_vulkan", "is_xla", "is_ipu", "is_mtia",
                 "is_maia", "is_sparse_csr"):
        setattr(Tensor, name, property(_never))


_bind()