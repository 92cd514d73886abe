"""Convolutions: conv1d, conv2d, conv_transpose1d/2d.

Three Functions share one geometry and are each other's derivatives, so gradients of any
order come for free:

    _Conv(x, w)          y  = conv(x, w)           im2col windows (as_strided) + one matmul
    _ConvT(y, w)         x  = conv^T(y, w)         matmul + col2im (strided adds): the adjoint
    _ConvWeight(x, y)    gw = <windows(x), y>      the weight gradient

d conv / dx = conv^T, d conv^T / dy = conv, and both are bilinear with the weight gradient.
1-D convolutions run as 2-D ones with a height of 1.

Every product is written on row matrices, one row per output position (N * OH * OW of them):
the windows (kernel taps x channels) and the maps (channels). How they are stored depends on
the geometry (`ConvGeometry.channels_last`):
- channels-last, when a group has enough channels: rows are contiguous, read from an
  (N, H, W, C) copy of the input, so im2col and col2im move runs of kw * C or C numbers, and
  BLAS gets its long axis leading;
- channel-major otherwise (one input channel, depthwise): the matrices are stored transposed,
  (taps x channels, positions), their positions in (N, OH, OW) order, or (OH, OW, N) when the
  output map is small (`ConvGeometry.batch_last`), so the strided copies move runs of OW or N
  numbers instead of a channel or two.
"""
from typing import NamedTuple

from ...amp.autocast_mode import is_autocast_enabled
from ...autograd import Function, dispatch
from ...tensor import Tensor
from ...tensor.backend import array_module

make = Tensor._make


class ConvGeometry(NamedTuple):
    """Where the windows of a 2-D convolution lie: input (H, W) -> output (OH, OW)."""
    kernel: tuple       # (kh, kw)
    stride: tuple       # (sh, sw)
    pad: tuple          # (top, bottom, left, right); bottom/right may exceed top/left
    dilation: tuple     # (dh, dw)
    groups: int
    in_hw: tuple        # (H, W)
    out_hw: tuple       # (OH, OW)
    channels: int       # C, the channels of the input side (the windowed one)

    @property
    def channels_last(self):
        """Whether rows are stored as rows (see the module's docstring): from 8 channels per
        group up, where a channel run is long enough to copy efficiently."""
        return self.channels // self.groups >= 8

    @property
    def batch_last(self):
        """Channel-major positions run over (OH, OW, N) rather than (N, OH, OW): on maps of up
        to 8x8 outputs, where a row of pixels is too short to copy efficiently."""
        return self.out_hw[0] * self.out_hw[1] <= 64

    @property
    def padded_hw(self):
        t, b, l, r = self.pad
        return self.in_hw[0] + t + b, self.in_hw[1] + l + r

    def window(self, i, j):
        """The (rows, columns) index that picks kernel tap (i, j) of every output position from
        a padded map."""
        (sh, sw), (dh, dw), (oh, ow) = self.stride, self.dilation, self.out_hw
        return (slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
                slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))


def ntuple(v, n, name):
    if isinstance(v, (tuple, list)):
        if len(v) != n:
            raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {v!r}")
        return tuple(int(i) for i in v)
    return (int(v),) * n


def out_size(n, k, s, pad_total, d):
    return (n + pad_total - d * (k - 1) - 1) // s + 1


# ---- array kernels (NumPy or CuPy through the array module) -------------------------------
def padded(d, pad, value=0.0):
    """`d` (N, C, H, W) with (top, bottom, left, right) borders of `value`."""
    t, b, l, r = pad
    if not (t or b or l or r):
        return d
    xp = array_module(d)
    n, c, h, w = d.shape
    out = xp.full((n, c, h + t + b, w + l + r), value, d.dtype)
    out[:, :, t:t + h, l:l + w] = d
    return out


def im2col(d, g):
    """(N, C, H, W) -> the windows, (groups, positions, C/groups * kh * kw)."""
    xp = array_module(d)
    n, c = d.shape[:2]
    cg = c // g.groups
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = g.kernel, g.stride, g.dilation, g.out_hw
    if g.channels_last:     # rows of (kh, kw, C/groups)
        p = _padded_channels_last(d, g.pad)
        s_n, s_h, s_w, s_c = p.strides
        shape = (g.groups, n, oh, ow, kh, kw, cg)
        strides = (s_c * cg, s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c)
    elif g.batch_last:      # stored as columns of (C/groups, kh, kw)
        p = _padded_batch_last(d, g.pad)
        s_c, s_h, s_w, s_n = p.strides
        shape = (c, kh, kw, oh, ow, n)
        strides = (s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw, s_n)
    else:
        p = padded(d, g.pad)
        s_n, s_c, s_h, s_w = p.strides
        shape = (c, kh, kw, n, oh, ow)
        strides = (s_c, s_h * dh, s_w * dw, s_n, s_h * sh, s_w * sw)
    win = xp.ascontiguousarray(xp.lib.stride_tricks.as_strided(p, shape, strides))
    if g.channels_last:
        return win.reshape(g.groups, n * oh * ow, -1)
    return win.reshape(g.groups, cg * kh * kw, n * oh * ow).swapaxes(-1, -2)


def _padded_channels_last(d, pad):
    """(N, C, H, W) as (N, H + top + bottom, W + left + right, C), zero borders."""
    t, b, l, r = pad
    xp = array_module(d)
    v = d.transpose(0, 2, 3, 1)
    if not (t or b or l or r):
        return xp.ascontiguousarray(v)
    n, c, h, w = d.shape
    out = xp.zeros((n, h + t + b, w + l + r, c), d.dtype)
    out[:, t:t + h, l:l + w] = v
    return out


def _padded_batch_last(d, pad):
    """(N, C, H, W) as (C, H + top + bottom, W + left + right, N), zero borders."""
    t, b, l, r = pad
    v = _batch_last(d)
    if not (t or b or l or r):
        return v
    n, c, h, w = d.shape
    out = array_module(d).zeros((c, h + t + b, w + l + r, n), d.dtype)
    out[:, t:t + h, l:l + w] = v
    return out


def _batch_last(d):
    """(N, C, H, W) -> contiguous (C, H, W, N) in two copies that each move contiguous runs
    (channels first, then a small transpose per channel): the one-step transpose strides
    through memory by whole images and runs several times slower."""
    xp = array_module(d)
    n, c = d.shape[:2]
    per_channel = xp.ascontiguousarray(d.swapaxes(0, 1)).reshape(c, n, -1)
    return xp.ascontiguousarray(per_channel.transpose(0, 2, 1)).reshape(c, *d.shape[2:], n)


def col2im(cols, g, n):
    """The adjoint of im2col, for channel-major windows: add every window entry back onto the
    pixel it came from."""
    xp = array_module(cols)
    (kh, kw), (oh, ow), (hp, wp) = g.kernel, g.out_hw, g.padded_hw
    t, _, l, _ = g.pad
    h, w = g.in_hw
    c = g.channels
    cols = xp.ascontiguousarray(cols.swapaxes(-1, -2))
    if (oh, ow) == (1, 1) and (hp, wp) == (kh, kw) == g.in_hw and g.dilation == (1, 1):
        # one window covering the whole map (DCGAN's first and last layers): no overlaps
        return xp.ascontiguousarray(cols.reshape(c, kh, kw, n).transpose(3, 0, 1, 2))
    if g.batch_last:
        taps = cols.reshape(c, kh, kw, oh, ow, n)
        out = xp.zeros((c, hp, wp, n), cols.dtype)
    else:
        taps = cols.reshape(c, kh, kw, n, oh, ow)
        out = xp.zeros((c, n, hp, wp), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            if g.batch_last:
                out[:, g.window(i, j)[0], g.window(i, j)[1]] += taps[:, i, j]
            else:
                out[:, :, g.window(i, j)[0], g.window(i, j)[1]] += taps[:, i, j]
    if g.batch_last:
        return xp.ascontiguousarray(out[:, t:t + h, l:l + w].transpose(3, 0, 1, 2))
    return xp.ascontiguousarray(out[:, :, t:t + h, l:l + w].transpose(1, 0, 2, 3))


def scatter_taps(r, w, g, n):
    """conv^T of channels-last rows (groups, positions, O/groups): each kernel tap's product
    (N, OH, OW, C/groups) is added onto the pixels it came from. A product per tap rather than
    one im2col-shaped product lets the adds move whole rows of pixels instead of one pixel's
    channels at a time."""
    xp = array_module(r)
    (kh, kw), (oh, ow), (hp, wp) = g.kernel, g.out_hw, g.padded_hw
    t, _, l, _ = g.pad
    h, wd = g.in_hw
    o, cg = w.shape[:2]
    taps = xp.ascontiguousarray(w.reshape(g.groups, o // g.groups, cg, kh, kw)
                                .transpose(0, 3, 4, 1, 2))      # (groups, kh, kw, O/g, C/g)
    out = xp.zeros((n, hp, wp, g.groups, cg), r.dtype)
    for k in range(g.groups):
        for i in range(kh):
            for j in range(kw):
                rows_at, columns_at = g.window(i, j)
                out[:, rows_at, columns_at, k] += (r[k] @ taps[k, i, j]).reshape(n, oh, ow, cg)
    out = out[:, t:t + h, l:l + wd].reshape(n, h, wd, g.channels)
    return xp.ascontiguousarray(out.transpose(0, 3, 1, 2))


def conv_transpose(y, w, g):
    """conv^T(y, w) on arrays, in whichever of three ways suits the geometry."""
    flipped = _flipped(g, y.shape[1])
    if flipped is not None:     # a plain convolution: no scattered adds at all
        wf = weight_rows(_flipped_weight(w, g.groups), flipped).swapaxes(-1, -2)
        return unrows(per_group(im2col(y, flipped), wf, flipped), y.shape[0], flipped, None)
    if g.channels_last:
        return scatter_taps(rows(y, g), w, g, y.shape[0])
    return col2im(per_group(rows(y, g), weight_rows(w, g), g), g, y.shape[0])


def per_group(a, b, g):
    """a[k] @ b[k] for each group k, as 2-D matmuls (NumPy's stacked matmul does not reach
    BLAS); a and b are (groups, ., .)-shaped. Channel-major matrices are stored transposed, so
    there the product runs as (b^T @ a^T)^T: BLAS reads each operand as it is stored and the
    result is stored transposed too."""
    if g.channels_last:
        return _stacked([a[k] @ b[k] for k in range(g.groups)])
    return _stacked([b[k].T @ a[k].T for k in range(g.groups)]).swapaxes(-1, -2)


def _stacked(products):
    """(groups, ., .) from each group's product, without a copy for a single group."""
    if len(products) == 1:
        return products[0][None]
    return array_module(products[0]).stack(products)


def rows(d, g):
    """A map (N, O, OH, OW) -> (groups, positions, O/groups), stored as `g` stores rows."""
    xp = array_module(d)
    o = d.shape[1]
    if g.channels_last:
        d = xp.ascontiguousarray(d.transpose(0, 2, 3, 1))
        return d.reshape(-1, g.groups, o // g.groups).swapaxes(0, 1)
    d = _batch_last(d) if g.batch_last else xp.ascontiguousarray(d.swapaxes(0, 1))
    return d.reshape(g.groups, o // g.groups, -1).swapaxes(-1, -2)


def unrows(r, n, g, bias):
    """(groups, positions, O/groups) rows -> the map (N, O, OH, OW), adding the bias on the
    way."""
    xp = array_module(r)
    oh, ow = g.out_hw
    if g.channels_last:
        d = r.swapaxes(0, 1).reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
    elif g.batch_last:
        d = r.swapaxes(-1, -2).reshape(-1, oh, ow, n).transpose(3, 0, 1, 2)
    else:
        d = r.swapaxes(-1, -2).reshape(-1, n, oh, ow).swapaxes(0, 1)
    out = xp.empty(d.shape, d.dtype)
    if bias is None:
        out[...] = d
    else:
        xp.add(d, bias._data.reshape(1, -1, 1, 1), out=out)
    return out


def weight_rows(w, g):
    """(O, C/g, kh, kw) -> (groups, O/groups, window), the window in `g`'s order."""
    if g.channels_last:
        w = w.transpose(0, 2, 3, 1)
    return w.reshape(g.groups, w.shape[0] // g.groups, -1)


def weight_from_rows(m, g, w_shape):
    """The inverse of `weight_rows`: a contiguous (O, C/g, kh, kw) weight."""
    if g.channels_last:
        o, cg, kh, kw = w_shape
        return array_module(m).ascontiguousarray(m.reshape(o, kh, kw, cg).transpose(0, 3, 1, 2))
    return m.reshape(w_shape)


def _flipped(g, channels):
    """The geometry of conv^T as a plain convolution of its `channels`-channel input with the
    flipped kernel: possible at stride 1 when no border is wider than the dilated kernel, and
    faster than scattering unless it gathers many more numbers than a scatter would add (more
    input than output channels, or a small map padded all round, as from a 1x1 latent)."""
    (kh, kw), (dh, dw) = g.kernel, g.dilation
    reach = (dh * (kh - 1),) * 2 + (dw * (kw - 1),) * 2
    pad = tuple(r - p for r, p in zip(reach, g.pad))
    gathered = g.in_hw[0] * g.in_hw[1] * channels
    scattered = g.out_hw[0] * g.out_hw[1] * g.channels
    if g.stride != (1, 1) or min(pad) < 0 or gathered > 2 * scattered:
        return None
    return ConvGeometry(g.kernel, (1, 1), pad, g.dilation, g.groups, g.out_hw, g.in_hw, channels)


def _flipped_weight(w, groups):
    """(O, C/g, kh, kw) -> (C, O/g, kh, kw), each group's kernel transposed and turned by 180
    degrees."""
    o, cg, kh, kw = w.shape
    w = w.reshape(groups, o // groups, cg, kh, kw).swapaxes(1, 2)[..., ::-1, ::-1]
    return w.reshape(groups * cg, o // groups, kh, kw)


def _check_dtypes(name, *tensors):
    dts = {t._data.dtype for t in tensors if t is not None}
    if len(dts) > 1:
        raise RuntimeError(f"{name}: input, weight and bias must have the same dtype, got "
                           f"{', '.join(str(t.dtype) for t in tensors if t is not None)}; "
                           f"convert them, e.g. input.to(weight.dtype)")


# ---- the three Functions -------------------------------------------------------------------
class _Conv(Function):
    """y = conv(x, w) + b; a 1-D conv's (N, C, L) input and (O, C, k) weight run as height-1
    2-D ones (views), so that conv1d is one node too."""
    node_name = "Convolution"     # PyTorch's name of this graph node
    graph_inputs = (0, 1, 2)      # input, weight, bias

    @staticmethod
    def forward(ctx, x, w, b, g):
        cols = im2col(_as_planes(x._data), g)
        y = per_group(cols, weight_rows(_as_planes(w._data), g).swapaxes(-1, -2), g)
        ctx.save_for_backward(x, w)
        ctx.g, ctx.cols = g, cols  # the windows are reused by the weight gradient
        return make(_like(unrows(y, x.shape[0], g, b), x))

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        nx, nw, nb = ctx.needs_input_grad[:3]
        one_d = x.ndim == 3
        if one_d:
            x, w, gy = x.unsqueeze(2), w.unsqueeze(2), gy.unsqueeze(2)
        gx = _ConvT.apply(gy, w, None, ctx.g) if nx else None
        gw = _ConvWeight.apply(x, gy, ctx.g, tuple(w.shape), ctx.cols) if nw else None
        gb = gy.sum(dim=(0, 2, 3)) if nb else None
        return _squeezed(gx, one_d), _squeezed(gw, one_d), gb, None


class _ConvT(Function):
    """x = conv^T(y, w) + b: the adjoint of conv in its input (a transposed convolution);
    1-D ones as height-1 2-D ones, as `_Conv`."""
    node_name = "Convolution"     # PyTorch's conv_transpose is its convolution, transposed
    graph_inputs = (0, 1, 2)

    @staticmethod
    def forward(ctx, y, w, b, g):
        x = conv_transpose(_as_planes(y._data), _as_planes(w._data), g)
        if b is not None:
            x += b._data.reshape(1, -1, 1, 1)
        ctx.save_for_backward(y, w)
        ctx.g = g
        return make(_like(x, y))

    @staticmethod
    def backward(ctx, gx):
        y, w = ctx.saved_tensors
        ny, nw, nb = ctx.needs_input_grad[:3]
        one_d = y.ndim == 3
        if one_d:
            y, w, gx = y.unsqueeze(2), w.unsqueeze(2), gx.unsqueeze(2)
        gy = _Conv.apply(gx, w, None, ctx.g) if ny else None
        gw = _ConvWeight.apply(gx, y, ctx.g, tuple(w.shape)) if nw else None
        gb = gx.sum(dim=(0, 2, 3)) if nb else None
        return _squeezed(gy, one_d), _squeezed(gw, one_d), gb, None


def _as_planes(d):
    """A 1-D conv's (N, C, L) array as the (N, C, 1, L) view the 2-D kernels take."""
    return d[:, :, None] if d.ndim == 3 else d


def _like(out, x):
    """The (N, C, 1, L) result of a 1-D conv as (N, C, L)."""
    return out[:, :, 0] if x.ndim == 3 else out


def _squeezed(t, one_d):
    return t.squeeze(2) if one_d and t is not None else t


class _ConvWeight(Function):
    """gw[o, c, i, j] = sum over n, positions of y[n, o, pos] * x_padded[n, c, pos + tap(i, j)]."""

    @staticmethod
    def forward(ctx, x, y, g, w_shape, cols=None):
        if cols is None:
            cols = im2col(x._data, g)
        gw = per_group(rows(y._data, g).swapaxes(-1, -2), cols, g)
        ctx.save_for_backward(x, y)
        ctx.g = g
        return make(weight_from_rows(gw, g, w_shape))

    @staticmethod
    def backward(ctx, ggw):
        x, y = ctx.saved_tensors
        nx, ny = ctx.needs_input_grad[:2]
        gx = _ConvT.apply(y, ggw, None, ctx.g) if nx else None
        gy = _Conv.apply(x, ggw, None, ctx.g) if ny else None
        return gx, gy, None, None, None


# ---- argument checking and the functional API ---------------------------------------------
def _check_conv_args(name, x, w, b, groups, transposed, dims=2):
    if x.ndim != dims + 2:
        want = "(N, C, H, W) or an unbatched one (C, H, W)" if dims == 2 else \
            "(N, C, L) or an unbatched one (C, L)"
        raise RuntimeError(f"{name}: expected a batched input of shape {want}, got shape "
                           f"{list(x.shape)}")
    if w.ndim != dims + 2:
        raise RuntimeError(f"{name}: expected a {dims + 2}-D weight, got shape "
                           f"{list(w.shape)}")
    if groups < 1:
        raise ValueError(f"{name}: groups must be a positive integer, got {groups}")
    c = x.shape[1]
    if transposed:
        if c != w.shape[0]:
            raise RuntimeError(f"{name}: expected input {list(x.shape)} to have {w.shape[0]} "
                               f"channels (weight {list(w.shape)} is (in_channels, "
                               f"out_channels/groups, kH, kW)), but got {c} channels instead")
        if c % groups:
            raise RuntimeError(f"{name}: in_channels ({c}) must be divisible by groups "
                               f"({groups})")
        out_ch = w.shape[1] * groups
    else:
        if c != w.shape[1] * groups:
            raise RuntimeError(f"{name}: expected input {list(x.shape)} to have "
                               f"{w.shape[1] * groups} channels (weight {list(w.shape)}, "
                               f"groups={groups}), but got {c} channels instead")
        if w.shape[0] % groups:
            raise RuntimeError(f"{name}: out_channels ({w.shape[0]}) must be divisible by "
                               f"groups ({groups})")
        out_ch = w.shape[0]
    if b is not None and tuple(b.shape) != (out_ch,):
        raise RuntimeError(f"{name}: expected bias of shape [{out_ch}], got {list(b.shape)}")
    if not is_autocast_enabled(x.device.type):  # else autocast casts them to one dtype
        _check_dtypes(name, x, w, b)
    if type(x._data) is not type(w._data):
        raise RuntimeError(f"{name}: input is on {x.device} but weight is on {w.device}; "
                           f"move them to the same device")


def string_padding(padding, stride, name):
    """'valid' or 'same' for those strings (checked: 'same' needs stride 1), None for numbers."""
    if not isinstance(padding, str):
        return None
    if padding not in ("valid", "same"):
        raise ValueError(f"{name}: padding must be an int, a tuple, 'valid' or 'same', "
                         f"got {padding!r}")
    if padding == "same" and any(s != 1 for s in stride):
        raise ValueError(f"{name}: padding='same' is not supported for strided "
                         f"convolutions (stride={stride}); pad explicitly instead")
    return padding


def _pads(padding, kernel, dilation, stride, name):
    """(top, bottom, left, right) from an int, a pair, 'valid' or 'same'."""
    mode = string_padding(padding, stride, name)
    if mode == "valid":
        return (0, 0, 0, 0)
    if mode == "same":
        out = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            out += [total // 2, total - total // 2]  # the extra row goes at the end
        return tuple(out)
    ph, pw = ntuple(padding, 2, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"{name}: negative padding {padding} is not supported")
    return (ph, ph, pw, pw)


def _unbatched(x, batched_ndim):
    """Unbatched input (C, ...) runs as a batch of one, like PyTorch."""
    if x.ndim == batched_ndim - 1:
        return x.unsqueeze(0), True
    return x, False


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x, squeeze = _unbatched(input, 4)
    _check_conv_args("conv2d", x, weight, bias, groups, transposed=False)
    g = _geometry("conv2d", x.shape, weight.shape, stride, padding, dilation, groups)
    y = _Conv.apply(x, weight, bias, g)
    return y.squeeze(0) if squeeze else y


def _geometry(name, x_shape, w_shape, stride, padding, dilation, groups):
    """The ConvGeometry of a conv of an (N, C, H, W) input with an (O, C/groups, kH, kW)
    weight."""
    kernel = tuple(w_shape[2:])
    stride, dilation = ntuple(stride, 2, "stride"), ntuple(dilation, 2, "dilation")
    pad = _pads(padding, kernel, dilation, stride, name)
    h, w = x_shape[2:]
    oh = out_size(h, kernel[0], stride[0], pad[0] + pad[1], dilation[0])
    ow = out_size(w, kernel[1], stride[1], pad[2] + pad[3], dilation[1])
    if oh < 1 or ow < 1:
        raise RuntimeError(f"{name}: input spatial size ({h}, {w}) plus padding is smaller than "
                           f"the dilated kernel ({dilation[0] * (kernel[0] - 1) + 1}, "
                           f"{dilation[1] * (kernel[1] - 1) + 1})")
    return ConvGeometry(kernel, stride, pad, dilation, groups, (h, w), (oh, ow), x_shape[1])


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    y, squeeze = _unbatched(input, 4)
    _check_conv_args("conv_transpose2d", y, weight, bias, groups, transposed=True)
    g = _transposed_geometry("conv_transpose2d", y.shape, weight.shape, stride, padding,
                             output_padding, groups, dilation)
    x = _ConvT.apply(y, weight, bias, g)
    return x.squeeze(0) if squeeze else x


def _transposed_geometry(name, y_shape, w_shape, stride, padding, output_padding, groups,
                         dilation):
    """The ConvGeometry of the conv whose adjoint a transposed conv of an (N, C, H, W) input
    with an (C, O/groups, kH, kW) weight is."""
    kernel = tuple(w_shape[2:])
    stride, dilation = ntuple(stride, 2, "stride"), ntuple(dilation, 2, "dilation")
    ph, pw = ntuple(padding, 2, "padding")
    oph, opw = ntuple(output_padding, 2, "output_padding")
    for op, s, d in ((oph, stride[0], dilation[0]), (opw, stride[1], dilation[1])):
        if op >= max(s, d) or op < 0:
            raise ValueError(f"{name}: output_padding ({oph}, {opw}) must be smaller "
                             f"than either stride {stride} or dilation {dilation}")
    oh_in, ow_in = y_shape[2:]
    # the transposed conv's output is the input of the conv it is the adjoint of
    h = (oh_in - 1) * stride[0] - 2 * ph + dilation[0] * (kernel[0] - 1) + oph + 1
    w = (ow_in - 1) * stride[1] - 2 * pw + dilation[1] * (kernel[1] - 1) + opw + 1
    if h < 1 or w < 1:
        raise RuntimeError(f"{name}: the output size ({h}, {w}) is too small; "
                           f"reduce padding {(ph, pw)}")
    return ConvGeometry(kernel, stride, (ph, ph + oph, pw, pw + opw), dilation, groups, (h, w),
                        (oh_in, ow_in), w_shape[1] * groups)


def _as_1d(input, weight, bias, groups, name, transposed):
    """A 1-D conv's input, batched, checked; its geometry is that of the height-1 2-D conv
    of (N, C, 1, L) and (O, C, 1, k) views, which `_Conv` and `_ConvT` run it as."""
    x, squeeze = _unbatched(input, 3)
    _check_conv_args(name, x, weight, bias, groups, transposed, dims=1)
    return x, (x.shape[0], x.shape[1], 1, x.shape[2]), \
        tuple(weight.shape[:2]) + (1, weight.shape[2]), squeeze


def _one(v, name):
    return (1, ntuple(v, 1, name)[0])


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x, x_shape, w_shape, squeeze = _as_1d(input, weight, bias, groups, "conv1d", False)
    if not isinstance(padding, str):
        padding = (0, ntuple(padding, 1, "padding")[0])
    g = _geometry("conv1d", x_shape, w_shape, _one(stride, "stride"), padding,
                  _one(dilation, "dilation"), groups)
    y = _one_d(_Conv, x, weight, bias, g)
    return y.squeeze(0) if squeeze else y


def _one_d(fn, x, weight, bias, g):
    """The 1-D conv as one node; an observer (ONNX export) sees the 2-D conv of height-1
    views it runs as."""
    if dispatch.watching(fn):
        return fn.apply(x.unsqueeze(2), weight.unsqueeze(2), bias, g).squeeze(2)
    return fn.apply(x, weight, bias, g)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    y, y_shape, w_shape, squeeze = _as_1d(input, weight, bias, groups, "conv_transpose1d",
                                          True)
    g = _transposed_geometry("conv_transpose1d", y_shape, w_shape, _one(stride, "stride"),
                             (0, ntuple(padding, 1, "padding")[0]),
                             (0, ntuple(output_padding, 1, "output_padding")[0]), groups,
                             _one(dilation, "dilation"))
    x = _one_d(_ConvT, y, weight, bias, g)
    return x.squeeze(0) if squeeze else x


__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]
