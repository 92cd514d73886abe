"""Multi-tensor optimizer updates on the GPU: every parameter of a group in one launch.

The unfused update is a handful of array ops per parameter, so a model of P parameters costs
~5P kernel launches a step; these kernels update all of them in one. The group's tensors are
passed as a table of device pointers and their element offsets; each thread finds its tensor
by binary search in the offsets and applies PyTorch's update for SGD (momentum, dampening,
Nesterov, weight decay), Adam and AdamW (no amsgrad: that takes the unfused path). The
`*_reference` functions are the same updates over lists of arrays, in NumPy or CuPy.
"""
import collections
import functools
import math

from ..nn.functional import cuda_kernels

SOURCE = r"""
__device__ __forceinline__ int tensor_of(const long long* offsets, int count, long long i) {
    int lo = 0, hi = count - 1;           // offsets[lo] <= i < offsets[lo + 1]
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (offsets[mid] <= i) lo = mid; else hi = mid - 1;
    }
    return lo;
}
extern "C" __global__ void sgd_multi(const long long* params, const long long* grads,
        const long long* buffers, const long long* offsets, int count, long long total,
        double lr, double momentum, double dampening, double weight_decay, int nesterov,
        int first_step, int maximize) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        int k = tensor_of(offsets, count, i);
        long long j = i - offsets[k];
        T* p = (T*)params[k];
        A g = (A)((const T*)grads[k])[j];
        if (maximize) g = -g;
        A pv = (A)p[j];
        if (weight_decay != 0) g += (A)weight_decay * pv;
        if (momentum != 0) {
            T* buf = (T*)buffers[k];
            A b = first_step ? g : (A)momentum * (A)buf[j] + (A)(1 - dampening) * g;
            buf[j] = (T)b;
            g = nesterov ? g + (A)momentum * b : b;
        }
        p[j] = (T)(pv - (A)lr * g);
    }
}
extern "C" __global__ void adam_multi(const long long* params, const long long* grads,
        const long long* exp_avgs, const long long* exp_avg_sqs, const long long* offsets,
        int count, long long total, double lr, double beta1, double beta2, double eps,
        double weight_decay, double bias_correction1, double bias_correction2, int decoupled,
        int maximize) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        int k = tensor_of(offsets, count, i);
        long long j = i - offsets[k];
        T* p = (T*)params[k];
        T* m = (T*)exp_avgs[k];
        T* v = (T*)exp_avg_sqs[k];
        A g = (A)((const T*)grads[k])[j];
        if (maximize) g = -g;
        A pv = (A)p[j];
        if (weight_decay != 0) {
            if (decoupled) pv *= (A)(1 - lr * weight_decay);
            else g += (A)weight_decay * pv;
        }
        A mv = (A)beta1 * (A)m[j] + (A)(1 - beta1) * g;
        A vv = (A)beta2 * (A)v[j] + (A)(1 - beta2) * g * g;
        m[j] = (T)mv;
        v[j] = (T)vv;
        A denom = sqrt(vv) / (A)sqrt(bias_correction2) + (A)eps;
        p[j] = (T)(pv - (A)(lr / bias_correction1) * mv / denom);
    }
}
"""


def sgd_reference(params, grads, buffers, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                  nesterov=False, first_step=True, maximize=False):
    """The kernel's SGD step over lists of arrays, in place."""
    for p, g, buf in zip(params, grads, buffers):
        g = -g if maximize else g
        if weight_decay:
            g = g + weight_decay * p
        if momentum:
            buf[...] = g if first_step else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p -= lr * g


def adam_reference(params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps,
                   weight_decay=0.0, decoupled=False, maximize=False):
    """The kernel's Adam (AdamW when `decoupled`) step over lists of arrays, in place; `step`
    counts from 1."""
    bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
    for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
        g = -g if maximize else g
        if weight_decay:
            if decoupled:
                p *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * p
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * g * g
        p -= (lr / bc1) * m / ((v ** 0.5) / math.sqrt(bc2) + eps)


class MultiTensorKernels:
    TABLES = 64        # device tables kept: parameters and their states keep their addresses

    def __init__(self, cupy):
        self.cupy = cupy
        self._tables = collections.OrderedDict()

    def _device_table(self, values):
        """`values` (ints) as a device int64 array, reused while they repeat: the step then
        copies nothing from the host."""
        key = tuple(values)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = self.cupy.asarray(key, dtype=self.cupy.int64)
            if len(self._tables) > self.TABLES:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(key)
        return table

    def _table(self, arrays):
        return self._device_table([a.data.ptr for a in arrays])

    def _layout(self, params):
        offsets = [0]
        for p in params:
            offsets.append(offsets[-1] + p.size)
        return self._device_table(offsets), offsets[-1]

    @staticmethod
    def fusable(*lists):
        """Every array contiguous, of one float dtype the kernels are written for."""
        arrays = [a for arrays in lists for a in arrays]
        return bool(arrays) and cuda_kernels.fusable(*arrays) and \
            all(a.flags.c_contiguous for a in arrays)

    def sgd(self, params, grads, buffers, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
            nesterov=False, first_step=True, maximize=False):
        cp = self.cupy
        offsets, total = self._layout(params)
        kernel = cuda_kernels.raw_kernel(cp, SOURCE, params[0].dtype.name, "sgd_multi")
        kernel(cuda_kernels.grid(total), (256,),
               (self._table(params), self._table(grads),
                self._table(buffers if momentum else params), offsets, cp.int32(len(params)),
                cp.int64(total), cp.float64(lr), cp.float64(momentum), cp.float64(dampening),
                cp.float64(weight_decay), cp.int32(bool(nesterov)), cp.int32(bool(first_step)),
                cp.int32(bool(maximize))))

    def adam(self, params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps,
             weight_decay=0.0, decoupled=False, maximize=False):
        cp = self.cupy
        offsets, total = self._layout(params)
        kernel = cuda_kernels.raw_kernel(cp, SOURCE, params[0].dtype.name, "adam_multi")
        kernel(cuda_kernels.grid(total), (256,),
               (self._table(params), self._table(grads), self._table(exp_avgs),
                self._table(exp_avg_sqs), offsets, cp.int32(len(params)), cp.int64(total),
                cp.float64(lr), cp.float64(beta1), cp.float64(beta2), cp.float64(eps),
                cp.float64(weight_decay), cp.float64(1 - beta1 ** step),
                cp.float64(1 - beta2 ** step), cp.int32(bool(decoupled)),
                cp.int32(bool(maximize))))


@functools.lru_cache(maxsize=None)
def kernels_for(xp):
    """The multi-tensor updates for arrays of module `xp`; None for NumPy."""
    if xp.__name__ == "numpy":
        return None
    return MultiTensorKernels(xp)


def _kernels_for_arrays(arrays):
    from ..tensor.backend import array_module
    return kernels_for(array_module(arrays[0])) if arrays else None


def sgd_step(params, grads, momentum_buffers, *, lr, momentum, dampening, nesterov,
             weight_decay, maximize):
    """The SGD update of `optim.sgd.sgd` in one launch, when the arrays allow it (on a GPU,
    one float dtype, contiguous, every momentum buffer present or none yet); False if not."""
    kernels = _kernels_for_arrays(params)
    if kernels is None or not kernels.fusable(params, grads):
        return False
    first, buffers = True, params       # without momentum the kernel touches no buffer
    if momentum:
        first = all(b is None for b in momentum_buffers)
        if not first and (any(b is None for b in momentum_buffers)
                          or not kernels.fusable(params, momentum_buffers)):
            return False
        if first:
            momentum_buffers[:] = [kernels.cupy.empty_like(p) for p in params]
        buffers = momentum_buffers
    kernels.sgd(params, grads, buffers, lr, momentum=momentum, dampening=dampening,
                weight_decay=weight_decay, nesterov=nesterov, first_step=first,
                maximize=maximize)
    return True


def adam_step(params, grads, exp_avgs, exp_avg_sqs, steps, *, amsgrad, beta1, beta2, lr,
              weight_decay, eps, maximize, decoupled_weight_decay):
    """The Adam/AdamW update of `optim.adam.adam` in one launch, when the arrays allow it (on
    a GPU, one float dtype, contiguous, no amsgrad, one step count for the whole group);
    False if not. The step counts are host scalars: reading them costs no synchronisation."""
    kernels = _kernels_for_arrays(params)
    if kernels is None or amsgrad or not kernels.fusable(params, grads, exp_avgs, exp_avg_sqs):
        return False
    counts = {float(s) for s in steps}
    if len(counts) != 1:
        return False
    for s in steps:
        s += 1
    kernels.adam(params, grads, exp_avgs, exp_avg_sqs, counts.pop() + 1, lr, beta1, beta2, eps,
                 weight_decay, decoupled=decoupled_weight_decay, maximize=maximize)
    return True
