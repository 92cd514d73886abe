"""repr() of tensors, close to PyTorch's."""
import numpy as np

from . import backend, dtypes

_DEFAULT_SHOWN = {"float32", "int64", "bool"}


def _body(a):
    if a.size == 0:
        return "[]"
    kw = dict(separator=", ", threshold=1000, edgeitems=3, prefix="tensor(")
    if a.dtype.kind == "f":
        finite = a[np.isfinite(a)].astype(np.float64)
        integral = finite.size == 0 or bool((finite == np.round(finite)).all())
        big = finite.size and (np.abs(finite).max() >= 1e8 or
                               (np.abs(finite[finite != 0]).min() < 1e-4
                                if (finite != 0).any() else False))
        if big:
            kw.update(formatter={"float_kind": lambda v: f"{v:.4e}"})
        elif integral:
            kw.update(formatter={"float_kind": lambda v: f"{v:.0f}." if np.isfinite(v)
                                 else str(v)})
        else:
            kw.update(precision=4, floatmode="fixed")
    elif a.dtype.kind == "b":
        true = " True" if not a.all() else "True"  # right-aligned with False, as in torch
        kw.update(formatter={"bool": lambda v: true if v else "False"})
    return np.array2string(a, **kw)


def tensor_repr(t):
    a = backend.to_device(t._data, "cpu")
    # bfloat16 prints through float32 (exact: every bfloat16 is a float32), as in PyTorch
    parts = [_body(a.astype(np.float32) if a.dtype == dtypes.BF16_NP else a)]
    if t.device.type != "cpu":
        parts.append(f"device='{t.device}'")
    d = dtypes.from_numpy_dtype(a.dtype)
    if d.name not in _DEFAULT_SHOWN or (d.is_floating_point and
                                        d is not dtypes.get_default_dtype()) or a.size == 0:
        if not (a.size == 0 and d is dtypes.get_default_dtype()):
            parts.append(f"dtype={d!r}")
    if t.grad_fn is not None:
        parts.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        parts.append("requires_grad=True")
    return "tensor(" + ", ".join(parts) + ")"
