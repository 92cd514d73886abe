"""`phalanx.multiprocessing`: Python's `multiprocessing` under `torch.multiprocessing`'s name,
plus `spawn` / `start_processes` for one process per rank.

    import phalanx.multiprocessing as mp
    mp.spawn(train, args=(world_size,), nprocs=world_size)   # train(rank, world_size)

Everything of the standard library's module is re-exported (`Process`, `Queue`,
`get_context`, `set_start_method`, `cpu_count`, ...). A tensor moved into shared memory
(`Tensor.share_memory_()`, `Module.share_memory()`: Hogwild training) crosses process
boundaries as the same memory (see tensor/shared_memory.py); any other tensor is copied, where
PyTorch moves every tensor sent through a Queue into shared memory.
"""
import multiprocessing as _std
from multiprocessing import *  # noqa: F401,F403

from .spawn import (ProcessContext, ProcessException, ProcessExitedException,  # noqa: F401
                    ProcessRaisedException, spawn, start_processes)

SpawnContext = ProcessContext   # PyTorch's older name
_STRATEGIES = ("file_descriptor", "file_system")
_strategy = "file_descriptor"

__all__ = list(_std.__all__) + [
    "spawn", "start_processes", "ProcessContext", "SpawnContext", "ProcessException",
    "ProcessRaisedException", "ProcessExitedException", "get_all_sharing_strategies",
    "get_sharing_strategy", "set_sharing_strategy"]


def get_all_sharing_strategies():
    return set(_STRATEGIES)


def get_sharing_strategy():
    return _strategy


def set_sharing_strategy(new_strategy):
    """Accepts PyTorch's strategies. Both only decide how PyTorch passes tensor memory
    between processes (file descriptors or named files, with their different OS limits);
    Phalanx's shared tensors always travel as named files in /dev/shm, which the process that
    shared them removes, so either choice behaves the same."""
    global _strategy
    if new_strategy not in _STRATEGIES:
        raise ValueError(f"unknown sharing strategy {new_strategy!r}; choose one of "
                         f"{sorted(_STRATEGIES)}")
    _strategy = new_strategy
