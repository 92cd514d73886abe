"""Convolutions and pooling (2-D; 1-D layers run as 2-D ones with a height of 1)."""
import numpy as np

from ...nn.functional import conv, pooling
from .registry import emits


@emits(conv._Conv)
def conv2d(b, op, x, weight, bias, geom):
    top, bottom, left, right = geom.pad
    inputs = [b.use(x), b.use(weight)] + ([] if bias is None else [b.use(bias)])
    b.node("Conv", inputs, op.out(), kernel_shape=list(geom.kernel), strides=list(geom.stride),
           pads=[top, left, bottom, right], dilations=list(geom.dilation), group=geom.groups)


@emits(conv._ConvT)
def conv_transpose2d(b, op, y, weight, bias, geom):
    # the geometry is the forward conv's: its bottom/right border exceeds the top/left one by
    # the transposed conv's output_padding
    top, bottom, left, right = geom.pad
    inputs = [b.use(y), b.use(weight)] + ([] if bias is None else [b.use(bias)])
    b.node("ConvTranspose", inputs, op.out(), kernel_shape=list(geom.kernel),
           strides=list(geom.stride), pads=[top, left, top, left],
           output_padding=[bottom - top, right - left], dilations=list(geom.dilation),
           group=geom.groups)


def _planes(b, op, x):
    """x as an (N, C, H, W) graph tensor, and how to give a pooled result x's layout back.

    Pooling treats every (H, W) plane alike, so 4-D inputs go as they are and others as
    (-1, 1, H, W)."""
    name = b.use(x)
    if x.ndim == 4:
        return name, lambda pooled: b.finish(pooled, op.out())
    h, w = x.dims(b.axes)[-2:]
    planes = b.node("Reshape", [name, b.shape_tensor([-1, 1, h, w])])
    out_dims = op.outputs[0].dims(b.axes)
    return planes, lambda pooled: b.node("Reshape", [pooled, b.shape_tensor(out_dims)],
                                         op.out())


@emits(pooling._MaxPool)
def max_pool(b, op, x, geom):
    op.outputs[1].error = (
        "ONNX export: max pooling's argmax indices (max_pool2d(..., return_indices=True) or "
        "MaxUnpool) are not exported; only the pooled values are")
    planes, finish = _planes(b, op, x)
    top, bottom, left, right = geom.pad  # bottom/right include ceil_mode's extra border
    finish(b.node("MaxPool", [planes], kernel_shape=list(geom.kernel),
                  strides=list(geom.stride), pads=[top, left, bottom, right],
                  dilations=list(geom.dilation)))


@emits(pooling._TapGather)
def avg_pool(b, op, x, geom, sel, scale):
    if sel is not None:
        raise op.unsupported("tap selection is the gradient of max pooling, not a forward op")
    if not isinstance(scale, (type(None), float, int, np.ndarray)):
        raise op.unsupported("the averaging divisors change with a dynamic spatial axis; keep "
                             "the spatial axes fixed")
    dt = op.outputs[0].dtype
    planes, finish = _planes(b, op, x)
    top, bottom, left, right = geom.pad
    if top or bottom or left or right:  # padded with zeros, divided as `scale` says
        planes = b.node("Pad", [planes, b.int64s([0, 0, top, left, 0, 0, bottom, right])])
    pooled = b.node("AveragePool", [planes], kernel_shape=list(geom.kernel),
                    strides=list(geom.stride))
    taps = geom.kernel[0] * geom.kernel[1]
    # AveragePool divides by the window size; the op divides each window by its `scale`
    factor = np.asarray(1.0 if scale is None else scale, dtype=dt) * taps
    if not np.allclose(factor, 1.0, rtol=0, atol=1e-12):
        pooled = b.node("Mul", [pooled, b.const(factor.astype(dt), "pool_scale")])
    finish(pooled)
