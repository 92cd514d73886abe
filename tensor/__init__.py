"""The tensor library: `Tensor`, dtypes, devices, creation, random numbers and every op."""
from . import methods as _methods  # noqa: F401  (binds ops to Tensor)
from .backend import Device as device
from .creation import (arange, as_tensor, empty, empty_like, eye, from_dlpack, from_numpy, full,
                       full_like, linspace, ones, ones_like, tensor, zeros, zeros_like)
from .dtypes import (bool_ as bool, double, float, float16, float32, float64, get_default_dtype,
                     half, int, int8, int16, int32, int64, long, promote_types,
                     set_default_dtype, short, uint8)
from .dtypes import dtype
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
from .ops.shape import (broadcast_tensors, broadcast_to, cat, chunk, concat, concatenate, flatten,
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


__all__ = ['Generator', 'Size', 'Tensor', 'abs', 'absolute', 'add', 'addcdiv', 'addcmul', 'all', 'allclose', 'amax', 'amin', 'any', 'arange', 'argmax', 'argmin', 'argwhere', 'as_tensor', 'bernoulli', 'bitwise_and', 'bitwise_not', 'bitwise_or', 'bitwise_xor', 'bmm', 'bool', 'broadcast_tensors', 'broadcast_to', 'cat', 'ceil', 'chunk', 'clamp', 'clip', 'clone', 'concat', 'concatenate', 'cos', 'count_nonzero', 'cumsum', 'default_generator', 'detach', 'device', 'div', 'dot', 'double', 'dtype', 'einsum', 'empty', 'empty_like', 'eq', 'equal', 'erf', 'exp', 'expm1', 'eye', 'flatten', 'flip', 'float', 'float16', 'float32', 'float64', 'floor', 'floor_divide', 'fmod', 'from_dlpack', 'from_numpy', 'full', 'full_like', 'gather', 'ge', 'gelu', 'get_default_dtype', 'get_rng_state', 'gt', 'half', 'hstack', 'index_select', 'initial_seed', 'int', 'int16', 'int32', 'int64', 'int8', 'is_floating_point', 'is_tensor', 'isclose', 'isfinite', 'isinf', 'isnan', 'le', 'lerp', 'linspace', 'log', 'log10', 'log1p', 'log2', 'log_softmax', 'logical_and', 'logical_not', 'logical_or', 'logical_xor', 'logsumexp', 'long', 'lt', 'manual_seed', 'masked_fill', 'masked_select', 'matmul', 'max', 'maximum', 'mean', 'min', 'minimum', 'mm', 'movedim', 'mul', 'multinomial', 'narrow', 'ne', 'neg', 'negative', 'nonzero', 'norm', 'normal', 'numel', 'ones', 'ones_like', 'outer', 'permute', 'pow', 'prod', 'promote_types', 'rand', 'rand_like', 'randint', 'randint_like', 'randn', 'randn_like', 'randperm', 'reciprocal', 'relu', 'remainder', 'repeat_interleave', 'reshape', 'roll', 'round', 'rsqrt', 'scatter', 'scatter_add', 'seed', 'set_default_dtype', 'set_rng_state', 'short', 'sigmoid', 'sign', 'silu', 'sin', 'softmax', 'softplus', 'split', 'sqrt', 'square', 'squeeze', 'stack', 'std', 'std_mean', 'sub', 'sum', 'swapaxes', 't', 'take_along_dim', 'tan', 'tanh', 'tensor', 'tile', 'transpose', 'tril', 'triu', 'true_divide', 'trunc', 'uint8', 'unbind', 'unflatten', 'unsqueeze', 'var', 'var_mean', 'vstack', 'where', 'zeros', 'zeros_like']
