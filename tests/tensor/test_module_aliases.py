"""torch.linalg, torch.special and torch.random are modules: imports of them port unchanged;
`random.fork_rng` restores the generators' state as PyTorch's does."""
import importlib

import torch

import phalanx as px


def test_submodules_import_as_in_pytorch():
    for name, attr in (("linalg", "norm"), ("special", "erf"), ("random", "manual_seed")):
        module = importlib.import_module(f"phalanx.{name}")
        assert module is getattr(px, name) and callable(getattr(module, attr))
    from phalanx.linalg import norm  # noqa: F401
    from phalanx.random import fork_rng, manual_seed  # noqa: F401


def test_fork_rng_restores_the_generator_state():
    for lib in (px, torch):
        lib.manual_seed(3)
        with lib.random.fork_rng(devices=[]):
            inside = lib.rand(3).tolist()
            lib.rand(5)
        after = lib.rand(3).tolist()
        assert inside == after
        with lib.random.fork_rng(enabled=False):
            lib.rand(1)
        assert lib.rand(3).tolist() != after
    assert px.random.thread_safe_generator() is None is torch.random.thread_safe_generator()
