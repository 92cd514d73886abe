"""Seeded random numbers: `Generator`, `manual_seed`, and the random creation functions.

Numbers are drawn on the host from a PCG64 stream and moved to the tensor's device, so a seed
gives the same values on every device and platform.
"""
import numpy as np

from . import backend, dtypes
from .tensor import Tensor, _size


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


def manual_seed(seed):
    """Seed the default generator (and return it), like torch.manual_seed."""
    return default_generator.manual_seed(seed)


def seed():
    return default_generator.seed()


def initial_seed():
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(state):
    default_generator.set_state(state)


def _gen(generator):
    return (generator or default_generator)._rng


def _finish(arr, dtype, device, requires_grad, default=None):
    np_dtype = dtypes.to_numpy_dtype(dtype) if dtype is not None else \
        (default or dtypes.get_default_dtype().np)
    arr = np.asarray(arr).astype(np_dtype, copy=False)
    if device is not None:
        arr = backend.to_device(arr, device)
    return Tensor._make(arr, requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    return _finish(_gen(generator).random(_size(size)), dtype, device, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    return _finish(_gen(generator).standard_normal(_size(size)), dtype, device, requires_grad)


def randint(low=0, high=None, size=None, *, generator=None, dtype=None, device=None,
            requires_grad=False):
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing required argument 'size' (e.g. size=(3,))")
    arr = _gen(generator).integers(low, high, _size((size,)))
    return _finish(arr, dtype, device, requires_grad, default=np.dtype(np.int64))


def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False):
    return _finish(_gen(generator).permutation(n), dtype, device, requires_grad,
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
        z = _gen(generator).standard_normal(shape)
        z = backend.to_device(z.astype(ref._data.dtype), ref.device)
        return Tensor._make(m + s * z)
    if size is None:
        raise TypeError("normal() with float mean and std needs size=")
    return _finish(_gen(generator).normal(m, s, _size((size,))), dtype, device, requires_grad)


def bernoulli(input, p=None, *, generator=None):
    """Draw 0/1 with probability `input` (elementwise) or `p`."""
    prob = backend.to_device(input._data, "cpu") if p is None else p
    u = _gen(generator).random(input.shape)
    out = (u < prob).astype(input._data.dtype)
    return Tensor._make(backend.to_device(out, input.device))


def _like(fn):
    def make(input, *, generator=None, dtype=None, device=None, requires_grad=False):
        return fn(*input.shape, generator=generator, dtype=dtype or input.dtype,
                  device=device or input.device, requires_grad=requires_grad)
    make.__name__ = fn.__name__ + "_like"
    return make


rand_like = _like(rand)
randn_like = _like(randn)


def randint_like(input, low=0, high=None, *, generator=None, dtype=None, device=None):
    return randint(low, high, input.shape, generator=generator, dtype=dtype or input.dtype,
                   device=device or input.device)


# ---- in-place fills (no graph: used by nn.init) -------------------------------------------
def _fill(t, arr):
    t._data[...] = backend.to_device(np.asarray(arr, dtype=t._data.dtype), t.device)
    t._version[0] += 1
    return t


def uniform_(t, a=0.0, b=1.0, generator=None):
    return _fill(t, _gen(generator).uniform(a, b, t.shape))


def normal_(t, mean=0.0, std=1.0, generator=None):
    return _fill(t, _gen(generator).normal(mean, std, t.shape))


def bernoulli_(t, p=0.5, generator=None):
    return _fill(t, _gen(generator).random(t.shape) < p)


def random_(t, low=0, high=None, generator=None):
    if high is None:
        low, high = 0, low if low else 2 ** 24
    return _fill(t, _gen(generator).integers(low, high, t.shape))


def exponential_(t, lambd=1.0, generator=None):
    return _fill(t, _gen(generator).exponential(1.0 / lambd, t.shape))
