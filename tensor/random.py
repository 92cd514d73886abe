"""Seeded random numbers: `Generator`, `manual_seed`, and the random creation functions.

Numbers are drawn on the host from a PCG64 stream and moved to the tensor's device, so a seed
gives the same values on every device and platform.
"""
import numpy as np

from . import backend, dtypes
from .tensor import Tensor, _size, as_device


class Generator:
    """A reproducible random stream (PCG64). `get_state()` is a uint8 tensor, as in PyTorch."""

    def __init__(self, device="cpu"):
        self.device = backend.Device(device)
        self.manual_seed(67280421310721)

    def manual_seed(self, seed):
        self._seed = int(seed) & (2 ** 64 - 1)
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


def _gen(generator, device=None):
    """The numpy stream to draw from: `generator`'s, else the default one of `device`."""
    if generator is not None:
        return generator._rng
    if device is not None and not (isinstance(device, str) and device == "cpu"):
        device = as_device(device)
        if device.type == "cuda":
            return cuda_generator(device.index)._rng
    return default_generator._rng


def _finish(arr, dtype, device, requires_grad, default=None):
    np_dtype = dtypes.to_numpy_dtype(dtype) if dtype is not None else \
        (default or dtypes.get_default_dtype().np)
    arr = np.asarray(arr).astype(np_dtype, copy=False)
    if device is not None:
        arr = backend.to_device(arr, as_device(device))
    return Tensor._make(arr, requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    return _finish(_gen(generator, device).random(_size(size)), dtype, device, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    return _finish(_gen(generator, device).standard_normal(_size(size)), dtype,
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
        shape = np.broadcast_shapes(np.shape(backend.to_device(m, "cpu")),
                                    np.shape(backend.to_device(s, "cpu")))
        z = _gen(generator, ref.device).standard_normal(shape)
        z = backend.to_device(z.astype(ref._data.dtype), ref.device)
        return Tensor._make(m + s * z)
    if size is None:
        raise TypeError("normal() with float mean and std needs size=")
    return _finish(_gen(generator, device).normal(m, s, _size((size,))), dtype, device,
                   requires_grad)


def bernoulli(input, p=None, *, generator=None):
    """Draw 0/1 with probability `input` (elementwise) or `p`."""
    prob = backend.to_device(input._data, "cpu") if p is None else p
    u = _gen(generator, input.device).random(input.shape)
    out = (u < prob).astype(input._data.dtype)
    return Tensor._make(backend.to_device(out, input.device))


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
    w = np.asarray(backend.to_device(input._data, "cpu"), np.float64)
    rows = w.reshape(-1, w.shape[-1])
    n_cat = rows.shape[1]
    if not replacement and num_samples > n_cat:
        raise RuntimeError(f"multinomial: cannot sample n_sample ({num_samples}) > "
                           f"prob_dist.size(-1) ({n_cat}) samples without replacement")
    if not np.isfinite(rows).all() or (rows < 0).any():
        raise RuntimeError("multinomial: probability tensor contains either `inf`, `nan` or "
                           "element < 0")
    totals = rows.sum(axis=1)
    if (totals <= 0).any():
        raise RuntimeError("multinomial: invalid multinomial distribution (sum of "
                           "probabilities <= 0) in a row of input")
    rng = _gen(generator, input.device)
    if replacement:
        cdf = np.cumsum(rows / totals[:, None], axis=1)
        u = rng.random((rows.shape[0], num_samples))
        out = np.stack([np.searchsorted(c, r, side="right") for c, r in zip(cdf, u)])
        out = np.minimum(out, n_cat - 1)  # u just below 1 against a cdf rounded below 1
    else:
        # the k smallest of Exp(1) / w are a draw without replacement; zero weights come
        # last, once the others have run out (as in PyTorch)
        with np.errstate(divide="ignore"):
            keys = rng.standard_exponential(rows.shape) / rows
        out = np.argsort(keys, axis=1, kind="stable")[:, :num_samples]
    out = out.reshape(w.shape[:-1] + (num_samples,)).astype(np.int64)
    return Tensor._make(backend.to_device(out, input.device))


def _like(fn):
    def make(input, *, generator=None, dtype=None, device=None, requires_grad=False):
        return fn(*input.shape, generator=generator, dtype=dtype or input.dtype,
                  device=input.device if device is None else device, requires_grad=requires_grad)
    make.__name__ = fn.__name__ + "_like"
    return make


rand_like = _like(rand)
randn_like = _like(randn)


def randint_like(input, low=0, high=None, *, generator=None, dtype=None, device=None):
    """randint_like(input, high) or randint_like(input, low, high)."""
    if high is None:
        low, high = 0, low
    return randint(low, high, tuple(input.shape), generator=generator,
                   dtype=dtype or input.dtype, device=input.device if device is None else device)


# ---- in-place fills (no graph: used by nn.init) -------------------------------------------
def _fill(t, arr):
    t._data[...] = backend.to_device(np.asarray(arr, dtype=t._data.dtype), t.device)
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
