"""`phalanx.testing`: torch.testing's assert_close and make_tensor.

assert_close compares tensors (or NumPy arrays, Python numbers, and sequences and mappings of
them) elementwise: |actual - expected| <= atol + rtol * |expected|, with PyTorch's default
tolerances for the dtype (the looser of the two), after checking shape, dtype and device.
"""
import collections.abc
import numbers

import numpy as np

from .tensor import Tensor, dtypes, tensor as _tensor
from .tensor.backend import to_host

__all__ = ["assert_close", "make_tensor"]

# (rtol, atol) by dtype name: PyTorch's defaults; exact for integers and bool
_TOLERANCES = {"float16": (1e-3, 1e-5), "bfloat16": (1.6e-2, 1e-5), "float32": (1.3e-6, 1e-5),
               "float64": (1e-7, 1e-7), "complex64": (1.3e-6, 1e-5),
               "complex128": (1e-7, 1e-7)}


def _leaf(value):
    """(kind, host array, dtype name, device) of a tensor-like leaf."""
    if isinstance(value, Tensor):
        return "tensor", to_host(value.detach()._data), value.dtype.name, \
            str(value.device)
    if isinstance(value, np.ndarray):
        return "array", value, str(value.dtype), "cpu"
    if isinstance(value, (bool, numbers.Number)):
        t = _tensor(value)
        return type(value).__name__, t.numpy(), t.dtype.name, "cpu"
    raise TypeError(f"No comparison pair was able to handle inputs of type "
                    f"{type(value).__name__}")


def _fail(msg, default, path):
    where = f"The failure occurred for item {path}" if path else ""
    text = default if msg is None else (msg(default) if callable(msg) else msg)
    raise AssertionError(text + (f"\n\n{where}" if where and msg is None else ""))


def _compare(actual, expected, rtol, atol, equal_nan, check_device, check_dtype, msg, path):
    a_kind, a, a_dtype, a_dev = _leaf(actual)
    e_kind, e, e_dtype, e_dev = _leaf(expected)
    if a_kind != e_kind and not {a_kind, e_kind} <= {"int", "float", "bool", "complex"}:
        _fail(msg, f"Comparing objects of types {type(actual).__name__} and "
                   f"{type(expected).__name__} is not supported", path)
    if a.shape != e.shape:
        _fail(msg, f"The values for attribute 'shape' do not match: {list(a.shape)} != "
                   f"{list(e.shape)}.", path)
    if check_device and a_dev != e_dev:
        _fail(msg, f"The values for attribute 'device' do not match: {a_dev} != {e_dev}.",
              path)
    if check_dtype and a_dtype != e_dtype:
        _fail(msg, f"The values for attribute 'dtype' do not match: phalanx.{a_dtype} != "
                   f"phalanx.{e_dtype}.", path)
    if rtol is None:
        rtol, atol = (max(pair) for pair in zip(_TOLERANCES.get(a_dtype, (0.0, 0.0)),
                                                _TOLERANCES.get(e_dtype, (0.0, 0.0))))
    wide = np.complex128 if np.iscomplexobj(a) or np.iscomplexobj(e) else np.float64
    a, e = a.astype(wide), e.astype(wide)
    with np.errstate(invalid="ignore"):
        close = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=equal_nan)
    if close.all():
        return
    diff = np.abs(a - e)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = diff / np.abs(e)
    bad = int((~close).sum())
    worst_abs = np.unravel_index(np.argmax(_mismatch_score(diff, close)), a.shape)
    worst_rel = np.unravel_index(np.argmax(_mismatch_score(rel, close)), a.shape)
    what = "Scalars" if a.ndim == 0 and a_kind != "tensor" else "Tensor-likes"
    _fail(msg, f"{what} are not close!\n\nMismatched elements: {bad} / {a.size} "
               f"({100.0 * bad / max(a.size, 1):.1f}%)\nGreatest absolute difference: "
               f"{diff[worst_abs]} at index {tuple(int(i) for i in worst_abs)} (up to {atol} "
               f"allowed)\nGreatest relative difference: {rel[worst_rel]} at index "
               f"{tuple(int(i) for i in worst_rel)} (up to {rtol} allowed)", path)


def _mismatch_score(values, close):
    """Where to report: the largest difference among the mismatches (NaN counts as largest)."""
    return np.where(close, -np.inf, np.where(np.isnan(values), np.inf, values))


def _walk(actual, expected, path, compare, msg):
    if isinstance(expected, collections.abc.Mapping):
        if not isinstance(actual, collections.abc.Mapping) or set(actual) != set(expected):
            _fail(msg, f"The keys of the mappings do not match: {sorted(map(str, actual))} != "
                       f"{sorted(map(str, expected))}", path)
        for key in expected:
            _walk(actual[key], expected[key], path + [key], compare, msg)
    elif isinstance(expected, collections.abc.Sequence) and not isinstance(expected, str):
        if not isinstance(actual, collections.abc.Sequence) or len(actual) != len(expected):
            _fail(msg, f"The length of the sequences mismatch: {len(actual)} != "
                       f"{len(expected)}", path)
        for i, (a, e) in enumerate(zip(actual, expected)):
            _walk(a, e, path + [i], compare, msg)
    else:
        compare(actual, expected, "".join(f"[{p!r}]" for p in path))


def assert_close(actual, expected, *, allow_subclasses=True, rtol=None, atol=None,
                 equal_nan=False, check_device=True, check_dtype=True, check_layout=True,
                 check_stride=False, msg=None):
    """Raise AssertionError (saying where and by how much) unless `actual` is close to
    `expected`; rtol and atol are given together or not at all."""
    if (rtol is None) != (atol is None):
        raise ValueError(f"Both 'rtol' and 'atol' must be either specified or omitted, but "
                         f"got no {'rtol' if rtol is None else 'atol'}.")
    if check_stride:
        raise NotImplementedError("assert_close: check_stride=True is not supported (Phalanx "
                                  "tensors do not promise PyTorch's strides)")

    def compare(a, e, path):
        either_tensor = isinstance(a, Tensor) or isinstance(e, Tensor)
        if not allow_subclasses and either_tensor and type(a) is not type(e):
            # e.g. a Parameter against a plain tensor
            where = f"\n\nThe failure occurred for item {path}" if path else ""
            raise TypeError(f"No comparison pair was able to handle inputs of type {type(a)} "
                            f"and {type(e)}.{where}")
        _compare(a, e, rtol, atol, equal_nan, check_device, check_dtype, msg, path)
    _walk(actual, expected, [], compare, msg)


def make_tensor(*shape, dtype, device=None, low=None, high=None, requires_grad=False,
                noncontiguous=False, exclude_zero=False, memory_format=None):
    """A tensor of random values in [low, high) (PyTorch's defaults: [-9, 9] for floating
    types, [-9, 10) for integers, [0, 10) for uint8)."""
    if noncontiguous or memory_format is not None:
        raise NotImplementedError("make_tensor: noncontiguous= and memory_format= are not "
                                  "supported")
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    rng = np.random.default_rng()
    np_dtype = dtypes.to_numpy_dtype(dtype)
    if dtype is dtypes.bool_:
        values = rng.integers(0, 2, shape).astype(bool)
    elif np.issubdtype(np_dtype, np.integer):
        lo = (0 if dtype is dtypes.uint8 else -9) if low is None else int(np.ceil(low))
        hi = 10 if high is None else int(np.floor(high))
        values = rng.integers(lo, hi, shape)
        if exclude_zero:
            values[values == 0] = 1
    else:
        lo, hi = (-9.0 if low is None else low), (9.0 if high is None else high)
        values = rng.uniform(lo, hi, shape)
        if exclude_zero:
            values[values == 0] = np.finfo(np_dtype).tiny
    return _tensor(values, dtype=dtype, device=device, requires_grad=requires_grad)
