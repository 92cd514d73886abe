"""3-D pooling, composed from 2-D pooling: every pooling window is a box, and max, sum and
mean over a box are the same over its (H, W) face first and then along D.

The (N, C, D, H, W) input pools over (H, W) as N*C images with D channels, giving
(N*C, D, OH, OW); that pools along D as N*C one-channel images of size (D, OH*OW) with a
(kd, 1) kernel. Window sizes, padding, dilation and ceil_mode act per axis, and PyTorch's
average divisors are products of per-axis counts, so both stages reproduce PyTorch's 3-D rules
exactly; gradients are those of the 2-D pools. Indices (flat over D*H*W, as PyTorch's) are
recombined from the two stages' indices.
"""
from .conv import ntuple
from .pooling import adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, max_pool2d
from .pooling import _lp_finish, _unpool, _unpool_size

__all__ = ["adaptive_avg_pool3d", "adaptive_max_pool3d", "adaptive_max_pool3d_with_indices",
           "avg_pool3d", "lp_pool3d", "max_pool3d", "max_pool3d_with_indices", "max_unpool3d"]


def _batched(x, name):
    if x.ndim == 4:
        return x.unsqueeze(0), True
    if x.ndim != 5:
        raise RuntimeError(f"{name}: expected a 4-D (C, D, H, W) or 5-D (N, C, D, H, W) input, "
                           f"got shape {list(x.shape)}")
    return x, False


def _faces(x):
    """(N, C, D, H, W) -> (N*C, D, H, W): the (H, W) faces, D as channels."""
    n, c, d, h, w = x.shape
    return x.reshape(n * c, d, h, w)


def _depth_images(y):
    """(N*C, D, OH, OW) -> (N*C, 1, D, OH*OW): D as the height of one-channel images."""
    m, d, oh, ow = y.shape
    return y.reshape(m, 1, d, oh * ow)


def _finish(z, x, oh, ow, squeeze):
    """(N*C, 1, OD, OH*OW) -> (N, C, OD, OH, OW) (unbatched again if the input was)."""
    n, c = x.shape[:2]
    out = z.reshape(n, c, z.shape[2], oh, ow)
    return out.squeeze(0) if squeeze else out


def _combine_indices(face_idx, depth_idx, h, w):
    """Flat D*H*W indices from the face stage's (M, D, OH, OW) H*W-indices and the depth
    stage's (M, 1, OD, OH*OW) indices over (D, OH*OW)."""
    m, d, oh, ow = face_idx.shape
    plane = depth_idx.reshape(m, -1, oh * ow) // (oh * ow)            # (M, OD, OH*OW)
    within = face_idx.reshape(m, d, oh * ow).gather(1, plane)
    return plane * (h * w) + within


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    x, squeeze = _batched(input, "max_pool3d")
    kd, kh, kw = ntuple(kernel_size, 3, "kernel_size")
    sd, sh, sw = (kd, kh, kw) if stride is None else ntuple(stride, 3, "stride")
    pd, ph, pw = ntuple(padding, 3, "padding")
    dd, dh, dw = ntuple(dilation, 3, "dilation")
    faces = max_pool2d(_faces(x), (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode,
                       return_indices)
    face_vals = faces[0] if return_indices else faces
    oh, ow = face_vals.shape[-2:]
    depth = max_pool2d(_depth_images(face_vals), (kd, 1), (sd, 1), (pd, 0), (dd, 1),
                       ceil_mode, return_indices)
    if not return_indices:
        return _finish(depth, x, oh, ow, squeeze)
    out = _finish(depth[0], x, oh, ow, squeeze)
    idx = _combine_indices(faces[1], depth[1], *x.shape[-2:])
    return out, idx.reshape(out.shape)


def max_pool3d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode=False, return_indices=False):
    return max_pool3d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    x, squeeze = _batched(input, "avg_pool3d")
    kd, kh, kw = ntuple(kernel_size, 3, "kernel_size")
    sd, sh, sw = (kd, kh, kw) if stride is None else ntuple(stride, 3, "stride")
    pd, ph, pw = ntuple(padding, 3, "padding")
    # with a divisor override both stages sum (divisor 1) and the override divides once
    per_stage = 1 if divisor_override else None
    faces = avg_pool2d(_faces(x), (kh, kw), (sh, sw), (ph, pw), ceil_mode, count_include_pad,
                       per_stage)
    oh, ow = faces.shape[-2:]
    depth = avg_pool2d(_depth_images(faces), (kd, 1), (sd, 1), (pd, 0), ceil_mode,
                       count_include_pad, per_stage)
    if divisor_override:
        depth = depth / divisor_override
    return _finish(depth, x, oh, ow, squeeze)


def _output_size3(output_size, x):
    sizes = ntuple(output_size, 3, "output_size") if not isinstance(output_size, (tuple, list)) \
        else tuple(output_size)
    if len(sizes) != 3:
        raise ValueError(f"output_size must be an int or a triple, got {output_size!r}")
    return tuple(x.shape[2 + i] if s is None else int(s) for i, s in enumerate(sizes))


def adaptive_avg_pool3d(input, output_size):
    x, squeeze = _batched(input, "adaptive_avg_pool3d")
    od, oh, ow = _output_size3(output_size, x)
    faces = adaptive_avg_pool2d(_faces(x), (oh, ow))
    depth = adaptive_avg_pool2d(_depth_images(faces), (od, oh * ow))
    return _finish(depth, x, oh, ow, squeeze)


def adaptive_max_pool3d(input, output_size, return_indices=False):
    x, squeeze = _batched(input, "adaptive_max_pool3d")
    od, oh, ow = _output_size3(output_size, x)
    faces = adaptive_max_pool2d(_faces(x), (oh, ow), return_indices)
    face_vals = faces[0] if return_indices else faces
    depth = adaptive_max_pool2d(_depth_images(face_vals), (od, oh * ow), return_indices)
    if not return_indices:
        return _finish(depth, x, oh, ow, squeeze)
    out = _finish(depth[0], x, oh, ow, squeeze)
    idx = _combine_indices(faces[1], depth[1], *x.shape[-2:])
    return out, idx.reshape(out.shape)


def adaptive_max_pool3d_with_indices(input, output_size, return_indices=False):
    return adaptive_max_pool3d(input, output_size, True)


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """(sum over each window of x^p)^(1/p); p = inf is max pooling of |x|."""
    kd, kh, kw = ntuple(kernel_size, 3, "kernel_size")
    if norm_type == float("inf"):
        return max_pool3d(input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    if norm_type == -float("inf"):
        return -max_pool3d(-input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    out = avg_pool3d(input ** norm_type, kernel_size, stride, 0, ceil_mode)
    return _lp_finish(out, norm_type, kd * kh * kw)


def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The partial inverse of max_pool3d: each value back at its max position, zeros
    elsewhere."""
    size = _unpool_size(input, kernel_size, stride, padding, output_size, 3, "max_unpool3d")
    return _unpool(input, indices, size, "max_unpool3d")
