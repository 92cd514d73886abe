"""Fused GELU on the GPU: forward and backward in one pass each, erf and tanh forms.

The unfused GELU is a chain of elementwise ops (each a kernel launch and an intermediate array);
these do each direction in one. `gelu_reference` is the same formula in NumPy/CuPy, the one
the tests hold the unfused path against.
"""
import math

from ...autograd import Function, is_grad_enabled
from ...tensor import Tensor
from ...tensor.backend import array_module
from ...tensor.ops.elementwise import Gelu
from . import cuda_kernels

SOURCE = r"""
__device__ __forceinline__ A gelu_value(A x, A* slope, int tanh_form) {
    const A s2 = (A)0.70710678118654752440, s2pi = (A)0.79788456080286535588;
    if (tanh_form) {
        A inner = s2pi * (x + (A)0.044715 * x * x * x);
        A t = tanh(inner);
        *slope = (A)0.5 * (1 + t) + (A)0.5 * x * (1 - t * t) * s2pi * (1 + (A)0.134145 * x * x);
        return (A)0.5 * x * (1 + t);
    }
    A cdf = (A)0.5 * (1 + erf(x * s2));
    *slope = cdf + x * exp((A)-0.5 * x * x) * (A)0.39894228040143267794;
    return x * cdf;
}
extern "C" __global__ void gelu_forward(const T* x, T* y, long long n, int tanh_form) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        A slope;
        y[i] = (T)gelu_value((A)x[i], &slope, tanh_form);
    }
}
extern "C" __global__ void gelu_backward(const T* x, const T* gy, T* gx, long long n,
                                         int tanh_form) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        A slope;
        gelu_value((A)x[i], &slope, tanh_form);
        gx[i] = (T)((A)gy[i] * slope);
    }
}
"""


def gelu_reference(x, approximate="none"):
    """(gelu(x), d gelu/dx) with the kernel's formula, for any array module."""
    xp = array_module(x)
    if approximate == "tanh":
        c = math.sqrt(2 / math.pi)
        t = xp.tanh(c * (x + 0.044715 * x ** 3))
        return 0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 0.134145 * x * x)
    if xp.__name__ == "numpy":
        from scipy.special import erf
    else:
        from cupyx.scipy.special import erf
    cdf = 0.5 * (1 + erf(x / math.sqrt(2)))
    return x * cdf, cdf + x * xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


class GeluKernels:
    def __init__(self, cupy):
        self.cupy = cupy

    def _launch(self, name, arrays, n, approximate):
        kernel = cuda_kernels.raw_kernel(self.cupy, SOURCE, arrays[0].dtype.name, name)
        kernel(cuda_kernels.grid(n), (256,), (*arrays, self.cupy.int64(n),
                                              self.cupy.int32(approximate == "tanh")))

    def forward(self, x, approximate="none"):
        x = self.cupy.ascontiguousarray(x)
        y = self.cupy.empty_like(x)
        self._launch("gelu_forward", (x, y), x.size, approximate)
        return y

    def backward(self, x, gy, approximate="none"):
        x, gy = self.cupy.ascontiguousarray(x), self.cupy.ascontiguousarray(gy)
        gx = self.cupy.empty_like(x)
        self._launch("gelu_backward", (x, gy, gx), x.size, approximate)
        return gx


def kernels_for(xp):
    """The fused GELU for arrays of module `xp`; None for NumPy (the unfused path)."""
    if xp.__name__ == "numpy":
        return None
    return GeluKernels(xp)


class FusedGelu(Function):
    """GELU through the fused kernels (`kernels`: a GeluKernels). Backward under
    create_graph=True uses the unfused formula, written with differentiable ops."""

    @staticmethod
    def forward(ctx, x, approximate, kernels):
        ctx.save_for_backward(x)
        ctx.approximate, ctx.kernels = approximate, kernels
        return Tensor._make(kernels.forward(x._data, approximate))

    @staticmethod
    def backward(ctx, g):
        if is_grad_enabled():
            return Gelu.backward(ctx, g), None, None
        x, = ctx.saved_tensors
        return Tensor._make(ctx.kernels.backward(x._data, g._data, ctx.approximate)), None, None


def gelu(input, approximate="none"):
    """GELU through the fused kernels where they apply (a GPU, float32/64), else None."""
    kernels = kernels_for(array_module(input._data))
    if kernels is None or approximate not in ("none", "tanh") or \
            not cuda_kernels.fusable(input._data):
        return None
    return FusedGelu.apply(input, approximate, kernels)
