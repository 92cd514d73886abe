"""unfold (im2col: every sliding block as a column) and fold (col2im: the columns summed back
into an image), each other's adjoint. unfold is one strided copy of the windows; fold
scatter-adds with an index computed on the host from the geometry; each one's backward is
the other's operation."""
import numpy as np

from ...autograd import Function
from ...tensor import Tensor, backend
from ...tensor.backend import array_module
from ...tensor.ops.indexing import IndexAdd
from .conv import ntuple


def _geometry(name, spatial, kernel_size, dilation, padding, stride):
    k = ntuple(kernel_size, 2, "kernel_size")
    d = ntuple(dilation, 2, "dilation")
    p = ntuple(padding, 2, "padding")
    s = ntuple(stride, 2, "stride")
    padded = tuple(n + 2 * q for n, q in zip(spatial, p))
    blocks = tuple((n - dd * (kk - 1) - 1) // ss + 1 for n, kk, dd, ss in zip(padded, k, d, s))
    if min(blocks) < 1:
        raise RuntimeError(f"{name}: the kernel {list(k)} with dilation {list(d)} does not fit "
                           f"the padded input of spatial size {list(padded)}")
    return k, d, p, s, padded, blocks


def _block_index(channels, k, d, s, padded, blocks):
    """(channels * kh * kw, L) flat positions in the padded (C, Hp, Wp) volume."""
    hp, wp = padded
    rows = np.arange(k[0])[:, None] * d[0] + np.arange(blocks[0])[None, :] * s[0]  # (kh, bh)
    cols = np.arange(k[1])[:, None] * d[1] + np.arange(blocks[1])[None, :] * s[1]  # (kw, bw)
    plane = (rows[:, None, :, None] * wp + cols[None, :, None, :]).reshape(
        k[0] * k[1], blocks[0] * blocks[1])
    return (np.arange(channels)[:, None, None] * (hp * wp) + plane[None]).reshape(
        channels * k[0] * k[1], -1)


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """(N, C, H, W) -> (N, C * kh * kw, L): each sliding block as a column."""
    if input.ndim not in (3, 4):
        raise NotImplementedError(f"Input Error: Only 3D or 4D input Tensors are supported "
                                  f"(got {input.ndim}D)")
    batched = input.ndim == 4
    x = input if batched else input.unsqueeze(0)
    n, c, h, w = x.shape
    k, d, p, s, padded, blocks = _geometry("unfold", (h, w), kernel_size, dilation, padding,
                                           stride)
    out = _Unfold.apply(x, (h, w), k, d, p, s, blocks)
    return out if batched else out.squeeze(0)


class _Unfold(Function):
    """im2col as one strided copy of the padded input's windows; its adjoint is fold."""
    node_name = "Im2Col"
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, x, hw, k, d, p, s, blocks):
        ctx.geometry = (hw, k, d, p, s)
        xp = array_module(x._data)
        a = x._data
        if any(p):
            a = xp.pad(a, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
        sn, sc, sh, sw = a.strides
        n, c = a.shape[:2]
        windows = xp.lib.stride_tricks.as_strided(
            a, (n, c, k[0], k[1], blocks[0], blocks[1]),
            (sn, sc, sh * d[0], sw * d[1], sh * s[0], sw * s[1]))
        return Tensor._make(xp.ascontiguousarray(windows).reshape(
            n, c * k[0] * k[1], blocks[0] * blocks[1]))

    @staticmethod
    def backward(ctx, g):
        hw, k, d, p, s = ctx.geometry
        return fold(g, hw, k, d, p, s), None, None, None, None, None, None


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """(N, C * kh * kw, L) -> (N, C, H, W): columns summed back where blocks overlap."""
    if input.ndim not in (2, 3):
        raise NotImplementedError(f"Input Error: Only unbatched (2D) or batched (3D) input "
                                  f"Tensors are supported (got {input.ndim}D)")
    batched = input.ndim == 3
    x = input if batched else input.unsqueeze(0)
    out_hw = ntuple(output_size, 2, "output_size")
    k, d, p, s, padded, blocks = _geometry("fold", out_hw, kernel_size, dilation, padding,
                                           stride)
    n, ckk, length = x.shape
    if ckk % (k[0] * k[1]):
        raise RuntimeError(f"Expected size of input's dimension 1 to be divisible by the "
                           f"product of kernel_size, but got input.size(1)={ckk} and "
                           f"kernel_size={tuple(k)}")
    if length != blocks[0] * blocks[1]:
        raise RuntimeError(f"Given output_size={tuple(out_hw)}, kernel_size={tuple(k)}, "
                           f"dilation={tuple(d)}, padding={tuple(p)}, stride={tuple(s)}, "
                           f"expected size of input's dimension 2 to match the calculated "
                           f"number of sliding blocks {blocks[0]} * {blocks[1]} = "
                           f"{blocks[0] * blocks[1]}, but got input.size(2)={length}.")
    c = ckk // (k[0] * k[1])
    index = _block_index(c, k, d, s, padded, blocks).reshape(-1)
    xp = backend.module_for_device(input.device)
    where = (slice(None), xp.asarray(index))
    summed = IndexAdd.apply(x.reshape(n, -1), (n, c * padded[0] * padded[1]), where, False)
    out = summed.reshape(n, c, padded[0], padded[1])
    out = out[:, :, p[0]:p[0] + out_hw[0], p[1]:p[1] + out_hw[1]]
    return out if batched else out.squeeze(0)


__all__ = ["unfold", "fold"]
