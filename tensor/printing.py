"""repr() of tensors as PyTorch prints them: its element formats, line wrapping, summaries
and suffixes (a port prints what the original printed)."""
import numpy as np

from . import backend, dtypes, print_options

_DEFAULT_SHOWN = {"float32", "int64", "bool"}


class _Formatter:
    """PyTorch's element formatting for one set of values: integers and bools as they print;
    floats in fixed point with `precision` decimals, as `3.` when all are integral, or in
    scientific notation when big, tiny or spread over more than three decades. Widths come
    from the nonzero finite values (those shown, when summarised); shorter strings are padded
    to the left."""

    def __init__(self, values):
        self.floating = values.dtype.kind == "f"
        self.int_mode, self.sci_mode, self.width = True, False, 1
        opts = print_options.current
        self.precision = opts.precision
        flat = values.reshape(-1)
        if not self.floating:
            self.width = max([len(f"{v}") for v in flat] + [1])
            return
        finite = flat[np.isfinite(flat) & (flat != 0)].astype(np.float64)
        if not finite.size:
            return
        magnitude = np.abs(finite)
        self.int_mode = bool((finite == np.ceil(finite)).all())
        big = magnitude.max() / magnitude.min() > 1000.0 or magnitude.max() > 1.0e8
        self.sci_mode = (big or (not self.int_mode and magnitude.min() < 1.0e-4)) \
            if opts.sci_mode is None else opts.sci_mode
        if self.sci_mode:
            texts = [f"{v:.{self.precision}e}" for v in finite]
        elif self.int_mode:
            texts = [f"{v:.0f}." for v in finite]
        else:
            texts = [f"{v:.{self.precision}f}" for v in finite]
        self.width = max(len(t) for t in texts)

    def format(self, value):
        if not self.floating:
            text = f"{value}"
        elif self.sci_mode:
            text = f"{float(value):{self.width}.{self.precision}e}"
        elif self.int_mode:
            text = f"{float(value):.0f}" + ("" if np.isinf(value) or np.isnan(value) else ".")
        else:
            text = f"{float(value):.{self.precision}f}"
        return text.rjust(self.width)


def _shown(a, edge):
    """The values a summarised print shows (PyTorch's get_summarized_data)."""
    if a.ndim == 0:
        return a
    if a.shape[0] > 2 * edge:
        a = np.concatenate([a[:edge], a[-edge:]])
    if a.ndim == 1:
        return a
    return np.stack([_shown(row, edge) for row in a])


def _element_formatter(a, summarize):
    """(format one element, its width) for the values of `a` that are shown."""
    shown = _shown(a, print_options.current.edgeitems) if summarize else a
    if a.dtype.kind != "c":
        f = _Formatter(shown)
        return f.format, f.width
    real, imag = _Formatter(shown.real), _Formatter(shown.imag)

    def complex_text(z):
        im = (imag.format(z.imag) + "j").lstrip()
        return real.format(z.real) + (im if im[0] in "+-" else "+" + im)
    return complex_text, real.width + imag.width + 1


def _layout(a, indent, summarize, fmt, width):
    """PyTorch's nested brackets: rows joined by ',' and a newline per inner dimension, a
    vector wrapped to the line width, '...' where summarised."""
    edge = print_options.current.edgeitems
    cut = summarize and a.shape[0] > 2 * edge
    if a.ndim == 1:
        per_line = max(1, (print_options.current.linewidth - indent) // (width + 2))
        items = [fmt(v) for v in a[:edge]] + [" ..."] + [fmt(v) for v in a[-edge:]] \
            if cut else [fmt(v) for v in a]
        lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
        return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"
    rows = [_layout(r, indent + 1, summarize, fmt, width) for r in a[:edge]] + ["..."] + \
        [_layout(r, indent + 1, summarize, fmt, width) for r in a[len(a) - edge:]] \
        if cut else [_layout(r, indent + 1, summarize, fmt, width) for r in a]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(rows) + "]"


def _body(a, indent):
    if a.size == 0:
        return "[]"
    summarize = a.size > print_options.current.threshold_int
    fmt, width = _element_formatter(a, summarize)
    if a.ndim == 0:
        return fmt(a[()])
    return _layout(a, indent, summarize, fmt, width)


def _with_suffixes(text, suffixes, indent):
    """`, suffix` each, or on a line of its own when the last line would pass the width."""
    last = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last + len(suffix) + 2 > print_options.current.linewidth:
            text += ",\n" + " " * indent + suffix
            last = indent + len(suffix)
        else:
            text += ", " + suffix
            last += len(suffix) + 2
    return text + ")"


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
    if t.is_meta:      # no values: PyTorch prints the shape and dtype
        suffixes = ["device='meta'", f"size={tuple(t.shape)}"]
        if t.dtype is not dtypes.get_default_dtype():
            suffixes.append(f"dtype={t.dtype!r}")
        suffixes += [f"grad_fn=<{t.grad_fn.name()}>"] if t.grad_fn is not None else \
            ["requires_grad=True"] if t.requires_grad else []
        return _with_suffixes("tensor(...", suffixes, len("tensor("))
    a = backend.to_device(t._data, "cpu")
    # bfloat16 prints through float32 (exact: every bfloat16 is a float32), as in PyTorch
    shown = a.astype(np.float32) if a.dtype == dtypes.BF16_NP else a
    prefix = "tensor("
    suffixes = [f"device='{t.device}'"] if t.device.type != "cpu" else []
    if a.size == 0 and a.ndim != 1:
        suffixes.append(f"size={tuple(a.shape)}")
    if show_dtype and _dtype_shown(a):
        suffixes.append(f"dtype={dtypes.from_numpy_dtype(a.dtype)!r}")
    if t.grad_fn is not None:
        suffixes.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        suffixes.append("requires_grad=True")
    return _with_suffixes(prefix + _body(shown, len(prefix)), suffixes, len(prefix))
