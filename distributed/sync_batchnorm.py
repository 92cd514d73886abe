"""`SyncBatchNorm`: batch normalisation with statistics over the whole global batch.

In training, each rank sums its per-channel count, sum and sum of squares; one all-reduce
gives the global mean and variance, so every rank normalises exactly as one process would on
the concatenated batch, and the running statistics (unbiased variance over the global count)
agree on every rank. Backward all-reduces the two per-channel sums the input gradient needs.
In eval mode, or in a world of one, it is the ordinary BatchNorm.

The statistics are exchanged in float32 (float64 for float64 inputs), whatever the input's
precision: a float16 count is wrong past 2048 and overflows past 65504. The global count stays
on the device, so a training step on a GPU never waits for it on the host.

    model = SyncBatchNorm.convert_sync_batchnorm(model)   # every BatchNorm*d, in place
"""
import numpy as np

from ..autograd import Function, once_differentiable
from ..nn.modules.batchnorm import _BatchNorm
from ..tensor import Tensor
from ..tensor.backend import array_module, can_check, host_scalar
from .comm_queue import blocking
from .process_group import ReduceOp
from .world import is_initialized, resolve


def _stats_dtype(dtype):
    """float64 for float64 data, else float32: the precision statistics are kept in."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


class _SyncBatchNormFunction(Function):
    @staticmethod
    def forward(ctx, input, weight, bias, eps, group, stats):
        x = input._data
        xp = array_module(x)
        c = x.shape[1]
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, c) + (1,) * (x.ndim - 2)
        n = x.size // c
        acc = _stats_dtype(x.dtype)
        xa = x.astype(acc, copy=False)
        mean_local = xa.mean(axis=axes) if n else xp.zeros(c, dtype=acc)
        local = xp.empty(2 * c + 1, dtype=acc)          # count, mean, centred sum of squares
        local[0] = n
        local[1:c + 1] = mean_local
        local[c + 1:] = ((xa - mean_local.reshape(shape)) ** 2).sum(axis=axes)
        every = xp.empty((group.size, 2 * c + 1), dtype=acc)
        blocking(group.allgather, every, local)
        counts, means, m2s = every[:, :1], every[:, 1:c + 1], every[:, c + 1:]
        count = xp.asarray(counts.sum())                # a device scalar: never read here
        mean = (counts * means).sum(axis=0) / count     # Chan et al.: stable pairwise merge
        var = (m2s + counts * (means - mean) ** 2).sum(axis=0) / count
        invstd = 1.0 / xp.sqrt(var + eps)
        xhat = ((xa - mean.reshape(shape)) * invstd.reshape(shape)).astype(x.dtype, copy=False)
        y = xhat
        if weight is not None:
            y = y * weight._data.reshape(shape)
        if bias is not None:
            y = y + bias._data.reshape(shape)
        stats.update(mean=mean, var=var, count=count)
        ctx.group, ctx.axes, ctx.shape, ctx.count = group, axes, shape, count
        ctx.xhat, ctx.invstd = xhat, invstd
        ctx.save_for_backward(weight)
        return Tensor._make(y.astype(x.dtype, copy=False))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        weight, = ctx.saved_tensors
        dy = grad_out._data
        xp = array_module(dy)
        xhat, axes, shape, c = ctx.xhat, ctx.axes, ctx.shape, dy.shape[1]
        sums = xp.empty(2 * c, dtype=_stats_dtype(dy.dtype))
        sums[:c] = dy.sum(axis=axes, dtype=sums.dtype)               # local: d bias
        sums[c:] = (dy * xhat).sum(axis=axes, dtype=sums.dtype)      # local: d weight
        grad_weight = Tensor._make(sums[c:].astype(dy.dtype)) if weight is not None else None
        grad_bias = Tensor._make(sums[:c].astype(dy.dtype))
        grad_input = None
        if ctx.needs_input_grad[0]:
            blocking(ctx.group.allreduce, sums, ReduceOp.SUM)   # sums over the global batch
            mean_dy = (sums[:c] / ctx.count).reshape(shape)
            mean_dy_xhat = (sums[c:] / ctx.count).reshape(shape)
            scale = ctx.invstd.reshape(shape)
            if weight is not None:
                scale = scale * weight._data.reshape(shape)
            grad_input = Tensor._make((scale * (dy - mean_dy - xhat * mean_dy_xhat))
                                      .astype(dy.dtype, copy=False))
        return (grad_input, grad_weight if ctx.needs_input_grad[1] else None,
                grad_bias if ctx.needs_input_grad[2] else None, None, None, None)


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over (N, C, ...) inputs whose batch statistics span every rank of
    `process_group` (default: the world)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, process_group=None, device=None, dtype=None, *,
                 bias=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype, bias=bias)
        self.process_group = process_group

    def _check_input_dim(self, input):
        if input.ndim < 2:
            raise ValueError(f"SyncBatchNorm: expected at least a 2D input (N, C, ...), got "
                             f"shape {list(input.shape)}")
        if input.shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm: expected {self.num_features} channels (dim 1) "
                             f"but got input of shape {list(input.shape)}")

    def forward(self, input):
        group = resolve(self.process_group) if is_initialized() else None
        if not self.training or group is None or group.size == 1:
            return super().forward(input)
        self._check_input_dim(input)
        stats = {}
        out = _SyncBatchNormFunction.apply(input, self.weight, self.bias, self.eps, group,
                                           stats)
        if self.track_running_stats:
            n = self.num_batches_tracked
            n._data += 1
            n._version[0] += 1
            # momentum=None (a cumulative average) reads the step count, as PyTorch does
            factor = 1.0 / host_scalar(n._data) if self.momentum is None else self.momentum
            count = stats["count"]
            if can_check(count) and host_scalar(count) <= 1:
                raise ValueError(f"Expected more than 1 value per channel when training, got "
                                 f"{host_scalar(count):g} over all ranks (input "
                                 f"{list(input.shape)})")
            for running, batch in ((self.running_mean, stats["mean"]),
                                   (self.running_var, stats["var"] * (count / (count - 1)))):
                running._data *= 1 - factor
                running._data += factor * batch.astype(running._data.dtype, copy=False)
                running._version[0] += 1
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """Replace every BatchNorm*d in `module` (or `module` itself) by a SyncBatchNorm that
        shares its parameters and buffers; returns the converted module."""
        out = module
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            out = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, process_group,
                      bias=not module.affine or module.bias is not None)
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(out, name, getattr(module, name))
            out.train(module.training)
        for name, child in list(module.named_children()):
            converted = cls.convert_sync_batchnorm(child, process_group)
            if converted is not child:
                setattr(module, name, converted)
        return out
