"""`gradient`: numerical derivatives by finite differences (torch.gradient, numpy.gradient).

Second-order central differences inside, first- or second-order one-sided differences at the
two edges, along each requested dimension; samples are `spacing` apart (a number, one number
per dimension) or lie at given coordinates (one 1-D tensor per dimension). Written with tensor
ops, so it is differentiable like any composite.
"""
import numbers

from .ops.shape import cat
from .tensor import Tensor


def _as_dims(dim, ndim):
    dims = range(ndim) if dim is None else ([dim] if isinstance(dim, int) else list(dim))
    out = [d % ndim for d in dims]
    if len(set(out)) != len(out):
        raise RuntimeError(f"gradient: dim {dim!r} names a dimension twice")
    return out


def _spacings(spacing, dims):
    if isinstance(spacing, (numbers.Number, Tensor)) and not (
            isinstance(spacing, Tensor) and spacing.ndim == 1):
        return [spacing] * len(dims)
    spacing = list(spacing)
    if len(spacing) != len(dims):
        raise RuntimeError(f"torch.gradient expected spacing to be unspecified, a scalar or a "
                           f"list of length equal to the number of dims ({len(dims)}), got "
                           f"a list of length {len(spacing)}")
    return spacing


def _along(t, d, ndim):
    """A 1-D tensor `t` shaped to broadcast along dimension `d`."""
    return t.reshape((1,) * d + (-1,) + (1,) * (ndim - d - 1))


def _uniform(f, d, h, edge_order):
    n = f.shape[d]
    inner = (f.narrow(d, 2, n - 2) - f.narrow(d, 0, n - 2)) / (2 * h)
    f0, f1, fl, fm = (f.narrow(d, i, 1) for i in (0, 1, n - 1, n - 2))
    if edge_order == 1:
        first, last = (f1 - f0) / h, (fl - fm) / h
    else:
        f2, fk = f.narrow(d, 2, 1), f.narrow(d, n - 3, 1)
        first = (-1.5 * f0 + 2 * f1 - 0.5 * f2) / h
        last = (0.5 * fk - 2 * fm + 1.5 * fl) / h
    return cat([first, inner, last], d)


def _coordinates(f, d, x, edge_order):
    n, ndim = f.shape[d], f.ndim
    if x.ndim != 1 or x.shape[0] != n:
        raise RuntimeError(f"torch.gradient expected each tensor in spacing to be 1-D with the "
                           f"size of its dimension ({n}), got shape {list(x.shape)}")
    dx = x[1:] - x[:-1]
    hl, hr = _along(dx[:-1], d, ndim), _along(dx[1:], d, ndim)
    inner = (hl * hl * f.narrow(d, 2, n - 2) - hr * hr * f.narrow(d, 0, n - 2) +
             (hr * hr - hl * hl) * f.narrow(d, 1, n - 2)) / (hl * hr * (hl + hr))
    f0, f1, fl, fm = (f.narrow(d, i, 1) for i in (0, 1, n - 1, n - 2))
    if edge_order == 1:
        first, last = (f1 - f0) / dx[0], (fl - fm) / dx[-1]
    else:
        a, b = dx[0], dx[1]
        first = (-(2 * a + b) / (a * (a + b)) * f0 + (a + b) / (a * b) * f1
                 - a / (b * (a + b)) * f.narrow(d, 2, 1))
        a, b = dx[-2], dx[-1]
        last = (b / (a * (a + b)) * f.narrow(d, n - 3, 1) - (a + b) / (a * b) * fm
                + (2 * b + a) / (b * (a + b)) * fl)
    return cat([first, inner, last], d)


def gradient(input, *, spacing=1, dim=None, edge_order=1):
    """One tensor per dimension in `dim` (all by default): d input / d x_dim."""
    if edge_order not in (1, 2):
        raise RuntimeError(f"torch.gradient only supports edge_order=1 and edge_order=2, got "
                           f"{edge_order}")
    dims = _as_dims(dim, input.ndim)
    f = input if input.is_floating_point() or input._data.dtype.kind == "c" else input.float()
    results = []
    for d, h in zip(dims, _spacings(spacing, dims)):
        if f.shape[d] < edge_order + 1:
            raise RuntimeError(f"torch.gradient expected each dimension size to be at least "
                               f"edge_order+1 ({edge_order + 1}), got shape {list(f.shape)}")
        if isinstance(h, Tensor) and h.ndim == 1:
            results.append(_coordinates(f, d, h, edge_order))
        else:
            results.append(_uniform(f, d, h.item() if isinstance(h, Tensor) else h,
                                    edge_order))
    return tuple(results)
