"""dtypes and PyTorch's type-promotion rules (including Python scalars and 0-d tensors)."""
import numpy as np


class dtype:
    __slots__ = ("name", "np", "is_floating_point", "is_signed", "itemsize", "_cat")

    def __init__(self, name, np_dtype, category):
        self.name = name
        self.np = np.dtype(np_dtype)
        self._cat = category  # 0 bool, 1 integer, 2 floating
        self.is_floating_point = category == 2
        self.is_signed = self.np.kind in "if"
        self.itemsize = self.np.itemsize

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

half, float, double = float16, float32, float64
short, int, long = int16, int32, int64

ALL = (bool_, uint8, int8, int16, int32, int64, float16, float32, float64)
_from_np = {d.np: d for d in ALL}
_names = {d.name: d for d in ALL}


def _by_name(name):
    return _names[name]


def from_numpy_dtype(np_dtype):
    d = _from_np.get(np_dtype)
    if d is None:
        d = _from_np.get(np.dtype(np_dtype))
        if d is None:
            raise TypeError(f"unsupported array dtype {np_dtype}; Phalanx supports "
                            f"{', '.join(x.name for x in ALL)}")
    return d


def to_numpy_dtype(d):
    """Accept a phalanx dtype, a NumPy dtype, a Python type or a name."""
    if isinstance(d, dtype):
        return d.np
    if d is None:
        return None
    if d is bool:
        return np.dtype(np.bool_)
    if d is builtins_float:
        return get_default_dtype().np
    if d is builtins_int:
        return np.dtype(np.int64)
    if isinstance(d, str) and d in _names:
        return _names[d].np
    return from_numpy_dtype(np.dtype(d)).np


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
        fa, fb = a.kind == "f", b.kind == "f"
        if a == b or b.kind == "b" or (fa and not fb):
            r = a
        elif a.kind == "b" or (fb and not fa):
            r = b
        else:
            r = np.promote_types(a, b)
        _promote_cache[key] = r
    return r


def promote_types(type1, type2):
    """The dtype PyTorch's promotion gives two dtypes: `px.promote_types(px.int8, px.uint8)`."""
    return from_numpy_dtype(_promote(to_numpy_dtype(type1), to_numpy_dtype(type2)))


def _scalar_category(x):
    if isinstance(x, bool):
        return 0
    if isinstance(x, _b.int):
        return 1
    return 2


def result_type(*operands):
    """The NumPy dtype of an elementwise op over tensors (objects with `_data`) and scalars."""
    dim_t = zero_t = None
    dim_c = zero_c = scal_c = -1
    for o in operands:
        arr = getattr(o, "_data", None)
        if arr is None:
            if isinstance(o, (_b.int, _b.float, bool)) or isinstance(o, np.generic):
                if isinstance(o, np.generic):
                    o = o.item()
                scal_c = max(scal_c, _scalar_category(o))
            continue
        dt = arr.dtype
        c = 2 if dt.kind in "fc" else (0 if dt.kind == "b" else 1)
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
    if scal_c > best_c:
        best = (np.dtype(np.bool_) if scal_c == 0 else
                np.dtype(np.int64) if scal_c == 1 else get_default_dtype().np)
        if best_c == 1 and scal_c == 2 or best_c == 0 and scal_c == 2:
            best = get_default_dtype().np
    return best
