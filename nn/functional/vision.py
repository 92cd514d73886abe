"""affine_grid and grid_sample (spatial transformer networks), composed from differentiable
ops: the sampling positions come from the grid (so gradients reach it through the bilinear or
bicubic weights and the padding's coordinate maps) and the pixels are gathered by index (so
gradients reach the input through the gather's backward). Every mode and padding mode of
PyTorch's, on 2-D images; 5-D (volumetric) inputs raise."""
import warnings

import numpy as np

from ...autograd import Function
from ...tensor import Tensor, backend, where
from .interpolate import cubic_weights

_WARNING = ("Default grid_sample and affine_grid behavior has changed to align_corners=False "
            "since 1.3.0. Please specify align_corners=True if the old behavior is desired. "
            "See the documentation of grid_sample for details.")


def _base_coords(n, align_corners):
    """The normalised [-1, 1] coordinates of n pixel centres (or corners)."""
    if n <= 1:
        return np.zeros(max(n, 0))
    coords = np.linspace(-1.0, 1.0, n)
    return coords if align_corners else coords * (n - 1) / n


def affine_grid(theta, size, align_corners=None):
    """(N, H, W, 2) sampling positions: the base grid of an (N, C, H, W) output mapped by each
    2x3 matrix of theta."""
    if align_corners is None:
        warnings.warn(_WARNING, stacklevel=2)
        align_corners = False
    if not theta.is_floating_point():
        raise ValueError(f"Expected theta to have floating point type, but got {theta.dtype}")
    size = tuple(size)
    if len(size) == 5:
        raise NotImplementedError("affine_grid: 3-D (5-D size) affine grids are not "
                                  "supported; only (N, C, H, W) sizes")
    if len(size) != 4:
        raise NotImplementedError(f"affine_grid only supports 4D and 5D sizes, for 2D and 3D "
                                  f"affine transforms, respectively. Got size {size}.")
    if theta.ndim != 3 or tuple(theta.shape[-2:]) != (2, 3):
        raise ValueError(f"Expected a batch of 2D affine matrices of shape Nx2x3 for size "
                         f"{list(size)}. Got {list(theta.shape)}.")
    n, _, h, w = size
    if theta.shape[0] != n:
        raise ValueError(f"affine_grid: theta holds {theta.shape[0]} matrices for a batch of "
                         f"{n} (size {list(size)})")
    xs, ys = np.meshgrid(_base_coords(w, align_corners), _base_coords(h, align_corners))
    base = np.stack([xs, ys, np.ones_like(xs)], -1).reshape(1, h * w, 3)
    base = Tensor._make(backend.to_device(base.astype(theta._data.dtype), theta.device))
    return (base @ theta.mT).reshape(n, h, w, 2)


def _unnormalize(coord, size, align_corners):
    if align_corners:
        return (coord + 1) * ((size - 1) / 2)
    return ((coord + 1) * size - 1) / 2


class _ZeroGradientTo(Function):
    """`out` unchanged, with `other` in the graph at a zero gradient."""

    @staticmethod
    def forward(ctx, out, other):
        ctx.other_shape = tuple(other.shape)
        return Tensor._make(out._data)

    @staticmethod
    def backward(ctx, g):
        return g, g.new_zeros(ctx.other_shape)


def _reflect(coord, twice_low, twice_high):
    """PyTorch's reflect_coordinates: `coord` folded into [low, high] by reflections at the
    ends (tensor ops, so the grid's gradient changes sign with each reflection)."""
    if twice_low == twice_high:
        return coord * 0
    low, span = twice_low / 2, (twice_high - twice_low) / 2
    dist = (coord - low).abs()
    extra = dist.fmod(span)
    flips = (dist / span).floor()
    return where(flips.fmod(2) == 0, extra + low, span - extra + low)


def _padded_coords(coord, size, padding_mode, align_corners):
    """Pixel coordinates as the padding mode maps them (PyTorch's compute_coordinates):
    clamped into the image for border, reflected then clamped for reflection."""
    if padding_mode == "reflection":
        coord = _reflect(coord, 0, 2 * (size - 1)) if align_corners else \
            _reflect(coord, -1, 2 * size - 1)
    if padding_mode != "zeros":
        coord = coord.clamp(0, size - 1)
    return coord


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    """Sample input (N, C, H, W) at grid (N, Ho, Wo, 2) positions (x, y in [-1, 1])."""
    if mode not in ("bilinear", "nearest", "bicubic"):
        raise ValueError(f"nn.functional.grid_sample(): expected mode to be 'bilinear', "
                         f"'nearest' or 'bicubic', but got: '{mode}'")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"nn.functional.grid_sample(): expected padding_mode to be 'zeros', "
                         f"'border', or 'reflection', but got: '{padding_mode}'")
    if align_corners is None:
        warnings.warn(_WARNING, stacklevel=2)
        align_corners = False
    if input.ndim == 5:
        raise NotImplementedError("grid_sample: 5-D (volumetric) inputs are not supported; "
                                  "only (N, C, H, W) images")
    if input.ndim != 4 or grid.ndim != 4 or grid.shape[-1] != 2 or \
            grid.shape[0] != input.shape[0]:
        raise RuntimeError(f"grid_sample: expected input (N, C, H, W) and grid (N, H_out, "
                           f"W_out, 2) with the same N, got {list(input.shape)} and "
                           f"{list(grid.shape)}")
    n, c, h, w = input.shape
    ho, wo = grid.shape[1:3]
    ix = _unnormalize(grid[..., 0], w, align_corners)
    iy = _unnormalize(grid[..., 1], h, align_corners)
    flat = input.reshape(n, c, h * w)

    def tap(x_idx, y_idx):
        """Pixels at integer positions (N, Ho, Wo) (host arrays), zero outside the image."""
        inside = (x_idx >= 0) & (x_idx < w) & (y_idx >= 0) & (y_idx < h)
        index = np.where(inside, np.clip(y_idx, 0, h - 1) * w + np.clip(x_idx, 0, w - 1), 0)
        index = Tensor._make(backend.to_device(index.reshape(n, 1, ho * wo).astype(np.int64),
                                               input.device)).expand(n, c, ho * wo)
        mask = Tensor._make(backend.to_device(inside.reshape(n, 1, ho * wo)
                                              .astype(input._data.dtype), input.device))
        return flat.gather(2, index) * mask

    def host(t):
        return np.asarray(backend.to_device(t.detach()._data, "cpu"))

    def weight(t):      # a weight over the output positions, broadcast over the channels
        return t.reshape(n, 1, ho * wo)

    if mode == "bicubic":   # 4 x 4 taps around the point, each mapped by the padding mode
        fx, fy = np.floor(host(ix)), np.floor(host(iy))
        dtype = input._data.dtype
        tx = ix - Tensor._make(backend.to_device(fx.astype(dtype), input.device))
        ty = iy - Tensor._make(backend.to_device(fy.astype(dtype), input.device))

        def mapped(base, k, size):
            coord = Tensor._make(base + k)
            return host(_padded_coords(coord, size, padding_mode, align_corners)).astype(
                np.int64)
        wx, wy = cubic_weights(tx), cubic_weights(ty)
        out = 0
        for j in range(4):
            y_idx = mapped(fy, j - 1, h)
            for i in range(4):
                out = out + tap(mapped(fx, i - 1, w), y_idx) * weight(wx[i] * wy[j])
        return out.reshape(n, c, ho, wo)
    ix = _padded_coords(ix, w, padding_mode, align_corners)
    iy = _padded_coords(iy, h, padding_mode, align_corners)
    host_x, host_y = host(ix), host(iy)
    if mode == "nearest":
        out = tap(np.rint(host_x).astype(np.int64), np.rint(host_y).astype(np.int64))
        out = out.reshape(n, c, ho, wo)
        # piecewise constant in the grid: PyTorch still links the grid, with zero gradient
        return _ZeroGradientTo.apply(out, grid) if grid.requires_grad else out
    x0, y0 = np.floor(host_x).astype(np.int64), np.floor(host_y).astype(np.int64)
    fx0 = Tensor._make(backend.to_device(x0.astype(input._data.dtype), input.device))
    fy0 = Tensor._make(backend.to_device(y0.astype(input._data.dtype), input.device))
    wx1, wy1 = weight(ix - fx0), weight(iy - fy0)   # they carry the gradient w.r.t. the grid
    wx0, wy0 = 1 - wx1, 1 - wy1
    out = (tap(x0, y0) * (wx0 * wy0) + tap(x0 + 1, y0) * (wx1 * wy0) +
           tap(x0, y0 + 1) * (wx0 * wy1) + tap(x0 + 1, y0 + 1) * (wx1 * wy1))
    return out.reshape(n, c, ho, wo)


__all__ = ["affine_grid", "grid_sample"]
