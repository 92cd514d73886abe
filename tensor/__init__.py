"""The tensor library: `Tensor`, dtypes, devices, creation, random numbers and every op."""
from . import methods as _methods  # noqa: F401  (binds ops to Tensor)
from .backend import Device as device
from .creation import (arange, as_tensor, empty, empty_like, eye, from_dlpack, from_numpy, full,
                       full_like, linspace, ones, ones_like, tensor, zeros, zeros_like)
from .dtypes import (bool_ as bool, double, float, float16, float32, float64, get_default_dtype,
                     half, int, int8, int16, int32, int64, long, promote_types,
                     set_default_dtype, short, uint8)
from .dtypes import bfloat16, dtype, finfo, iinfo
from .ops.conversion import clone
from .ops.elementwise import (abs, absolute, add, addcdiv, addcmul, allclose, bitwise_and,
                              bitwise_not, bitwise_or, bitwise_xor, ceil, clamp, clip, cos, div,
                              eq, equal, erf, exp, expm1, floor, floor_divide, fmod, ge, gelu,
                              gt, isclose, isfinite, isinf, isnan, le, lerp, log, log1p, log2,
                              log10, logical_and, logical_not, logical_or, logical_xor, lt, maximum,
                              minimum, mul, ne, neg, negative, pow, reciprocal, relu, remainder,
                              round, rsqrt, sigmoid, sign, silu, sin, softplus, sqrt, square,
                              sub, tan, tanh, true_divide, trunc, where)
from .ops.indexing import (argwhere, gather, index_select, masked_fill, masked_select, nonzero,
                           scatter, scatter_add, take_along_dim)
from .ops.linalg import bmm, dot, einsum, matmul, mm, outer
from .ops.reduction import (all, amax, amin, any, argmax, argmin, count_nonzero, cumsum,
                            logsumexp, max, mean, min, norm, prod, softmax, log_softmax, std,
                            std_mean, sum, var, var_mean)
from .ops.shape import (broadcast_shapes, broadcast_tensors, broadcast_to, cat, chunk, concat, concatenate, flatten,
                        flip, hstack, movedim, permute, repeat_interleave, reshape, roll,
                        split, squeeze, stack, swapaxes, t, tile, transpose, tril, triu, unbind,
                        unflatten, unsqueeze, vstack)
from .methods import narrow
from .random import (Generator, bernoulli, default_generator, get_rng_state, initial_seed,
                     manual_seed, multinomial, normal, rand, rand_like, randint, randint_like,
                     randn, randn_like, randperm, seed, set_rng_state)
from .tensor import Size, Tensor


def is_tensor(obj):
    return isinstance(obj, Tensor)


def numel(input):
    return input.numel()


def is_floating_point(input):
    return input.is_floating_point()


def detach(input):
    return input.detach()


__all__ = ['bfloat16', 'finfo', 'iinfo', 'Generator', 'Size', 'Tensor', 'abs', 'absolute', 'add', 'addcdiv', 'addcmul', 'all', 'allclose', 'amax', 'amin', 'any', 'arange', 'argmax', 'argmin', 'argwhere', 'as_tensor', 'bernoulli', 'bitwise_and', 'bitwise_not', 'bitwise_or', 'bitwise_xor', 'bmm', 'bool', 'broadcast_shapes', 'broadcast_tensors', 'broadcast_to', 'cat', 'ceil', 'chunk', 'clamp', 'clip', 'clone', 'concat', 'concatenate', 'cos', 'count_nonzero', 'cumsum', 'default_generator', 'detach', 'device', 'div', 'dot', 'double', 'dtype', 'einsum', 'empty', 'empty_like', 'eq', 'equal', 'erf', 'exp', 'expm1', 'eye', 'flatten', 'flip', 'float', 'float16', 'float32', 'float64', 'floor', 'floor_divide', 'fmod', 'from_dlpack', 'from_numpy', 'full', 'full_like', 'gather', 'ge', 'gelu', 'get_default_dtype', 'get_rng_state', 'gt', 'half', 'hstack', 'index_select', 'initial_seed', 'int', 'int16', 'int32', 'int64', 'int8', 'is_floating_point', 'is_tensor', 'isclose', 'isfinite', 'isinf', 'isnan', 'le', 'lerp', 'linspace', 'log', 'log10', 'log1p', 'log2', 'log_softmax', 'logical_and', 'logical_not', 'logical_or', 'logical_xor', 'logsumexp', 'long', 'lt', 'manual_seed', 'masked_fill', 'masked_select', 'matmul', 'max', 'maximum', 'mean', 'min', 'minimum', 'mm', 'movedim', 'mul', 'multinomial', 'narrow', 'ne', 'neg', 'negative', 'nonzero', 'norm', 'normal', 'numel', 'ones', 'ones_like', 'outer', 'permute', 'pow', 'prod', 'promote_types', 'rand', 'rand_like', 'randint', 'randint_like', 'randn', 'randn_like', 'randperm', 'reciprocal', 'relu', 'remainder', 'repeat_interleave', 'reshape', 'roll', 'round', 'rsqrt', 'scatter', 'scatter_add', 'seed', 'set_default_dtype', 'set_rng_state', 'short', 'sigmoid', 'sign', 'silu', 'sin', 'softmax', 'softplus', 'split', 'sqrt', 'square', 'squeeze', 'stack', 'std', 'std_mean', 'sub', 'sum', 'swapaxes', 't', 'take_along_dim', 'tan', 'tanh', 'tensor', 'tile', 'transpose', 'tril', 'triu', 'true_divide', 'trunc', 'uint8', 'unbind', 'unflatten', 'unsqueeze', 'var', 'var_mean', 'vstack', 'where', 'zeros', 'zeros_like']


# ---- more of torch's surface: math, ordering, products, placement, linear algebra ----------
from .ops.mathfuncs import (acos, acosh, angle, arccos, arccosh, arcsin, arcsinh, arctan, arctan2,
                            arctanh, asin, asinh, atan, atan2, atanh, bitwise_left_shift,
                            bitwise_right_shift, clamp_max, clamp_min, copysign, cosh, deg2rad,
                            digamma, divide, erfc, erfinv, exp2, fix, float_power, fmax, fmin,
                            frac, frexp, gcd, greater, greater_equal, heaviside, hypot, i0, isin,
                            isneginf, isposinf, isreal, lcm, ldexp, less, less_equal, lgamma,
                            logaddexp, logaddexp2, logit, multiply, nan_to_num, nextafter,
                            not_equal, polygamma, positive, rad2deg, rsub, sgn, signbit, sinc,
                            sinh, subtract, xlogy)  # noqa: E402
from .ops.sorting import (aminmax, argsort, bincount, bucketize, cummax, cummin, cumprod, diff,
                          histc, kthvalue, logcumsumexp, median, mode, msort, nanmean, nanmedian,
                          nanquantile, nansum, quantile, searchsorted, sort, topk, unique,
                          unique_consecutive)  # noqa: E402
from .ops.products import (addbmm, addmm, addmv, addr, baddbmm, block_diag, cartesian_prod, cdist,
                           chain_matmul, combinations, corrcoef, cov, cross, diag, diag_embed,
                           diagflat, diagonal, dist, ger, inner, kron, matrix_power, meshgrid, mv,
                           tensordot, trace, tril_indices, triu_indices, vdot)  # noqa: E402
from .ops.placement import (atleast_1d, atleast_2d, atleast_3d, column_stack, cumulative_trapezoid,
                            dsplit, dstack, fliplr, flipud, hsplit, index_add, index_copy,
                            index_fill, index_put, masked_scatter, moveaxis, put, ravel, rot90,
                            row_stack, select, select_scatter, slice_scatter, split_with_sizes,
                            swapdims, take, tensor_split, trapezoid, trapz, unravel_index, vander,
                            vsplit)  # noqa: E402
from .ops.placement import as_strided, as_strided_scatter, diagonal_scatter  # noqa: E402
from .ops.products import renorm  # noqa: E402
from .ops.scatter_reduce import scatter_reduce  # noqa: E402
from .ops.sorting import histogram, nonzero_static  # noqa: E402
from .inplace_aliases import *  # noqa: E402,F401,F403  (torch.relu_(x), torch.zero_(x), ...)
from . import inplace_aliases as _inplace_aliases  # noqa: E402
from . import linalg  # noqa: E402
from .linalg import (cholesky_inverse, cholesky_solve, det, inverse, logdet,  # noqa: E402
                     matrix_exp, pinverse, slogdet, triangular_solve,
                     legacy_cholesky as cholesky, legacy_qr as qr, legacy_svd as svd)
from .linalg_lu import lu_unpack, legacy_lu as lu, legacy_lu_solve as lu_solve  # noqa: E402
from .linalg_eig import geqrf, orgqr  # noqa: E402
__all__ += ['geqrf', 'lu', 'lu_solve', 'lu_unpack', 'orgqr']
from .ops.mathfuncs import igamma, igammac, mvlgamma  # noqa: E402
__all__ += ['acos', 'acosh', 'addbmm', 'addmm', 'addmv', 'addr', 'aminmax', 'angle', 'arccos',
            'arccosh', 'arcsin', 'arcsinh', 'arctan', 'arctan2', 'arctanh', 'argsort', 'asin',
            'asinh', 'atan', 'atan2', 'atanh', 'atleast_1d', 'atleast_2d', 'atleast_3d', 'baddbmm',
            'bincount', 'bitwise_left_shift', 'bitwise_right_shift', 'block_diag', 'bucketize',
            'cartesian_prod', 'cdist', 'chain_matmul', 'cholesky', 'clamp_max', 'clamp_min',
            'column_stack', 'combinations', 'copysign', 'corrcoef', 'cosh', 'cov', 'cross',
            'cummax', 'cummin', 'cumprod', 'cumulative_trapezoid', 'deg2rad', 'det', 'diag',
            'diag_embed', 'diagflat', 'diagonal', 'diff', 'digamma', 'dist', 'divide', 'dsplit',
            'dstack', 'erfc', 'erfinv', 'exp2', 'fix', 'fliplr', 'flipud', 'float_power', 'fmax',
            'fmin', 'frac', 'frexp', 'gcd', 'ger', 'greater', 'greater_equal', 'heaviside',
            'histc', 'hsplit', 'hypot', 'i0', 'index_add', 'index_copy', 'index_fill', 'index_put',
            'inner', 'inverse', 'isin', 'isneginf', 'isposinf', 'isreal', 'kron', 'kthvalue',
            'lcm', 'ldexp', 'less', 'less_equal', 'lgamma', 'linalg', 'logaddexp', 'logaddexp2',
            'logcumsumexp', 'logdet', 'logit', 'masked_scatter', 'matrix_power', 'median',
            'meshgrid', 'mode', 'moveaxis', 'msort', 'multiply', 'mv', 'nan_to_num', 'nanmean',
            'nanmedian', 'nanquantile', 'nansum', 'nextafter', 'not_equal', 'pinverse',
            'polygamma', 'positive', 'put', 'qr', 'quantile', 'rad2deg', 'ravel', 'rot90',
            'row_stack', 'rsub', 'searchsorted', 'select', 'select_scatter', 'sgn', 'signbit',
            'sinc', 'sinh', 'slice_scatter', 'slogdet', 'sort', 'split_with_sizes', 'subtract',
            'svd', 'swapdims', 'take', 'tensor_split', 'tensordot', 'topk', 'trace', 'trapezoid',
            'trapz', 'tril_indices', 'triu_indices', 'unique', 'unique_consecutive',
            'unravel_index', 'vander', 'vdot', 'vsplit', 'xlogy']
__all__ += ['as_strided', 'as_strided_scatter', 'cholesky_inverse', 'cholesky_solve', 'diagonal_scatter', 'histogram', 'matrix_exp',
            'nonzero_static', 'renorm', 'scatter_reduce'] + _inplace_aliases.__all__


def is_complex(input):
    return input._data.dtype.kind == "c"


def is_signed(input):
    return input.is_signed()


def is_nonzero(input):
    return input.is_nonzero()


def is_same_size(input, other):
    return input.is_same_size(other)


def is_conj(input):
    return _tensor_argument("is_conj", input).is_conj()


def is_neg(input):
    return _tensor_argument("is_neg", input).is_neg()


def _tensor_argument(name, input):
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not "
                        f"{type(input).__name__}")
    return input


def resolve_conj(input):
    """Conjugation is eager here (never a lazy bit), so there is nothing to resolve."""
    return input


resolve_neg = resolve_conj


def adjoint(input):
    return input.transpose(-2, -1)


def result_type(tensor1, tensor2):
    from .dtypes import from_numpy_dtype, result_type as _result_type
    return from_numpy_dtype(_result_type(tensor1, tensor2))


def can_cast(from_, to):
    """PyTorch's rule: no cast to a lower kind (float -> int, int -> bool, ...)."""
    order = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}
    return order[from_.np.kind] <= order[to.np.kind]


def unsafe_chunk(input, chunks, dim=0):
    return chunk(input, chunks, dim)


def unsafe_split(tensor, split_size, dim=0):
    return split(tensor, split_size, dim)


def unsafe_split_with_sizes(input, split_sizes, dim=0):
    return split_with_sizes(input, split_sizes, dim)


def narrow_copy(input, dim, start, length):
    return narrow(input, dim, start, length).clone()


__all__ += ['adjoint', 'can_cast', 'conj', 'conj_physical', 'is_complex', 'is_conj', 'is_neg',
            'is_nonzero', 'is_same_size', 'is_signed', 'narrow_copy', 'resolve_conj',
            'resolve_neg', 'result_type', 'unsafe_chunk', 'unsafe_split',
            'unsafe_split_with_sizes']
from .parallelism import get_num_threads, set_num_threads  # noqa: E402


def scalar_tensor(s, *, dtype=None, device=None, requires_grad=False):
    """A 0-d tensor of `s`, in the default float dtype unless `dtype` says otherwise."""
    return tensor(s, dtype=dtype or get_default_dtype(), device=device,
                  requires_grad=requires_grad)


__all__ += ['get_num_threads', 'scalar_tensor', 'set_num_threads']
from .windows import (bartlett_window, blackman_window, hamming_window,  # noqa: E402
                      hann_window, kaiser_window)

__all__ += ['bartlett_window', 'blackman_window', 'hamming_window', 'hann_window',
            'kaiser_window']
__all__ += ['igamma', 'igammac', 'mvlgamma', 'triangular_solve']
# ---- complex numbers (tensor/ops/complex.py); torch.fft is the module phalanx.fft ----------
from .dtypes import cdouble, cfloat, complex64, complex128  # noqa: E402
from .ops.complex import (complex, conj, conj_physical, imag, polar, real,  # noqa: E402
                          view_as_complex, view_as_real)

__all__ += ['cdouble', 'cfloat', 'complex', 'complex64', 'complex128', 'imag', 'polar', 'real',
            'view_as_complex', 'view_as_real']

# ---- more of torch's surface: legacy constructors and overloads, settings, transforms -------
from .legacy_types import (BFloat16Tensor, BoolTensor, ByteTensor, CharTensor,  # noqa: E402
                           DoubleTensor, FloatTensor, HalfTensor, IntTensor, LongTensor,
                           ShortTensor)
from .legacy_overloads import (add, addcdiv, addcmul, std, std_mean, sub,  # noqa: E402,F811
                               var, var_mean)
from .extra_methods import index_reduce, layout, strided  # noqa: E402
from .memory_formats import (channels_last, channels_last_3d, contiguous_format,  # noqa: E402
                             memory_format, preserve_format)
from .more_creation import asarray, empty_strided, frombuffer, logspace  # noqa: E402
from .random_counts import binomial, poisson  # noqa: E402
from .finite_differences import gradient  # noqa: E402
from .print_options import set_printoptions  # noqa: E402
from .settings import *  # noqa: E402,F401,F403  (listed in its __all__)
from .vmap import vmap  # noqa: E402
from . import legacy_types as _legacy_types, settings as _settings, special  # noqa: E402
from .more_creation import range  # noqa: E402,A004  (the builtin is shadowed from here on)

__all__ += _legacy_types.__all__ + _settings.__all__ + [
    'asarray', 'binomial', 'channels_last', 'channels_last_3d', 'contiguous_format',
    'empty_strided', 'frombuffer', 'gradient',
    'index_reduce', 'layout', 'logspace', 'memory_format', 'poisson', 'preserve_format', 'range',
    'set_printoptions', 'special', 'strided', 'vmap']

# ---- sparse COO tensors: the torch-level functions that take them ----------------------------
from . import sparse_coo as _sparse_coo  # noqa: E402
from .sparse_coo import sparse_coo, sparse_coo_tensor, spmm  # noqa: E402

for _name in _sparse_coo.TOP_LEVEL:
    if _name in globals():
        globals()[_name] = _sparse_coo.sparse_aware(_name, globals()[_name])
__all__ += ['sparse_coo', 'sparse_coo_tensor', 'spmm']

# ---- out=: PyTorch's functions that write into a given tensor ------------------------------------
from . import out_param as _out_param  # noqa: E402

for _name in _out_param.NAMES:
    if _name in globals():
        globals()[_name] = _out_param.accepts_out(globals()[_name])

# ---- axis= / keepdims=: NumPy's names for dim / keepdim, as PyTorch accepts them ------------------
from . import numpy_names as _numpy_names  # noqa: E402

_numpy_names.apply(globals(), __all__)
_numpy_names.apply_to_methods(Tensor)

# ---- the default device of factory functions (CPU, or meta) ----------------------------------
from . import default_device as _default_device  # noqa: E402

_default_device.apply(globals())
