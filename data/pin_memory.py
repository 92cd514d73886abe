"""Pinning of batches: the DataLoader's `pin_memory=True`.

A batch in page-locked (pinned) host memory is copied to a GPU by DMA, asynchronously when the
training loop asks for it (`x.to("cuda", non_blocking=True)`). Tensors anywhere in the batch's
structure (dicts, namedtuples, tuples, lists, and objects with a `pin_memory()` method, as in
PyTorch) are pinned; everything else passes through.
"""
import collections.abc

from ..tensor import Tensor
from .collate import rebuild


def pin_memory(data):
    """`data` with every CPU tensor copied into pinned host memory (needs a GPU)."""
    if isinstance(data, Tensor):
        return data if data.is_cuda else data.pin_memory()
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, collections.abc.Mapping):
        return rebuild(data, {k: pin_memory(v) for k, v in data.items()})
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(pin_memory(d) for d in data))
    if isinstance(data, tuple):
        return tuple(pin_memory(d) for d in data)
    if isinstance(data, collections.abc.Sequence):
        return rebuild(data, [pin_memory(d) for d in data])
    if hasattr(data, "pin_memory"):
        return data.pin_memory()
    return data
