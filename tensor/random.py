"""Seeded random numbers: `Generator`, `manual_seed`, and the random creation functions.

Numbers are made where the tensor lives: on the CPU by NumPy's PCG64, on a GPU by cuRAND's
counter-based Philox generator of that GPU (`_CudaStream`), never drawn on the host and
copied. A seed reproduces a run on the same device; the CPU and a GPU give different numbers,
as in PyTorch.
"""
import contextlib
import math
import warnings

import numpy as np

from . import backend, dtypes
from .memory_formats import check_memory_format
from .tensor import Tensor, _size, as_device


class _CudaStream:
    """Random arrays made on GPU `index` by cuRAND's Philox generator, with the subset of
    NumPy's Generator methods Phalanx draws with (random, standard_normal, integers, uniform,
    normal, exponential, standard_exponential, permutation).

    Its state is (seed, offset): every draw starts at `offset` and moves it past the numbers
    it used, so a saved state replays exactly and no draw waits for the GPU."""

    def __init__(self, index, seed):
        self.index, self.seed, self.offset = index, seed, 0
        self._curand = None        # CuPy's RandomState over a cuRAND generator, made on use
        self._seeded_with = None

    def _fill(self, kind, shape, dtype):
        """An array of `shape` from cuRAND: kind "uniform" in (0, 1], "normal" N(0, 1)."""
        cp = backend.cupy()
        from cupy_backends.cuda.libs import curand
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        n = math.prod(shape)
        with cp.cuda.Device(self.index):
            if self._curand is None:
                self._curand = cp.random.RandomState(
                    self.seed, method=curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)
                self._seeded_with = self.seed
            rs = self._curand
            if self._seeded_with != self.seed:
                rs.seed(self.seed)
                self._seeded_with = self.seed
            out = cp.empty(n + (n & 1), dtype)  # cuRAND's normals come in pairs
            if out.size:
                double = dtype == np.float64
                fn = {("uniform", False): curand.generateUniform,
                      ("uniform", True): curand.generateUniformDouble,
                      ("normal", False): curand.generateNormal,
                      ("normal", True): curand.generateNormalDouble}[kind, double]
                args = (0.0, 1.0) if kind == "normal" else ()
                with rs._lock:
                    curand.setGeneratorOffset(rs._generator, self.offset)
                    fn(rs._generator, out.data.ptr, out.size, *args)
                # skip whole Philox blocks (4 words), whatever unit cuRAND counts the offset in
                words = out.size * (2 if double else 1)
                self.offset += (words + 3) // 4 * 4
            return out[:n].reshape(shape)

    def random(self, size=(), dtype=np.float64):
        u = self._fill("uniform", _shape(size), dtype)
        return backend.cupy().where(u == 1, 0, u).astype(u.dtype, copy=False)  # [0, 1)

    def standard_normal(self, size=(), dtype=np.float64):
        return self._fill("normal", _shape(size), dtype)

    def uniform(self, low=0.0, high=1.0, size=()):
        return low + (high - low) * self.random(size)

    def normal(self, loc=0.0, scale=1.0, size=()):
        return loc + scale * self.standard_normal(size)

    def standard_exponential(self, size=()):
        return -backend.cupy().log1p(-self.random(size))

    def exponential(self, scale=1.0, size=()):
        return scale * self.standard_exponential(size)

    def integers(self, low, high, size=()):
        # float64 uniforms carry 53 bits: unbiased enough for any range a tensor indexes
        span = high - low
        k = backend.cupy().floor(self.random(size) * span).astype(np.int64)
        return backend.cupy().minimum(k, span - 1) + low

    def permutation(self, n):
        return backend.cupy().argsort(self.random((int(n),)))


def _shape(size):
    return (int(size),) if isinstance(size, (int, np.integer)) else tuple(size)


class Generator:
    """A reproducible random stream: PCG64 on the CPU, Philox on a GPU. `get_state()` is a
    uint8 tensor, as in PyTorch."""

    def __init__(self, device="cpu"):
        self.device = backend.Device(device)
        self.manual_seed(67280421310721)

    def manual_seed(self, seed):
        self._seed = int(seed) & (2 ** 64 - 1)
        if self.device.type == "cuda":
            self._rng = _CudaStream(self.device.index, self._seed)
        else:
            self._rng = np.random.Generator(np.random.PCG64(self._seed))
        return self

    def seed(self):
        s = int.from_bytes(np.random.SeedSequence().generate_state(2, np.uint32).tobytes(),
                           "little")
        self.manual_seed(s)
        return s

    def initial_seed(self):
        return self._seed

    def get_state(self):
        if self.device.type == "cuda":  # (seed, offset), 16 bytes as PyTorch's CUDA state
            raw = self._seed.to_bytes(8, "little") + self._rng.offset.to_bytes(8, "little")
            return Tensor._make(np.frombuffer(raw, np.uint8).copy())
        st = self._rng.bit_generator.state
        raw = (st["state"]["state"].to_bytes(16, "little") +
               st["state"]["inc"].to_bytes(16, "little") +
               int(st["has_uint32"]).to_bytes(4, "little") +
               int(st["uinteger"]).to_bytes(4, "little") +
               self._seed.to_bytes(8, "little"))
        return Tensor._make(np.frombuffer(raw, np.uint8).copy())

    def set_state(self, state):
        raw = bytes(np.asarray(backend.to_device(state._data if isinstance(state, Tensor)
                                                 else state, "cpu"), np.uint8))
        if self.device.type == "cuda":
            if len(raw) != 16:
                raise ValueError(f"invalid CUDA generator state: expected 16 bytes (seed, "
                                 f"offset), got {len(raw)}")
            self.manual_seed(int.from_bytes(raw[:8], "little"))
            self._rng.offset = int.from_bytes(raw[8:], "little")
            return self
        if len(raw) != 48:
            raise ValueError(f"invalid generator state: expected 48 bytes, got {len(raw)}")
        bg = np.random.PCG64()
        bg.state = {"bit_generator": "PCG64",
                    "state": {"state": int.from_bytes(raw[0:16], "little"),
                              "inc": int.from_bytes(raw[16:32], "little")},
                    "has_uint32": int.from_bytes(raw[32:36], "little"),
                    "uinteger": int.from_bytes(raw[36:40], "little")}
        self._rng = np.random.Generator(bg)
        self._seed = int.from_bytes(raw[40:48], "little")
        return self

    @property
    def numpy(self):
        """The underlying numpy Generator (for data pipelines that draw on the host)."""
        if self.device.type == "cuda":
            raise RuntimeError(f"a generator on {self.device} draws on its GPU and has no "
                               f"NumPy stream; use a CPU generator (phalanx.Generator()) for "
                               f"host-side data pipelines")
        return self._rng


default_generator = Generator()

# One generator per GPU, made on first use and seeded like the default one, so that seeding
# a GPU (phalanx.cuda.manual_seed) leaves the CPU stream alone, as in PyTorch.
_cuda_generators = {}


def cuda_generator(index):
    """The default generator of GPU `index` (what tensors made there draw from)."""
    g = _cuda_generators.get(index)
    if g is None:
        g = _cuda_generators[index] = Generator(backend.Device("cuda", index))
        g.manual_seed(default_generator.initial_seed())
    return g


def manual_seed(seed):
    """Seed the default generator and every GPU's (and return the default), like
    torch.manual_seed."""
    for g in _cuda_generators.values():
        g.manual_seed(seed)
    return default_generator.manual_seed(seed)


def seed():
    return default_generator.seed()


def initial_seed():
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(state):
    default_generator.set_state(state)


@contextlib.contextmanager
def fork_rng(devices=None, enabled=True, _caller="fork_rng", _devices_kw="devices",
             device_type=None):
    """Run the block with the CPU generator's state (and that of the GPUs in `devices`;
    default: every visible one) restored afterwards, as `torch.random.fork_rng`."""
    if device_type not in (None, "cuda"):
        raise RuntimeError(f"{_caller}: phalanx has no device module {device_type!r}; "
                           f"device_type is 'cuda' (or None)")
    if not enabled:
        yield
        return
    from .. import cuda
    if devices is None:
        count = cuda.device_count() if cuda.is_available() else 0
        if count > 1:
            warnings.warn(f"CUDA reports {count} available devices and {_caller} was used "
                          f"without saying which ones, so every one's generator is saved and "
                          f"restored; pass {_devices_kw}=[...] with the devices in use (or "
                          f"{_devices_kw}=[] on the CPU only)", stacklevel=3)
        devices = range(count)
    devices = list(devices)
    cpu_state = get_rng_state()
    device_states = [cuda.get_rng_state(d) for d in devices]
    try:
        yield
    finally:
        set_rng_state(cpu_state)
        for d, state in zip(devices, device_states):
            cuda.set_rng_state(state, d)


def thread_safe_generator():
    """The generator of the DataLoader thread worker running this code, or None (use the
    global one): Phalanx's DataLoader workers are processes, each with its own generators."""
    return None


def _gen(generator, device=None):
    """The stream to draw from, on `device` (default: the CPU): `generator`'s, else that
    device's default one. A NumPy Generator on the CPU, a `_CudaStream` on a GPU; both make
    arrays where they live."""
    if device is not None and not (isinstance(device, str) and device == "cpu"):
        device = as_device(device)
    else:
        device = backend.CPU
    if generator is not None:
        if generator.device.type != device.type:
            raise RuntimeError(f"Expected a '{device.type}' device type for generator but "
                               f"found '{generator.device.type}' (drawing for a tensor on "
                               f"{device}); pass a phalanx.Generator(device='{device}')")
        return generator._rng
    if device.type == "cuda":
        return cuda_generator(device.index)._rng
    if device.type == "meta":
        from .meta import MetaDraws
        return MetaDraws()
    return default_generator._rng


def _draw_dtype(rng, dtype):
    """The float precision to draw in: float32 on a GPU when the result is float32 or less
    (half the work), float64 otherwise (and always on the CPU, whose streams stay as seeded
    runs expect them)."""
    np_dtype = dtypes.to_numpy_dtype(dtype) if dtype is not None else \
        dtypes.get_default_dtype().np
    if isinstance(rng, _CudaStream) and np_dtype.kind == "f" and np_dtype.itemsize <= 4:
        return np.float32
    return np.float64


def _finish(arr, dtype, device, requires_grad, default=None):
    np_dtype = dtypes.to_numpy_dtype(dtype) if dtype is not None else \
        (default or dtypes.get_default_dtype().np)
    if isinstance(arr, np.generic):
        arr = np.asarray(arr)
    arr = arr.astype(np_dtype, copy=False)
    if device is not None:  # the stream drew on `device` already: this moves nothing
        arr = backend.to_device(arr, as_device(device))
    return Tensor._make(arr, requires_grad)


def rand(*shape, size=None, generator=None, dtype=None, device=None, requires_grad=False):
    rng = _gen(generator, device)
    size = _size(shape, size)
    return _finish(rng.random(size, dtype=_draw_dtype(rng, dtype)), dtype, device,
                   requires_grad)


def randn(*shape, size=None, generator=None, dtype=None, device=None, requires_grad=False):
    rng = _gen(generator, device)
    size = _size(shape, size)
    if dtype is not None and dtypes.to_numpy_dtype(dtype).kind == "c":
        # complex normal: real and imaginary parts each of variance 1/2 (as PyTorch)
        parts = rng.standard_normal(size + (2,), dtype=np.float64) * np.sqrt(0.5)
        return _finish(parts[..., 0] + 1j * parts[..., 1], dtype, device, requires_grad)
    return _finish(rng.standard_normal(size, dtype=_draw_dtype(rng, dtype)), dtype,
                   device, requires_grad)


def randint(*args, low=None, high=None, size=None, generator=None, dtype=None, device=None,
            requires_grad=False):
    """Integers uniform in [low, high): `randint(high, size)`, `randint(low, high, size)`, or
    any of these given by keyword; `size` is a tuple (or list) of ints, as in PyTorch."""
    args = list(args)
    if size is None and args and isinstance(args[-1], (tuple, list)):
        size = args.pop()
    if len(args) > 2 or (len(args) == 2 and (low is not None or high is not None)) or \
            (len(args) == 1 and low is not None and high is not None):
        raise TypeError(f"randint() received an invalid combination of arguments: expected "
                        f"randint(high, size) or randint(low, high, size), got "
                        f"{len(args)} positional bounds with low={low!r}, high={high!r}")
    if len(args) == 2:
        low, high = args
    elif len(args) == 1:
        if high is None:
            high = args[0]
        else:
            low = args[0]
    if high is None:
        raise TypeError("randint() missing required argument 'high'")
    if size is None:
        raise TypeError("randint() missing required argument 'size' (a tuple, e.g. (3,))")
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"randint(): argument 'size' must be tuple of ints, not "
                        f"{type(size).__name__}")
    low, high = _int_bound(0 if low is None else low, "low"), _int_bound(high, "high")
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got "
                           f"from={low} >= to={high}")
    arr = _gen(generator, device).integers(low, high, _size((size,)))
    return _finish(arr, dtype, device, requires_grad, default=np.dtype(np.int64))


def _int_bound(v, name):
    if isinstance(v, Tensor):
        v = v.item()
    if isinstance(v, (bool, float)) or not hasattr(v, "__index__"):
        raise TypeError(f"randint(): argument '{name}' must be int, not {type(v).__name__}")
    return v.__index__()


def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False):
    return _finish(_gen(generator, device).permutation(n), dtype, device, requires_grad,
                   default=np.dtype(np.int64))


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None, device=None,
           requires_grad=False):
    """normal(mean, std, size) with float mean/std, or elementwise with tensor mean/std."""
    m = mean._data if isinstance(mean, Tensor) else mean
    s = std._data if isinstance(std, Tensor) else std
    ref = mean if isinstance(mean, Tensor) else std if isinstance(std, Tensor) else None
    if ref is not None:
        shape = np.broadcast_shapes(getattr(m, "shape", ()), getattr(s, "shape", ()))
        rng = _gen(generator, ref.device)
        z = rng.standard_normal(shape, dtype=_draw_dtype(rng, ref.dtype))
        return Tensor._make(m + s * z.astype(ref._data.dtype, copy=False))
    if size is None:
        raise TypeError("normal() with float mean and std needs size=")
    return _finish(_gen(generator, device).normal(m, s, _size((size,))), dtype, device,
                   requires_grad)


def bernoulli(input, p=None, *, generator=None):
    """Draw 0/1 with probability `input` (elementwise) or `p`."""
    prob = input._data if p is None else p
    rng = _gen(generator, input.device)
    u = rng.random(tuple(input.shape), dtype=_draw_dtype(rng, input.dtype))
    return Tensor._make((u < prob).astype(input._data.dtype))


def multinomial(input, num_samples, replacement=False, *, generator=None):
    """Indices drawn from the categories of each row of `input` (1-D or 2-D non-negative
    weights, not necessarily normalised), with or without replacement; int64."""
    if input.ndim not in (1, 2):
        raise RuntimeError(f"multinomial: prob_dist must be 1 or 2 dim, got shape "
                           f"{list(input.shape)}")
    if not input.is_floating_point():
        raise RuntimeError(f"multinomial only supports floating-point dtypes for input, got "
                           f"{input.dtype}")
    num_samples = int(num_samples)
    if num_samples <= 0:
        raise RuntimeError(f"multinomial: cannot sample num_samples <= 0 samples (got "
                           f"{num_samples})")
    xp = backend.array_module(input._data)
    w = input._data.astype(np.float64)
    rows = w.reshape(-1, w.shape[-1])
    n_cat = rows.shape[1]
    if not replacement and num_samples > n_cat:
        raise RuntimeError(f"multinomial: cannot sample n_sample ({num_samples}) > "
                           f"prob_dist.size(-1) ({n_cat}) samples without replacement")
    totals = rows.sum(axis=1)
    if backend.can_check(rows):  # on a GPU in debug mode only: reading values waits for it
        rows_h, totals_h = backend.to_host(rows), backend.to_host(totals)
        if not np.isfinite(rows_h).all() or (rows_h < 0).any():
            raise RuntimeError("multinomial: probability tensor contains either `inf`, `nan` "
                               "or element < 0")
        if (totals_h <= 0).any():
            raise RuntimeError("multinomial: invalid multinomial distribution (sum of "
                               "probabilities <= 0) in a row of input")
    rng = _gen(generator, input.device)
    if replacement:
        cdf = xp.cumsum(rows / totals[:, None], axis=1)
        u = rng.random((rows.shape[0], num_samples))
        if xp is np and cdf.size * num_samples > 1 << 16:   # large: a binary search per row
            out = np.stack([np.searchsorted(c, r, side="right") for c, r in zip(cdf, u)])
        else:  # the count of cdf entries <= u, for all rows at once
            out = (cdf[:, None, :] <= u[:, :, None]).sum(axis=2)
        out = xp.minimum(out, n_cat - 1)  # u just below 1 against a cdf rounded below 1
    else:
        # the k smallest of Exp(1) / w are a draw without replacement; zero weights come
        # last, once the others have run out (as in PyTorch)
        with np.errstate(divide="ignore"):
            keys = rng.standard_exponential(rows.shape) / rows
        out = (np.argsort(keys, axis=1, kind="stable") if xp is np else
               xp.argsort(keys, axis=1))[:, :num_samples]
    out = out.reshape(w.shape[:-1] + (num_samples,)).astype(np.int64)
    return Tensor._make(out)


def _like(fn):
    def make(input, *, generator=None, dtype=None, device=None, requires_grad=False,
             memory_format=None):
        check_memory_format(memory_format, make.__name__)
        return fn(*input.shape, generator=generator, dtype=dtype or input.dtype,
                  device=input.device if device is None else device, requires_grad=requires_grad)
    make.__name__ = fn.__name__ + "_like"
    return make


rand_like = _like(rand)
randn_like = _like(randn)


def randint_like(input, low=0, high=None, *, generator=None, dtype=None, device=None,
                 requires_grad=False, memory_format=None):
    """randint_like(input, high) or randint_like(input, low, high)."""
    check_memory_format(memory_format, "randint_like")
    if requires_grad:
        raise RuntimeError("Only Tensors of floating point and complex dtype can require "
                           "gradients (randint_like makes integers)")
    if high is None:
        low, high = 0, low
    return randint(low, high, tuple(input.shape), generator=generator,
                   dtype=dtype or input.dtype, device=input.device if device is None else device)


# ---- in-place fills (no graph: used by nn.init) -------------------------------------------
def _fill(t, arr):
    if isinstance(arr, np.generic):
        arr = np.asarray(arr)
    if t.device.type == "meta":       # no data to write: the version still moves
        t._version[0] += 1
        return t
    t._data[...] = backend.to_device(arr.astype(t._data.dtype, copy=False), t.device)
    t._version[0] += 1
    return t


def uniform_(t, a=0.0, b=1.0, generator=None):
    return _fill(t, _gen(generator, t.device).uniform(a, b, t.shape))


def normal_(t, mean=0.0, std=1.0, generator=None):
    return _fill(t, _gen(generator, t.device).normal(mean, std, t.shape))


def bernoulli_(t, p=0.5, generator=None):
    return _fill(t, _gen(generator, t.device).random(t.shape) < p)


def random_(t, low=0, high=None, generator=None):
    if high is None:
        low, high = 0, low if low else 2 ** 24
    return _fill(t, _gen(generator, t.device).integers(low, high, t.shape))


def exponential_(t, lambd=1.0, generator=None):
    return _fill(t, _gen(generator, t.device).exponential(1.0 / lambd, t.shape))
