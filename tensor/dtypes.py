"""dtypes and PyTorch's type-promotion rules (including Python scalars and 0-d tensors).

NumPy has no bfloat16: `ml_dtypes` supplies one as a NumPy dtype (kind 'V', not 'f', so code
that asks "is this floating?" goes through `is_floating_np`). Ops that cannot compute in it
compute in float32 and round back (tensor/bf16_compute.py).
"""
import ml_dtypes
import numpy as np


class dtype:
    __slots__ = ("name", "np", "is_floating_point", "is_complex", "is_signed", "itemsize",
                 "_cat")

    def __init__(self, name, np_dtype, category):
        self.name = name
        self.np = np.dtype(np_dtype)
        self._cat = category  # 0 bool, 1 integer, 2 floating, 3 complex
        self.is_floating_point = category == 2
        self.is_complex = category == 3
        self.is_signed = category >= 2 or self.np.kind == "i"
        self.itemsize = self.np.itemsize

    def to_real(self):
        """The dtype of a complex dtype's parts (complex64 -> float32); real dtypes unchanged."""
        return _by_name(_REAL_OF.get(self.name, self.name))

    def to_complex(self):
        """The complex dtype whose parts are this floating dtype (float64 -> complex128)."""
        name = _COMPLEX_OF.get(self.name, self.name if self.is_complex else None)
        if name is None:
            raise _no_complex_of(self.np)
        return _by_name(name)

    def __repr__(self):
        return f"phalanx.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))


bool_ = dtype("bool", np.bool_, 0)
uint8 = dtype("uint8", np.uint8, 1)
int8 = dtype("int8", np.int8, 1)
int16 = dtype("int16", np.int16, 1)
int32 = dtype("int32", np.int32, 1)
int64 = dtype("int64", np.int64, 1)
float16 = dtype("float16", np.float16, 2)
float32 = dtype("float32", np.float32, 2)
float64 = dtype("float64", np.float64, 2)
bfloat16 = dtype("bfloat16", ml_dtypes.bfloat16, 2)
complex64 = dtype("complex64", np.complex64, 3)
complex128 = dtype("complex128", np.complex128, 3)

half, float, double = float16, float32, float64
short, int, long = int16, int32, int64
cfloat, cdouble = complex64, complex128

ALL = (bool_, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64,
       complex64, complex128)
_REAL_OF = {"complex64": "float32", "complex128": "float64"}
_COMPLEX_OF = {"float32": "complex64", "float64": "complex128", "bfloat16": "complex64"}
_COMPLEX_NP = {np.dtype(np.float32): np.dtype(np.complex64),
               np.dtype(np.float64): np.dtype(np.complex128)}
_from_np = {d.np: d for d in ALL}
_names = {d.name: d for d in ALL}


BF16_NP = bfloat16.np


def _no_complex_of(np_dtype):
    if np_dtype == np.float16:
        return NotImplementedError("complex32 (ComplexHalf, the complex type of float16) is not "
                                   "supported; convert to float32 first (x.float())")
    return RuntimeError(f"no complex dtype has parts of dtype {np_dtype}; only float32, "
                        f"float64 and bfloat16 have one")


def complex_np(np_dtype):
    """The NumPy complex dtype whose parts are floating `np_dtype` (bfloat16 -> complex64)."""
    if np_dtype.kind == "c":
        return np_dtype
    if np_dtype == BF16_NP:
        return np.dtype(np.complex64)
    c = _COMPLEX_NP.get(np_dtype)
    if c is None:
        raise _no_complex_of(np_dtype)
    return c


def is_floating_np(np_dtype):
    """True for NumPy/CuPy floating dtypes, bfloat16 (kind 'V') included."""
    return np_dtype.kind in "fc" or np_dtype == BF16_NP


def _by_name(name):
    return _names[name]


def from_numpy_dtype(np_dtype):
    d = _from_np.get(np_dtype)
    if d is bfloat16:
        _bfloat16_in_use()
    elif d is None:
        d = _from_np.get(np.dtype(np_dtype))
        if d is None:
            raise TypeError(f"unsupported array dtype {np_dtype}; Phalanx supports "
                            f"{', '.join(x.name for x in ALL)}")
    return d


def to_numpy_dtype(d):
    """Accept a phalanx dtype, a NumPy dtype, a Python type or a name."""
    if isinstance(d, dtype):
        if d is bfloat16:
            _bfloat16_in_use()
        return d.np
    if d is None:
        return None
    if d is bool:
        return np.dtype(np.bool_)
    if d is builtins_float:
        return get_default_dtype().np
    if d is builtins_int:
        return np.dtype(np.int64)
    if d is _b.complex:
        return get_default_complex_np()
    if isinstance(d, str) and d in _names:
        return to_numpy_dtype(_names[d])
    return from_numpy_dtype(np.dtype(d)).np


def _bfloat16_in_use():
    """The first bfloat16 tensor turns on float32 compute for ops that cannot compute in
    bfloat16 (one interceptor at the dispatch point, innermost); until then nothing is paid."""
    if not _bf16_compute_on:
        from . import bf16_compute  # imports the op library, which imports this module
        bf16_compute.install()
        _bf16_compute_on.append(True)


_bf16_compute_on = []


import builtins as _b  # noqa: E402
builtins_float, builtins_int = _b.float, _b.int

_default = [float32]


def get_default_dtype():
    return _default[0]


def set_default_dtype(d):
    d = from_numpy_dtype(to_numpy_dtype(d))
    if not d.is_floating_point:
        raise TypeError(f"set_default_dtype only supports floating point dtypes, got {d}")
    _default[0] = d


# ---------------------------------------------------------------------------------------------
# Promotion. Operands are grouped as dimensioned tensors, 0-d tensors and Python scalars; the
# highest category decides which group's dtypes are combined (PyTorch's rule).

_promote_cache = {}


def _promote(a, b):
    """Result NumPy dtype of two NumPy dtypes, PyTorch style: a floating type beats any
    integer type whatever their sizes (int32 + float16 -> float16), bool beats nothing, and
    within a category NumPy's rule holds (uint8 + int8 -> int16)."""
    key = (a, b)
    r = _promote_cache.get(key)
    if r is None:
        fa, fb = is_floating_np(a), is_floating_np(b)
        if a.kind == "c" or b.kind == "c":
            r = _promote_complex(a, b)
        elif a == b or b.kind == "b" or (fa and not fb):
            r = a
        elif a.kind == "b" or (fb and not fa):
            r = b
        elif fa and (a == BF16_NP or b == BF16_NP):
            # bfloat16 with float16 -> float32 (neither holds the other); with a wider float,
            # that float
            other = b if a == BF16_NP else a
            r = np.dtype(np.float32) if other.itemsize <= 2 else other
        else:
            r = np.promote_types(a, b)
        _promote_cache[key] = r
    return r


def _promote_complex(a, b):
    """Complex beats every real type; a floating partner widens the parts (float64 with
    complex64 -> complex128), float16 and bfloat16 do not (they fit in complex64)."""
    if a.kind == "c" and b.kind == "c":
        return a if a.itemsize >= b.itemsize else b
    c, other = (a, b) if a.kind == "c" else (b, a)
    if other == np.float64:
        return np.dtype(np.complex128)
    return c


def promote_types(type1, type2):
    """The dtype PyTorch's promotion gives two dtypes: `px.promote_types(px.int8, px.uint8)`."""
    return from_numpy_dtype(_promote(to_numpy_dtype(type1), to_numpy_dtype(type2)))


def _scalar_category(x):
    if isinstance(x, bool):
        return 0
    if isinstance(x, _b.int):
        return 1
    if isinstance(x, _b.complex):
        return 3
    return 2


def get_default_complex_np():
    """complex64 while the default dtype is float32 (or narrower), complex128 with float64."""
    return np.dtype(np.complex128 if get_default_dtype() is float64 else np.complex64)


def result_type(*operands):
    """The NumPy dtype of an elementwise op over tensors (objects with `_data`) and scalars."""
    dim_t = zero_t = None
    dim_c = zero_c = scal_c = -1
    for o in operands:
        arr = getattr(o, "_data", None)
        if arr is None:
            if isinstance(o, (_b.int, _b.float, bool, _b.complex)) or isinstance(o, np.generic):
                if isinstance(o, np.generic):
                    o = o.item()
                scal_c = max(scal_c, _scalar_category(o))
            continue
        dt = arr.dtype
        c = (3 if dt.kind == "c" else 2) if is_floating_np(dt) else (0 if dt.kind == "b" else 1)
        if arr.ndim:
            dim_t = dt if dim_t is None else _promote(dim_t, dt)
            dim_c = max(dim_c, c)
        else:
            zero_t = dt if zero_t is None else _promote(zero_t, dt)
            zero_c = max(zero_c, c)
    best = dim_t
    best_c = dim_c
    if zero_c > best_c:
        best, best_c = zero_t, zero_c
    elif zero_c == best_c and zero_t is not None and dim_t is not None:
        pass  # same category: dimensioned tensors decide
    elif best is None:
        best, best_c = zero_t, zero_c
    if scal_c == 3 or best_c == 3 or zero_c == 3:
        return _complex_result_type(dim_t, zero_t, scal_c)
    if scal_c > best_c:
        best = (np.dtype(np.bool_) if scal_c == 0 else
                np.dtype(np.int64) if scal_c == 1 else get_default_dtype().np)
        if best_c == 1 and scal_c == 2 or best_c == 0 and scal_c == 2:
            best = get_default_dtype().np
    return best


def _complex_result_type(dim_t, zero_t, scal_c):
    """PyTorch's rule when a complex operand takes part: the groups (dimensioned tensors, 0-d
    tensors, Python numbers) are combined in that order of priority; a complex group beats a
    real one, but a floating group of higher priority keeps its precision (float64 tensor *
    complex64 0-d tensor -> complex128, float32 tensor * 1j -> complex64)."""
    wrapped = None if scal_c < 0 else (
        np.dtype(np.bool_) if scal_c == 0 else np.dtype(np.int64) if scal_c == 1 else
        get_default_dtype().np if scal_c == 2 else get_default_complex_np())
    return _combine_categories(dim_t, _combine_categories(zero_t, wrapped))


def _combine_categories(higher, lower):
    if higher is None:
        return lower
    if lower is None or higher.kind == "c":
        return higher
    if lower.kind == "c":
        return complex_np(higher) if is_floating_np(higher) else lower
    if is_floating_np(higher):
        return higher
    if higher.kind == "b" or is_floating_np(lower):
        return _promote(higher, lower)
    return higher


class finfo:
    """Machine limits of a floating dtype, as `torch.finfo`: bits, eps, max, min, tiny
    (= smallest_normal), resolution, dtype. `finfo()` describes the default dtype."""

    def __init__(self, type=None):
        d = get_default_dtype() if type is None else from_numpy_dtype(to_numpy_dtype(type))
        d = d.to_real()  # a complex dtype is described by its parts' (as in PyTorch)
        if not d.is_floating_point:
            raise TypeError(f"finfo needs a floating point dtype, got {d}; use "
                            f"phalanx.iinfo for integer dtypes")
        info = ml_dtypes.finfo(d.np) if d is bfloat16 else np.finfo(d.np)
        self.bits = d.itemsize * 8
        self.eps = _b.float(info.eps)
        self.max = _b.float(info.max)
        self.min = _b.float(info.min)
        self.tiny = self.smallest_normal = _b.float(info.smallest_normal)
        self.resolution = 10.0 ** -info.precision  # exact, not rounded to the dtype
        self.dtype = d.name

    def __repr__(self):
        return (f"finfo(resolution={self.resolution:g}, min={self.min:g}, max={self.max:g}, "
                f"eps={self.eps:g}, smallest_normal={self.smallest_normal:g}, "
                f"tiny={self.tiny:g}, dtype={self.dtype})")


class iinfo:
    """Limits of an integer dtype, as `torch.iinfo`: bits, max, min, dtype."""

    def __init__(self, type):
        d = from_numpy_dtype(to_numpy_dtype(type))
        if d.is_floating_point or d is bool_:
            raise TypeError(f"iinfo needs an integer dtype, got {d}; use phalanx.finfo for "
                            f"floating point dtypes")
        info = np.iinfo(d.np)
        self.bits = d.itemsize * 8
        self.max = _b.int(info.max)
        self.min = _b.int(info.min)
        self.dtype = d.name

    def __repr__(self):
        return f"iinfo(min={self.min}, max={self.max}, dtype={self.dtype})"
