"""`default_collate`: a list of samples -> one batch of stacked tensors, keeping the structure
(dicts, tuples, namedtuples, lists) of a sample."""
import collections.abc
import copy
import numbers

import numpy as np

from ..tensor import as_tensor, stack, tensor, bool as _bool, int64, float64
from ..tensor import Tensor


def _is_namedtuple(x):
    return isinstance(x, tuple) and hasattr(x, "_fields")


def rebuild(like, fields):
    """A container of `like`'s type holding `fields` (a dict for a mapping, a list for a
    sequence). A mutable container is copied and updated, as in PyTorch, so that its type and
    extra state (a defaultdict's factory) survive; one that can't be rebuilt comes back as a
    plain dict or list."""
    try:
        if isinstance(like, collections.abc.MutableMapping):
            clone = copy.copy(like)
            clone.update(fields)
            return clone
        if isinstance(like, collections.abc.MutableSequence):
            clone = copy.copy(like)
            for i, field in enumerate(fields):
                clone[i] = field
            return clone
        return type(like)(fields)
    except TypeError:
        return fields


def _stack(batch):
    shapes = {tuple(t.shape) for t in batch}
    if len(shapes) > 1:
        raise RuntimeError(f"default_collate: stack expects each tensor to be equal size, but "
                           f"got shapes {sorted(shapes)} in one batch; pad the samples or pass "
                           f"a collate_fn")
    return stack(batch)


def default_collate(batch):
    """Stack a list of samples. Tensors and NumPy arrays are stacked along a new first
    dimension; Python floats become a float64 tensor, ints an int64 tensor (bools a bool tensor);
    strings are returned as given; dicts, namedtuples, tuples and lists are collated field by
    field."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack(batch)
    if isinstance(elem, (str, bytes)):  # np.str_ and np.bytes_ too, before np.generic
        return batch
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind in "OSUV":
            raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, "
                            f"numbers, dicts or lists; found a numpy array of dtype "
                            f"{elem.dtype}")
        return _stack([as_tensor(b) for b in batch])
    if isinstance(elem, np.generic):
        return as_tensor(np.array(batch))
    if isinstance(elem, bool):
        return tensor(batch, dtype=_bool)
    if isinstance(elem, numbers.Integral):
        return tensor(batch, dtype=int64)
    if isinstance(elem, numbers.Real):
        return tensor(batch, dtype=float64)
    if isinstance(elem, collections.abc.Mapping):
        return rebuild(elem, {key: default_collate([d[key] for d in batch]) for key in elem})
    if _is_namedtuple(elem):
        return type(elem)(*(default_collate(s) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(s) != size for s in batch):
            raise RuntimeError(f"default_collate: each element in the batch should be of equal "
                               f"size; got sizes {[len(s) for s in batch]}")
        fields = [default_collate(s) for s in zip(*batch)]
        if isinstance(elem, tuple):
            return fields  # PyTorch returns a list for tuples
        return rebuild(elem, fields)
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, "
                    f"dicts or lists; found {type(elem).__name__}. Pass a collate_fn that "
                    f"handles it")


def default_convert(data):
    """Used when automatic batching is off (`batch_size=None`): NumPy arrays become tensors,
    containers are converted element by element, everything else is returned as is."""
    if isinstance(data, (str, bytes)):  # np.str_ and np.bytes_ too, before np.generic
        return data
    if isinstance(data, np.ndarray) and data.dtype.kind not in "OSUV":
        return as_tensor(data)
    if isinstance(data, np.generic):
        return as_tensor(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        return rebuild(data, {k: default_convert(v) for k, v in data.items()})
    if _is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence):
        return rebuild(data, [default_convert(d) for d in data])
    return data
