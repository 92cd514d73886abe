"""Built-in DDP communication hooks: `model.register_comm_hook(state, hook)`.

A hook takes `(state, bucket)` and returns the bucket's reduced flat gradient (see
`DistributedDataParallel.register_comm_hook`). It runs on the communication thread, bucket by
bucket in order, so it may compute and call collectives freely. For the plain hooks `state`
is the process group (None: the world), as in PyTorch, whose hooks these are (same names,
arguments and results; `phalanx.distributed.algorithms.ddp_comm_hooks` has PyTorch's paths).

- `allreduce_hook`: what DDP does without a hook (the mean over ranks).
- `fp16_compress_hook`, `bf16_compress_hook`: all-reduce in float16 / bfloat16 (half the
  bytes), then back to the gradient dtype; `fp16_compress_wrapper(hook)` and
  `bf16_compress_wrapper(hook)` run any hook on the bucket cast so.
- `powerSGD_hook` with a `PowerSGDState`: rank-r compression of every matrix-shaped gradient
  (Vogels et al., 2019): P = M Q, all-reduce P, orthonormalise P, Q = M^T P, all-reduce Q,
  M ~ P Q^T, with error feedback and warm start; vectors and small matrices are all-reduced
  as they are. `batched_powerSGD_hook` does the same to the whole bucket laid out as one
  square matrix (zero-padded): fewer, smaller all-reduces, a coarser approximation.
- `quantization_pertensor_hook`, `quantization_perchannel_hook`: each rank quantises its
  bucket to 8 bits (an affine scale and zero point per bucket, or per row of `bucket_size`
  values, as PyTorch's MinMax observers compute them); the ranks all-gather the bytes and
  their scales and average what they dequantise, in float32.
- `post_localSGD_hook` with a `PostLocalSGDState`: plain all-reduce for the first
  `start_localSGD_iter` steps, then within `subgroup` only (or not at all): local SGD, with
  a model averager (`algorithms.model_averaging`) averaging parameters now and then.
- `noop_hook`: no communication at all (each rank keeps its own gradients), to measure how
  much of a step the all-reduce costs.
"""
import math

import numpy as np

from ..futures import Future
from ..tensor import Tensor
from ..tensor.backend import array_module
from ..tensor.dtypes import BF16_NP
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
    return _compressed(process_group, bucket, np.float16)


def bf16_compress_hook(process_group, bucket):
    """`fp16_compress_hook` in bfloat16: float32's range with 8 bits of precision (CPU only:
    CuPy has no bfloat16)."""
    return _compressed(process_group, bucket, BF16_NP)


def _compressed(process_group, bucket, dtype):
    group = _group(process_group)
    buf = bucket.buffer()._data
    low = (buf / group.size).astype(_low(buf, dtype))
    group.allreduce(low, ReduceOp.SUM).wait()
    buf[...] = low
    return Tensor._make(buf)


def _low(buf, dtype):
    if dtype is BF16_NP and array_module(buf) is not np:
        raise TypeError("bfloat16 compression needs the CPU: CuPy has no bfloat16 arrays; "
                        "use fp16_compress_hook / fp16_compress_wrapper on a GPU")
    return dtype


def fp16_compress_wrapper(hook):
    """`hook` run on the bucket cast to float16, its result cast back into the bucket
    (`fp16_compress_wrapper(allreduce_hook)` is `fp16_compress_hook`, without the early
    division by the world size)."""
    return _compress_wrapper(hook, np.float16, "fp16_compress_wrapper_hook")


def bf16_compress_wrapper(hook):
    """`fp16_compress_wrapper` in bfloat16."""
    return _compress_wrapper(hook, BF16_NP, "bf16_compress_wrapper_hook")


def _compress_wrapper(hook, dtype, name):
    from .reducer import _run_hook

    def wrapped(state, bucket):
        buf = bucket.buffer()._data
        low = bucket._astype(_low(buf, dtype))
        out = _run_hook(hook, state, low)
        out = low.buffer() if out is None else out
        buf[...] = getattr(out, "_data", out).reshape(buf.shape)
        return Tensor._make(buf)
    wrapped.__name__ = wrapped.__qualname__ = name
    return wrapped


def noop_hook(state, bucket):
    """No communication: a completed Future of the bucket as it is (PyTorch's, for measuring
    what the all-reduce costs a step; the ranks' gradients then differ)."""
    fut = Future()
    fut.set_result(bucket.buffer())
    return fut


class PostLocalSGDState:
    """`post_localSGD_hook`'s settings and step count (PyTorch's names): `subgroup` None
    means this node's ranks (`new_subgroups()`, made on first use)."""

    __slots__ = ["process_group", "subgroup", "start_localSGD_iter",
                 "post_local_gradient_allreduce", "iter"]

    def __init__(self, process_group, subgroup, start_localSGD_iter,
                 post_local_gradient_allreduce=True):
        self.process_group = process_group
        self.subgroup = subgroup
        self.start_localSGD_iter = start_localSGD_iter
        self.post_local_gradient_allreduce = post_local_gradient_allreduce
        self.iter = 0

    def maybe_increase_iter(self, bucket):
        if bucket.is_last():
            self.iter += 1


def post_localSGD_hook(state, bucket):
    """The mean over `state.process_group` for the first `start_localSGD_iter` steps, then
    over `state.subgroup` (or this rank's own gradient, without
    `post_local_gradient_allreduce`)."""
    buf = bucket.buffer()
    if state.iter < state.start_localSGD_iter:
        state.maybe_increase_iter(bucket)
        return allreduce_hook(state.process_group, bucket)
    if not state.post_local_gradient_allreduce:
        return buf
    if state.subgroup is None:
        from .world import new_subgroups
        state.subgroup, _ = new_subgroups()
    return allreduce_hook(state.subgroup, bucket)


def _affine_qparams(low, high):
    """(scale, zero point) of 8-bit affine quantisation of [low, high] (arrays: one per
    channel), as PyTorch's MinMax observers compute them for quint8, in float32."""
    xp = array_module(low)
    low, high = xp.minimum(low, 0), xp.maximum(high, 0)
    scale = xp.maximum((high - low) / 255, np.finfo(np.float32).eps)
    zero = xp.clip(-xp.round(low / scale), 0, 255)
    return scale.astype(np.float32), zero.astype(np.float32)


def _quantized_mean(group, rows, scale, zero):
    """Quantise `rows` (one scale and zero point per row), all-gather the bytes and
    the parameters, return the mean of every rank's dequantised rows (float32)."""
    xp = array_module(rows)
    params = xp.stack([scale, zero])
    all_params = xp.zeros((group.size,) + params.shape, np.float32)
    group.allgather(all_params, params).wait()
    mine = all_params[group.rank]
    q = xp.clip(xp.round(rows / mine[0][:, None]) + mine[1][:, None], 0, 255).astype(np.uint8)
    all_q = xp.zeros((group.size,) + q.shape, np.uint8)
    group.allgather(all_q, q).wait()
    total = xp.zeros(rows.shape, np.float32)
    for (s, z), qr in zip(all_params, all_q):
        total += s[:, None] * (qr.astype(np.float32) - z[:, None])
    return total / np.float32(group.size)


def quantization_pertensor_hook(process_group, bucket):
    """Each rank's bucket in 8 bits with one scale and zero point; the mean of all ranks'
    dequantised buckets (float32)."""
    group = _group(process_group)
    x = bucket.buffer()._data.reshape(1, -1)
    scale, zero = _affine_qparams(x.min(axis=1), x.max(axis=1))
    return Tensor._make(_quantized_mean(group, x, scale, zero).reshape(-1))


def quantization_perchannel_hook(process_group, bucket, bucket_size=512):
    """As `quantization_pertensor_hook`, with a scale and zero point per row of `bucket_size`
    values (the bucket zero-padded to whole rows, by a whole row when it fills them already,
    as PyTorch pads it)."""
    group = _group(process_group)
    buf = bucket.buffer()._data
    xp = array_module(buf)
    n = buf.size
    rows = xp.zeros(n + bucket_size - n % bucket_size, buf.dtype)
    rows[:n] = buf
    rows = rows.reshape(-1, bucket_size)
    scale, zero = _affine_qparams(rows.min(axis=1), rows.max(axis=1))
    return Tensor._make(_quantized_mean(group, rows, scale, zero).reshape(-1)[:n])


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
        self.p_memory_dict = {}    # bucket index -> P (batched_powerSGD_hook)
        self.q_memory_dict = {}    # bucket index -> Q, or the list of Q matrices
        self.iter = 0
        self.total_numel_before_compression = 0
        self.total_numel_after_compression = 0

    def maybe_increase_iter(self, bucket):
        if bucket.is_last():
            self.iter += 1

    def compression_stats(self):
        """(compression rate, numbers before, numbers after) over the compressed steps."""
        after = self.total_numel_after_compression
        rate = self.total_numel_before_compression / after if after > 0 else 0
        return rate, self.total_numel_before_compression, after


def _orthonormalize(p, eps):
    xp = array_module(p)
    q, _ = xp.linalg.qr(p + eps if eps else p)
    return q


def _warming_up(state, bucket):
    """PowerSGD's first `start_powerSGD_iter` steps: the plain mean."""
    state.maybe_increase_iter(bucket)
    return allreduce_hook(state.process_group, bucket)


def powerSGD_hook(state, bucket):
    if state.iter < state.start_powerSGD_iter:
        return _warming_up(state, bucket)
    group = _group(state)
    buf_t = bucket.buffer()
    buf = buf_t._data
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
    state.total_numel_before_compression += buf.size
    state.total_numel_after_compression += sum(g.size for g in plain) + \
        sum((m.shape[0] + m.shape[1]) * rank for m, rank in matrices)
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


def batched_powerSGD_hook(state, bucket):
    """PowerSGD on the whole bucket as one square matrix (zero-padded to side x side, side =
    ceil(sqrt(numel))): one all-reduce of P and one of Q per bucket, whatever its layers."""
    if state.iter < state.start_powerSGD_iter:
        return _warming_up(state, bucket)
    group = _group(state)
    buf_t = bucket.buffer()
    buf = buf_t._data
    xp = array_module(buf)
    index, n = bucket.index(), buf.size
    side = math.ceil(math.sqrt(n))
    rank = min(side, state.matrix_approximation_rank)
    state.total_numel_before_compression += n
    state.total_numel_after_compression += 2 * side * rank
    padded = xp.zeros(side * side, buf.dtype)
    padded[:n] = buf
    if state.use_error_feedback:
        error = state.error_dict.get(index)
        if error is not None:
            padded += error
        local = padded.copy()
    m = padded.reshape(side, side)
    q = state.q_memory_dict.get(index) if state.warm_start else None
    if q is None:
        q = xp.asarray(state.rng.standard_normal((side, rank))).astype(buf.dtype)
    q = _orthonormalize(q, state.orthogonalization_epsilon)
    p = m @ q
    group.allreduce(p, ReduceOp.SUM).wait()
    p = _orthonormalize(p, state.orthogonalization_epsilon)
    q = m.T @ p
    group.allreduce(q, ReduceOp.AVG).wait()
    m[...] = p @ q.T
    if state.use_error_feedback:
        state.error_dict[index] = local - padded
    if state.warm_start:
        state.p_memory_dict[index], state.q_memory_dict[index] = p, q
    buf[...] = padded[:n]
    state.maybe_increase_iter(bucket)
    return buf_t


def _allreduce_all(group, xp, arrays, op):
    flat = xp.concatenate([a.reshape(-1) for a in arrays])
    group.allreduce(flat, op).wait()
    offset = 0
    for a in arrays:
        a[...] = flat[offset:offset + a.size].reshape(a.shape)
        offset += a.size
