"""3-D convolutions, composed from the 2-D ones along the depth axis.

A 3-D kernel with kd depth taps is kd 2-D kernels: output depth slice `od` is the sum over taps
`i` of conv2d(input depth slice `od * stride + i * dilation`, kernel tap `i`). Each tap runs as
one conv2d over all output depths at once (the strided depth slices of the input batched into
N * OD images), so a 3-D convolution costs kd 2-D ones and needs no kernels of its own; its
gradients, of any order, are those of conv2d and the slicing around it.

The transposed convolution is the adjoint taken tap by tap: conv_transpose2d of every input
depth slice with kernel tap i lands at output depth `d * stride + i * dilation`.
"""
from ...tensor import cat
from ...tensor.ops.shape import pad as _pad
from .conv import conv2d, conv_transpose2d, ntuple, string_padding

__all__ = ["conv3d", "conv_transpose3d"]


def _batched(x, name):
    if x.ndim == 4:
        return x.unsqueeze(0), True
    if x.ndim != 5:
        raise RuntimeError(f"{name}: expected a batched input of shape (N, C, D, H, W) or an "
                           f"unbatched one (C, D, H, W), got shape {list(x.shape)}")
    return x, False


def _check_weight(name, weight):
    if weight.ndim != 5:
        raise RuntimeError(f"{name}: expected a 5-D weight, got shape {list(weight.shape)}")


def _depth_pads(padding, kd, dd, stride, name):
    """(front, back) depth padding and the (H, W) padding conv2d takes for the rest."""
    mode = string_padding(padding, stride, name)
    if mode == "valid":
        return (0, 0), 0
    if mode == "same":
        total = dd * (kd - 1)
        return (total // 2, total - total // 2), "same"   # the extra plane goes at the end
    pd, ph, pw = ntuple(padding, 3, "padding")
    if min(pd, ph, pw) < 0:
        raise ValueError(f"{name}: negative padding {padding} is not supported")
    return (pd, pd), (ph, pw)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x, squeeze = _batched(input, "conv3d")
    _check_weight("conv3d", weight)
    stride, dilation = ntuple(stride, 3, "stride"), ntuple(dilation, 3, "dilation")
    kd = weight.shape[2]
    (front, back), hw_padding = _depth_pads(padding, kd, dilation[0], stride, "conv3d")
    if front or back:
        x = _pad(x, (0, 0, 0, 0, front, back))
    n, c, depth, h, w = x.shape
    od = (depth - dilation[0] * (kd - 1) - 1) // stride[0] + 1
    if od < 1:
        raise RuntimeError(f"conv3d: input depth ({depth - front - back}) plus padding is "
                           f"smaller than the dilated kernel depth "
                           f"({dilation[0] * (kd - 1) + 1})")
    if c != weight.shape[1] * groups:
        raise RuntimeError(f"conv3d: expected input {list(input.shape)} to have "
                           f"{weight.shape[1] * groups} channels (weight {list(weight.shape)}, "
                           f"groups={groups}), but got {c} channels instead")
    out = None
    for i in range(kd):
        start = i * dilation[0]
        planes = x[:, :, start:start + stride[0] * (od - 1) + 1:stride[0]]   # (N, C, OD, H, W)
        planes = planes.transpose(1, 2).reshape(n * od, c, h, w)
        y = conv2d(planes, weight[:, :, i], None, stride[1:], hw_padding, dilation[1:], groups)
        out = y if out is None else out + y
    out = out.reshape(n, od, *out.shape[1:]).transpose(1, 2)
    if bias is not None:
        out = out + bias.reshape(-1, 1, 1, 1)
    return out.squeeze(0) if squeeze else out


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    y, squeeze = _batched(input, "conv_transpose3d")
    _check_weight("conv_transpose3d", weight)
    stride, dilation = ntuple(stride, 3, "stride"), ntuple(dilation, 3, "dilation")
    pd, ph, pw = ntuple(padding, 3, "padding")
    opd, oph, opw = ntuple(output_padding, 3, "output_padding")
    if not 0 <= opd < max(stride[0], dilation[0]):
        raise ValueError(f"conv_transpose3d: output_padding {(opd, oph, opw)} must be smaller "
                         f"than either stride {stride} or dilation {dilation}")
    n, c, depth, h, w = y.shape
    if c != weight.shape[0]:
        raise RuntimeError(f"conv_transpose3d: expected input {list(y.shape)} to have "
                           f"{weight.shape[0]} channels (weight {list(weight.shape)} is "
                           f"(in_channels, out_channels/groups, kD, kH, kW)), but got {c}")
    kd = weight.shape[2]
    full = (depth - 1) * stride[0] + dilation[0] * (kd - 1) + 1 + opd
    out_depth = full - 2 * pd
    if out_depth < 1:
        raise RuntimeError(f"conv_transpose3d: the output depth ({out_depth}) is too small; "
                           f"reduce padding {(pd, ph, pw)}")
    planes = y.transpose(1, 2).reshape(n * depth, c, h, w)
    taps = []
    for i in range(kd):
        x = conv_transpose2d(planes, weight[:, :, i], None, stride[1:], (ph, pw), (oph, opw),
                             groups, dilation[1:])
        taps.append(x.reshape(n, depth, *x.shape[1:]))              # (N, D, C_out, OH, OW)
    # tap i of input plane d lands at output plane d * stride + i * dilation: spread each
    # tap's planes `stride` apart (zeros between) and shift it by i * dilation
    out = None
    for i, x in enumerate(taps):
        if stride[0] > 1:
            x = _interleave(x, n, depth, stride[0])
        shift = i * dilation[0]
        x = _pad(x, (0, 0, 0, 0, 0, 0, shift, full - shift - x.shape[1]))
        out = x if out is None else out + x
    out = out[:, pd:pd + out_depth].transpose(1, 2)
    if bias is not None:
        out = out + bias.reshape(-1, 1, 1, 1)
    return out.squeeze(0) if squeeze else out


def _interleave(x, n, depth, s):
    """(N, D, ...) planes -> (N, (D-1)*s + 1, ...): each plane followed by s-1 zero planes,
    the trailing zeros of the last one dropped."""
    gaps = x.new_zeros(n, depth, s - 1, *x.shape[2:])
    spread = cat([x.unsqueeze(2), gaps], 2).reshape(n, depth * s, *x.shape[2:])
    return spread[:, :(depth - 1) * s + 1]
