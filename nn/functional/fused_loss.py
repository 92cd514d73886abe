"""Fused softmax / log-softmax and cross entropy (log-softmax + NLL) on the GPU.

One block per row of the class axis: the row's max and log-sum-exp are block reductions, so
forward reads the logits once and writes a loss and a log-sum-exp per row; backward recomputes
the softmax from the saved log-sum-exp and writes the gradient in the same pass. They cover
class-index targets with class weights and `ignore_index` (no label smoothing: that takes the
unfused path). `cross_entropy_reference` is the same math in NumPy/CuPy.
"""
from ...autograd import Function, is_grad_enabled
from ...tensor import Tensor
from ...tensor.backend import array_module
from . import cuda_kernels

SOURCE = r"""
extern "C" __global__ void log_softmax_forward(const T* x, T* y, long long classes, int take_log) {
    __shared__ A shared[32];
    const T* row = x + blockIdx.x * classes;
    T* out = y + blockIdx.x * classes;
    A m = (A)__int_as_float(0xff800000);  // -infinity
    for (long long c = threadIdx.x; c < classes; c += blockDim.x) m = max(m, (A)row[c]);
    m = block_max(m, shared);
    A s = 0;
    for (long long c = threadIdx.x; c < classes; c += blockDim.x) s += exp((A)row[c] - m);
    A lse = m + log(block_sum(s, shared));
    for (long long c = threadIdx.x; c < classes; c += blockDim.x) {
        A v = (A)row[c] - lse;
        out[c] = (T)(take_log ? v : exp(v));
    }
}
extern "C" __global__ void cross_entropy_forward(const T* x, const long long* target,
        const T* weight, long long classes, long long ignore_index, T* loss, T* lse_out,
        T* weight_out) {
    __shared__ A shared[32];
    const T* row = x + blockIdx.x * classes;
    A m = (A)__int_as_float(0xff800000);  // -infinity
    for (long long c = threadIdx.x; c < classes; c += blockDim.x) m = max(m, (A)row[c]);
    m = block_max(m, shared);
    A s = 0;
    for (long long c = threadIdx.x; c < classes; c += blockDim.x) s += exp((A)row[c] - m);
    A lse = m + log(block_sum(s, shared));
    if (threadIdx.x == 0) {
        long long t = target[blockIdx.x];
        // out-of-range targets are the caller's check (debug mode); they count as ignored
        bool skip = t == ignore_index || t < 0 || t >= classes;
        A w = skip ? (A)0 : (weight ? (A)weight[t] : (A)1);
        loss[blockIdx.x] = (T)(skip ? (A)0 : w * (lse - (A)row[t]));
        lse_out[blockIdx.x] = (T)lse;
        weight_out[blockIdx.x] = (T)w;
    }
}
extern "C" __global__ void cross_entropy_backward(const T* x, const long long* target,
        const T* row_weight, const T* lse, const T* grad_loss, long long classes, T* gx) {
    // gx[r, c] = grad_loss[r] * w_r * (softmax[r, c] - [c == target[r]])
    const T* row = x + blockIdx.x * classes;
    T* out = gx + blockIdx.x * classes;
    A scale = (A)grad_loss[blockIdx.x] * (A)row_weight[blockIdx.x];
    A l = (A)lse[blockIdx.x];
    long long t = target[blockIdx.x];
    for (long long c = threadIdx.x; c < classes; c += blockDim.x)
        out[c] = (T)(scale * (exp((A)row[c] - l) - (c == t ? (A)1 : (A)0)));
}
"""


def cross_entropy_reference(x, target, weight=None, ignore_index=-100):
    """(per-row loss, per-row log-sum-exp, per-row weight) for logits (N, C), as the kernel
    computes them; `cross_entropy_grad_reference` gives the gradient."""
    xp = array_module(x)
    m = x.max(axis=1, keepdims=True)
    lse = (m + xp.log(xp.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]
    skip = (target == ignore_index) | (target < 0) | (target >= x.shape[1])
    safe = xp.where(skip, 0, target)
    w = xp.ones(x.shape[0], x.dtype) if weight is None else weight[safe].astype(x.dtype)
    w = xp.where(skip, 0, w).astype(x.dtype)
    picked = xp.take_along_axis(x, safe[:, None], axis=1)[:, 0]
    return w * (lse - picked), lse, w


def cross_entropy_grad_reference(x, target, row_weight, lse, grad_loss):
    xp = array_module(x)
    onehot = xp.arange(x.shape[1])[None, :] == target[:, None]
    return (grad_loss * row_weight)[:, None] * (xp.exp(x - lse[:, None]) - onehot)


class CrossEntropyKernels:
    def __init__(self, cupy):
        self.cupy = cupy

    def _kernel(self, name, dtype):
        return cuda_kernels.raw_kernel(self.cupy, SOURCE, dtype.name, name)

    def softmax(self, x, log=False):
        """(log-)softmax over the last axis of a contiguous array."""
        cp = self.cupy
        x = cp.ascontiguousarray(x)
        classes = x.shape[-1]
        y = cp.empty_like(x)
        self._kernel("log_softmax_forward", x.dtype)(
            (x.size // max(classes, 1),), (cuda_kernels.ROW_THREADS,),
            (x, y, cp.int64(classes), cp.int32(bool(log))))
        return y

    def forward(self, x, target, weight=None, ignore_index=-100):
        """(per-row loss, log-sum-exp, per-row weight) for logits (N, C) and targets (N,)."""
        cp = self.cupy
        x = cp.ascontiguousarray(x)
        target = cp.ascontiguousarray(target, dtype=cp.int64)
        rows, classes = x.shape
        loss, lse, w = (cp.empty(rows, x.dtype) for _ in range(3))
        weight = None if weight is None else cp.ascontiguousarray(weight, dtype=x.dtype)
        self._kernel("cross_entropy_forward", x.dtype)(
            (rows,), (cuda_kernels.ROW_THREADS,),
            (x, target, weight if weight is not None else cp.uint64(0), cp.int64(classes),
             cp.int64(ignore_index), loss, lse, w))
        return loss, lse, w

    def backward(self, x, target, row_weight, lse, grad_loss):
        cp = self.cupy
        x = cp.ascontiguousarray(x)
        rows, classes = x.shape
        gx = cp.empty_like(x)
        grad_loss = cp.ascontiguousarray(cp.broadcast_to(grad_loss, (rows,)), dtype=x.dtype)
        self._kernel("cross_entropy_backward", x.dtype)(
            (rows,), (cuda_kernels.ROW_THREADS,),
            (x, cp.ascontiguousarray(target, dtype=cp.int64), row_weight, lse, grad_loss,
             cp.int64(classes), gx))
        return gx


def kernels_for(xp):
    """Fused (log-)softmax and cross entropy for arrays of module `xp`; None for NumPy."""
    if xp.__name__ == "numpy":
        return None
    return CrossEntropyKernels(xp)


class FusedCrossEntropy(Function):
    """Cross entropy of logits (N, C) and class indices (N,) through the fused kernels
    (`kernels`: a CrossEntropyKernels), with class weights, ignore_index and every reduction.
    Backward under create_graph=True differentiates `unfused(input, target, weight)` instead."""
    node_name = "NllLoss"         # the last node of PyTorch's log_softmax + nll_loss
    graph_inputs = (0,)

    @staticmethod
    def forward(ctx, input, target, weight, ignore_index, reduction, kernels, unfused):
        x = input._data
        xp = array_module(x)
        t = target._data.reshape(-1)
        loss, lse, w = kernels.forward(x, t, None if weight is None else weight._data,
                                       ignore_index)
        scale = None
        if reduction == "none":
            out = loss
        elif reduction == "sum":
            out = loss.sum()
        else:   # over the weights of the counted rows; 0 / 0 is nan, as PyTorch's
            denom = w.sum()
            empty = denom == 0
            out = xp.where(empty, xp.nan, loss.sum() / xp.where(empty, 1, denom))
            scale = xp.where(empty, 0, 1 / xp.where(empty, 1, denom))
        ctx.save_for_backward(input, target, weight)
        ctx.lse, ctx.w, ctx.scale, ctx.reduction = lse, w, scale, reduction
        ctx.kernels, ctx.unfused = kernels, unfused
        return Tensor._make(xp.asarray(out, dtype=x.dtype))

    @staticmethod
    def backward(ctx, g):
        input, target, weight = ctx.saved_tensors
        if is_grad_enabled():
            gx, = cuda_kernels.differentiate(lambda a: ctx.unfused(a, target, weight), (input,),
                                             ctx.needs_input_grad[:1], g)
            return (gx,) + (None,) * 6
        if not ctx.needs_input_grad[0]:
            return (None,) * 7
        grad_loss = g._data if ctx.scale is None else g._data * ctx.scale
        gx = ctx.kernels.backward(input._data, target._data.reshape(-1), ctx.w, ctx.lse,
                                  grad_loss)
        return (Tensor._make(gx),) + (None,) * 6


def cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing, unfused):
    """Cross entropy through the fused kernels where they apply (a GPU, float32/64 logits of
    shape (N, C), class-index targets, no label smoothing), else None."""
    kernels = kernels_for(array_module(input._data))
    if kernels is None or input.ndim != 2 or label_smoothing or \
            target._data.dtype.kind not in "iu" or \
            not cuda_kernels.fusable(input._data, None if weight is None else weight._data):
        return None
    return FusedCrossEntropy.apply(input, target, weight, ignore_index, reduction, kernels,
                                   unfused)
