"""repr() of tensors, close to PyTorch's."""
import numpy as np

from . import backend, dtypes, print_options

_DEFAULT_SHOWN = {"float32", "int64", "bool"}


def _body(a):
    if a.size == 0:
        return "[]"
    opts = print_options.current
    kw = dict(separator=", ", threshold=opts.threshold_int, edgeitems=opts.edgeitems,
              prefix="tensor(")
    if opts.linewidth_set:
        kw.update(max_line_width=opts.linewidth)
    if a.dtype.kind == "c":
        kw.update(formatter={"complex_kind": _complex_formatter(a)})
    elif a.dtype.kind == "f":
        finite = a[np.isfinite(a)].astype(np.float64)
        integral = finite.size == 0 or bool((finite == np.round(finite)).all())
        nonzero = np.abs(finite[finite != 0])
        # PyTorch's rule: scientific when values are big, tiny, or spread over > 3 decades
        big = bool(nonzero.size) and (nonzero.max() >= 1e8 or nonzero.min() < 1e-4 or
                                      nonzero.max() / nonzero.min() > 1000.0)
        digits = opts.precision
        if opts.sci_mode or (opts.sci_mode is None and big):
            kw.update(formatter={"float_kind": _scientific(finite, digits)})
        elif integral and not opts.sci_mode:
            extremes = (finite.min(), finite.max()) if finite.size else ()
            width = max((len(f"{v:.0f}.") for v in extremes), default=0)
            kw.update(formatter={"float_kind": lambda v: (f"{v:.0f}." if np.isfinite(v)
                                                          else str(v)).rjust(width)})
        else:
            kw.update(precision=digits, floatmode="fixed", suppress_small=True)
    elif a.dtype.kind == "b":
        true = " True" if not a.all() else "True"  # right-aligned with False, as in torch
        kw.update(formatter={"bool": lambda v: true if v else "False"})
    return np.array2string(a, **kw)


def _scientific(finite, digits):
    """`1.2345e+03` with `digits` decimals, right-aligned to the widest value as PyTorch
    does (the widest is among the extremes: the signs and the exponents' lengths)."""
    if finite.size:
        smallest = np.abs(finite).min()
        extremes = [finite.min(), finite.max(), -smallest if (finite < 0).any() else smallest]
        width = max(len(f"{v:.{digits}e}") for v in extremes)
    else:
        width = 0
    return lambda v: (f"{v:.{digits}e}" if np.isfinite(v) else str(v)).rjust(width)


def _part_formatter(parts):
    """PyTorch's choice for one set of floats: scientific when big or tiny, `3.` when all
    integral, else 4 decimals; every string padded to the widest."""
    finite = parts[np.isfinite(parts)].astype(np.float64)
    nonzero = np.abs(finite[finite != 0])
    if finite.size and (np.abs(finite).max() >= 1e8 or (nonzero.size and nonzero.min() < 1e-4)):
        def one(v):
            return f"{v:.4e}"
    elif finite.size == 0 or bool((finite == np.round(finite)).all()):
        def one(v):
            return f"{v:.0f}." if np.isfinite(v) else str(v)
    else:
        def one(v):
            return f"{v:.4f}" if np.isfinite(v) else str(v)
    width = max(len(one(v)) for v in parts.reshape(-1))
    return lambda v: one(v).rjust(width)


def _complex_formatter(a):
    """Real and imaginary parts formatted apart, each by its own values (as PyTorch)."""
    re, im = _part_formatter(a.real), _part_formatter(np.abs(a.imag))
    return lambda z: f"{re(z.real)}{'-' if np.signbit(z.imag) else '+'}{im(abs(z.imag)).strip()}j"


def _dtype_shown(a):
    """Whether PyTorch names the dtype of a tensor with these values."""
    d = dtypes.from_numpy_dtype(a.dtype)
    if d.is_complex:
        return a.dtype != dtypes.get_default_complex_np() or a.size == 0
    if d.name not in _DEFAULT_SHOWN or (d.is_floating_point and
                                        d is not dtypes.get_default_dtype()) or a.size == 0:
        return not (a.size == 0 and d is dtypes.get_default_dtype())
    return False


def tensor_repr(t, show_dtype=True):
    """`tensor(...)` as PyTorch prints it; a sparse tensor's fields leave the dtype to its
    own last line (`show_dtype=False`)."""
    a = backend.to_device(t._data, "cpu")
    # bfloat16 prints through float32 (exact: every bfloat16 is a float32), as in PyTorch
    parts = [_body(a.astype(np.float32) if a.dtype == dtypes.BF16_NP else a)]
    if t.device.type != "cpu":
        parts.append(f"device='{t.device}'")
    if show_dtype and _dtype_shown(a):
        parts.append(f"dtype={dtypes.from_numpy_dtype(a.dtype)!r}")
    if t.grad_fn is not None:
        parts.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        parts.append("requires_grad=True")
    return "tensor(" + ", ".join(parts) + ")"
