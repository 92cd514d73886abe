"""Built-in DDP communication hooks: `model.register_comm_hook(state, hook)`.

A hook takes `(state, bucket)` and returns the bucket's reduced flat gradient (see
`DistributedDataParallel.register_comm_hook`). It runs on the communication thread, bucket by
bucket in order, so it may compute and call collectives freely. For the plain hooks `state`
is the process group (None: the world), as in PyTorch.

- `allreduce_hook`: what DDP does without a hook (the mean over ranks).
- `fp16_compress_hook`: all-reduce in float16 (half the bytes), then back to the gradient dtype.
- `powerSGD_hook` with a `PowerSGDState`: rank-r compression of every matrix-shaped gradient
  (Vogels et al., 2019): P = M Q, all-reduce P, orthonormalise P, Q = M^T P, all-reduce Q,
  M ~ P Q^T, with error feedback and warm start; vectors and small matrices are all-reduced
  as they are.
"""
import numpy as np

from ..tensor import Tensor
from ..tensor.backend import array_module
from .process_group import ReduceOp
from .world import resolve


def _group(state):
    return resolve(getattr(state, "process_group", state))


def allreduce_hook(process_group, bucket):
    """The mean over ranks, in place in the bucket."""
    buf = bucket.buffer()
    _group(process_group).allreduce(buf._data, ReduceOp.AVG).wait()
    return buf


def fp16_compress_hook(process_group, bucket):
    """Cast to float16 (after dividing by the world size, so the sum cannot overflow sooner
    than the mean would), all-reduce, cast back into the bucket."""
    group = _group(process_group)
    buf = bucket.buffer()._data
    half = (buf / group.size).astype(np.float16)
    group.allreduce(half, ReduceOp.SUM).wait()
    buf[...] = half
    return Tensor._make(buf)


class PowerSGDState:
    """Settings and memory (error feedback, warm-start Q) of `powerSGD_hook`; names and
    defaults as in PyTorch. Compression starts after `start_powerSGD_iter` steps of plain
    all-reduce; a matrix is compressed only if that shrinks it `min_compression_rate` times."""

    def __init__(self, process_group=None, matrix_approximation_rank=1,
                 start_powerSGD_iter=1_000, min_compression_rate=2, use_error_feedback=True,
                 warm_start=True, orthogonalization_epsilon=0, random_seed=0):
        if (use_error_feedback or warm_start) and start_powerSGD_iter <= 1:
            raise ValueError("PowerSGD with error feedback or warm start needs "
                             "start_powerSGD_iter > 1 (run plain all-reduce first, as in "
                             "PyTorch, so DDP can settle its buckets)")
        self.process_group = process_group
        self.matrix_approximation_rank = matrix_approximation_rank
        self.start_powerSGD_iter = start_powerSGD_iter
        self.min_compression_rate = min_compression_rate
        self.use_error_feedback = use_error_feedback
        self.warm_start = warm_start
        self.orthogonalization_epsilon = orthogonalization_epsilon
        self.rng = np.random.RandomState(random_seed)
        self.error_dict = {}       # bucket index -> local error of the last step
        self.q_memory_dict = {}    # bucket index -> list of Q matrices
        self.iter = 0

    def maybe_increase_iter(self, bucket):
        if bucket.is_last():
            self.iter += 1


def _orthonormalize(p, eps):
    xp = array_module(p)
    q, _ = xp.linalg.qr(p + eps if eps else p)
    return q


def powerSGD_hook(state, bucket):
    group = _group(state)
    buf_t = bucket.buffer()
    buf = buf_t._data
    if state.iter < state.start_powerSGD_iter:
        state.maybe_increase_iter(bucket)
        group.allreduce(buf, ReduceOp.AVG).wait()
        return buf_t
    xp = array_module(buf)
    index, r = bucket.index(), state.matrix_approximation_rank
    if state.use_error_feedback:
        error = state.error_dict.get(index)
        if error is not None:
            buf += error
        local = buf.copy()
    grads = [g._data for g in bucket.gradients()]
    matrices, plain = [], []
    for g in grads:
        if g.ndim > 1:
            m = g.reshape(g.shape[0], -1)
            n, k = m.shape
            rank = min(n, k, r)
            if n * k > (n + k) * rank * state.min_compression_rate:
                matrices.append((m, rank))
                continue
        plain.append(g)
    if plain:                             # uncompressed: one all-reduce for all of them
        flat = xp.concatenate([g.reshape(-1) for g in plain])
        group.allreduce(flat, ReduceOp.AVG).wait()
        offset = 0
        for g in plain:
            g[...] = flat[offset:offset + g.size].reshape(g.shape)
            offset += g.size
    if matrices:
        qs = state.q_memory_dict.get(index) if state.warm_start else None
        if qs is None:
            qs = [xp.asarray(_orthonormalize(state.rng.standard_normal((m.shape[1], rank)),
                                             0)).astype(m.dtype) for m, rank in matrices]
        ps = [m @ q for (m, _), q in zip(matrices, qs)]
        _allreduce_all(group, xp, ps, ReduceOp.SUM)
        ps = [_orthonormalize(p, state.orthogonalization_epsilon) for p in ps]
        qs = [m.T @ p for (m, _), p in zip(matrices, ps)]
        _allreduce_all(group, xp, qs, ReduceOp.AVG)
        for (m, _), p, q in zip(matrices, ps, qs):
            m[...] = p @ q.T
        if state.warm_start:
            state.q_memory_dict[index] = qs
    if state.use_error_feedback:
        state.error_dict[index] = local - buf
    state.maybe_increase_iter(bucket)
    return buf_t


def _allreduce_all(group, xp, arrays, op):
    flat = xp.concatenate([a.reshape(-1) for a in arrays])
    group.allreduce(flat, op).wait()
    offset = 0
    for a in arrays:
        a[...] = flat[offset:offset + a.size].reshape(a.shape)
        offset += a.size
