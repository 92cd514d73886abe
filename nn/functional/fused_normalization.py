"""Fused layer norm on the GPU: one block per normalized row, forward and backward.

Forward computes the row's mean and reciprocal standard deviation (two passes over the row, for
the same accuracy as the unfused path) and writes the affine output with them, saving mean and
rstd for backward. Backward writes the input gradient of a row in one pass,
gx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = gy * weight; the weight and bias
gradients are column sums left to the array library. `layer_norm_reference` is the same math.
"""
from ...amp.autocast_mode import is_autocast_enabled
from ...autograd import Function, is_grad_enabled
from ...tensor import Tensor
from ...tensor.backend import array_module
from . import cuda_kernels

SOURCE = r"""
extern "C" __global__ void layer_norm_forward(const T* x, const T* weight, const T* bias,
        long long width, double eps, T* y, T* mean_out, T* rstd_out) {
    __shared__ A shared[32];
    const T* row = x + blockIdx.x * width;
    T* out = y + blockIdx.x * width;
    A s = 0;
    for (long long c = threadIdx.x; c < width; c += blockDim.x) s += (A)row[c];
    A mean = block_sum(s, shared) / (A)width;
    A q = 0;
    for (long long c = threadIdx.x; c < width; c += blockDim.x) {
        A d = (A)row[c] - mean;
        q += d * d;
    }
    A rstd = (A)1 / sqrt(block_sum(q, shared) / (A)width + (A)eps);
    for (long long c = threadIdx.x; c < width; c += blockDim.x) {
        A v = ((A)row[c] - mean) * rstd;
        if (weight) v *= (A)weight[c];
        if (bias) v += (A)bias[c];
        out[c] = (T)v;
    }
    if (threadIdx.x == 0) { mean_out[blockIdx.x] = (T)mean; rstd_out[blockIdx.x] = (T)rstd; }
}
extern "C" __global__ void layer_norm_backward(const T* x, const T* gy, const T* weight,
        const T* mean, const T* rstd, long long width, T* gx) {
    __shared__ A shared[32];
    const T* row = x + blockIdx.x * width;
    const T* grow = gy + blockIdx.x * width;
    T* out = gx + blockIdx.x * width;
    A m = (A)mean[blockIdx.x], r = (A)rstd[blockIdx.x];
    A sg = 0, sgx = 0;
    for (long long c = threadIdx.x; c < width; c += blockDim.x) {
        A g = (A)grow[c] * (weight ? (A)weight[c] : (A)1);
        sg += g;
        sgx += g * ((A)row[c] - m) * r;
    }
    A mg = block_sum(sg, shared) / (A)width;
    A mgx = block_sum(sgx, shared) / (A)width;
    for (long long c = threadIdx.x; c < width; c += blockDim.x) {
        A g = (A)grow[c] * (weight ? (A)weight[c] : (A)1);
        A xhat = ((A)row[c] - m) * r;
        out[c] = (T)(r * (g - mg - xhat * mgx));
    }
}
"""


def layer_norm_reference(x, weight, bias, eps):
    """(y, mean, rstd) over the last axis of x (rows, width), as the kernel computes them."""
    xp = array_module(x)
    mean = x.mean(axis=1)
    rstd = 1 / xp.sqrt(((x - mean[:, None]) ** 2).mean(axis=1) + eps)
    y = (x - mean[:, None]) * rstd[:, None]
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y, mean, rstd


def layer_norm_grad_reference(x, gy, weight, mean, rstd):
    """(gx, gweight, gbias) for x (rows, width)."""
    xhat = (x - mean[:, None]) * rstd[:, None]
    g = gy if weight is None else gy * weight
    gx = rstd[:, None] * (g - g.mean(axis=1, keepdims=True)
                          - xhat * (g * xhat).mean(axis=1, keepdims=True))
    return gx, (gy * xhat).sum(axis=0), gy.sum(axis=0)


class LayerNormKernels:
    def __init__(self, cupy):
        self.cupy = cupy

    def _kernel(self, name, dtype):
        return cuda_kernels.raw_kernel(self.cupy, SOURCE, dtype.name, name)

    def _optional(self, a, dtype):
        return self.cupy.uint64(0) if a is None else self.cupy.ascontiguousarray(a, dtype=dtype)

    def forward(self, x, weight, bias, eps):
        """(y, mean, rstd) for x (rows, width)."""
        cp = self.cupy
        x = cp.ascontiguousarray(x)
        rows, width = x.shape
        y = cp.empty_like(x)
        mean, rstd = cp.empty(rows, x.dtype), cp.empty(rows, x.dtype)
        self._kernel("layer_norm_forward", x.dtype)(
            (rows,), (cuda_kernels.ROW_THREADS,),
            (x, self._optional(weight, x.dtype), self._optional(bias, x.dtype),
             cp.int64(width), cp.float64(eps), y, mean, rstd))
        return y, mean, rstd

    def backward(self, x, gy, weight, mean, rstd):
        """(gx, gweight, gbias) for x (rows, width)."""
        cp = self.cupy
        x, gy = cp.ascontiguousarray(x), cp.ascontiguousarray(gy)
        rows, width = x.shape
        gx = cp.empty_like(x)
        self._kernel("layer_norm_backward", x.dtype)(
            (rows,), (cuda_kernels.ROW_THREADS,),
            (x, gy, self._optional(weight, x.dtype), mean, rstd, cp.int64(width), gx))
        xhat = (x - mean[:, None]) * rstd[:, None]
        ones = cp.ones(rows, x.dtype)   # column sums as GEMVs: down a column CuPy's sum is slow
        return gx, ones @ (gy * xhat), ones @ gy


def kernels_for(xp):
    """The fused layer norm for arrays of module `xp`; None for NumPy."""
    if xp.__name__ == "numpy":
        return None
    return LayerNormKernels(xp)


class FusedLayerNorm(Function):
    """Layer norm over the last `len(shape)` axes through the fused kernels (`kernels`: a
    LayerNormKernels). Backward under create_graph=True differentiates `unfused` (the same op
    composed of primitives) instead, so higher-order gradients stay available."""
    node_name = "NativeLayerNorm"
    graph_inputs = (0, 1, 2)

    @staticmethod
    def forward(ctx, x, weight, bias, shape, eps, kernels, unfused):
        width = 1
        for n in shape:
            width *= n
        d = x._data
        rows = d.size // max(width, 1)
        flat = lambda t: None if t is None else t._data.reshape(-1)  # noqa: E731
        y, mean, rstd = kernels.forward(d.reshape(rows, width), flat(weight), flat(bias), eps)
        ctx.save_for_backward(x, weight, bias)
        ctx.stats, ctx.width, ctx.kernels = (mean, rstd), width, kernels
        ctx.shape, ctx.eps, ctx.unfused = shape, eps, unfused
        return Tensor._make(y.reshape(d.shape))

    @staticmethod
    def backward(ctx, g):
        x, weight, bias = ctx.saved_tensors
        needs = ctx.needs_input_grad[:3]
        if is_grad_enabled():
            return cuda_kernels.differentiate(
                lambda a, w, b: ctx.unfused(a, ctx.shape, w, b, ctx.eps), (x, weight, bias),
                needs, g) + (None,) * 4
        d = x._data
        mean, rstd = ctx.stats
        rows = d.size // max(ctx.width, 1)
        w = None if weight is None else weight._data.reshape(-1)
        gx, gw, gb = ctx.kernels.backward(d.reshape(rows, ctx.width),
                                          g._data.reshape(rows, ctx.width), w, mean, rstd)
        out = (Tensor._make(gx.reshape(d.shape)) if needs[0] else None,
               Tensor._make(gw.reshape(weight.shape)) if needs[1] else None,
               Tensor._make(gb.reshape(bias.shape)) if bias is not None and needs[2] else None)
        return out + (None,) * 4


def layer_norm(input, shape, weight, bias, eps, unfused):
    """Layer norm through the fused kernels where they apply (a GPU, one float32/64 dtype, or
    float16/32 under autocast, which runs layer norm in float32 and so hands the kernels
    float32), else None. `unfused(input, shape, weight, bias, eps)` is the composed op."""
    kernels = kernels_for(array_module(input._data))
    arrays = [t._data for t in (input, weight, bias) if t is not None]
    if kernels is None:
        return None
    if is_autocast_enabled("cuda"):
        if not all(a.dtype.kind == "f" and a.dtype.itemsize <= 4 for a in arrays):
            return None
    elif not cuda_kernels.fusable(*arrays):
        return None
    return FusedLayerNorm.apply(input, weight, bias, shape, eps, kernels, unfused)
