"""Seeding of the CUDA generators (one per device, made by `phalanx.tensor.random`).

Without a usable GPU `manual_seed`, `manual_seed_all`, `seed` and `seed_all` are silently
ignored, as in PyTorch, so scripts seed unconditionally; reading a GPU's state needs a GPU.
"""
from ..tensor import random as _random
from ._state import device_count, device_index, is_available


def manual_seed(seed):
    """Seed the current GPU's generator."""
    if is_available():
        _random.cuda_generator(device_index(None)).manual_seed(seed)


def manual_seed_all(seed):
    """Seed every GPU's generator."""
    if is_available():
        for idx in range(device_count()):
            _random.cuda_generator(idx).manual_seed(seed)


def seed():
    """Seed the current GPU's generator with a random number."""
    if is_available():
        _random.cuda_generator(device_index(None)).seed()


def seed_all():
    if is_available():
        s = _random.cuda_generator(0).seed()
        for idx in range(1, device_count()):
            _random.cuda_generator(idx).manual_seed(s)


def initial_seed():
    return _random.cuda_generator(device_index(None, "phalanx.cuda.initial_seed()")) \
        .initial_seed()


def get_rng_state(device="cuda"):
    return _random.cuda_generator(device_index(device, "phalanx.cuda.get_rng_state()")) \
        .get_state()


def set_rng_state(new_state, device="cuda"):
    _random.cuda_generator(device_index(device, "phalanx.cuda.set_rng_state()")) \
        .set_state(new_state)


def get_rng_state_all():
    return [get_rng_state(i) for i in range(device_count())]


def set_rng_state_all(new_states):
    for i, state in enumerate(new_states):
        set_rng_state(state, i)

