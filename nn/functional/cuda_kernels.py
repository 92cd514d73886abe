"""What the fused CUDA kernels share: typed sources, compiled-kernel caching, and NVRTC.

A fused kernel is written once as CUDA C over `T` (the array's type) and `A` (the type it
accumulates in), and instantiated per dtype by `typed_source`. Kernels exist for float32 and
float64; other dtypes (float16 under autocast runs norms and losses in float32 anyway) take the
unfused path. `kernels_for(xp)` of each fused module returns None for NumPy: the CPU path is the
unfused one, and no op asks which device it runs on.
"""
import functools

import numpy as np

FUSED_DTYPES = {"float32": ("float", "float"), "float64": ("double", "double")}

_PRELUDE = """
typedef {T} T;
typedef {A} A;
__device__ __forceinline__ A block_sum(A v, A* shared) {{
    // every thread of the block gets the sum of `v` over the block (blockDim.x <= 1024)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    int warps = (blockDim.x + 31) >> 5;
    v = threadIdx.x < warps ? shared[threadIdx.x] : (A)0;
    if (warp == 0) for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    v = shared[0];
    __syncthreads();
    return v;
}}
__device__ __forceinline__ A block_max(A v, A* shared) {{
    for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffff, v, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    int warps = (blockDim.x + 31) >> 5;
    v = threadIdx.x < warps ? shared[threadIdx.x] : shared[0];
    if (warp == 0) for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffff, v, o));
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    v = shared[0];
    __syncthreads();
    return v;
}}
"""

ROW_THREADS = 256     # threads per row-wise block: one block per row of the last axis


def typed_source(body, dtype):
    """The CUDA source of `body` for arrays of `dtype` (float32/float64)."""
    T, A = FUSED_DTYPES[np.dtype(dtype).name]
    return _PRELUDE.format(T=T, A=A) + body


def fusable(*arrays):
    """Whether the fused kernels handle these arrays: one float dtype they are written for."""
    dtypes = {np.dtype(a.dtype).name for a in arrays if a is not None}
    return len(dtypes) == 1 and dtypes <= set(FUSED_DTYPES)


@functools.lru_cache(maxsize=None)
def raw_kernel(cupy, body, dtype_name, name):
    """A compiled CuPy RawKernel (CuPy caches the binary on disk too)."""
    return cupy.RawKernel(typed_source(body, dtype_name), name)


def compile_ptx(source, arch="compute_75"):
    """PTX of `source` through NVRTC; raises with the compiler's log. Used by the tests, which
    need no GPU for it."""
    from cupy_backends.cuda.libs import nvrtc
    program = nvrtc.createProgram(source, "fused.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(program, [f"--gpu-architecture={arch}", "--std=c++14"])
        except nvrtc.NVRTCError as e:
            raise RuntimeError(f"{e}\n{nvrtc.getProgramLog(program)}") from None
        return nvrtc.getPTX(program)
    finally:
        nvrtc.destroyProgram(program)


def grid(n, threads=256, most=65535):
    """Blocks for a grid-stride loop over n elements."""
    return (max(1, min(most, (n + threads - 1) // threads)),)


def differentiate(fn, inputs, needs, g):
    """The gradients of fn(*inputs) (the op composed of primitives) for the inputs in
    `needs`, recorded for higher orders: a fused Function's backward under create_graph=True,
    where its kernels record nothing."""
    from ...autograd import grad
    wanted = [t for t, n in zip(inputs, needs) if n and t is not None]
    grads = iter(grad(fn(*inputs), wanted, g, create_graph=True, allow_unused=True))
    return tuple(next(grads) if n and t is not None else None for t, n in zip(inputs, needs))
