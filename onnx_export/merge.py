"""Merging the traces of one model run on differently sized inputs into one symbolic trace.

A trace records sizes as plain numbers (`x.reshape(x.shape[0], -1)` records the batch size).
To learn which numbers follow a dynamic axis, the exporter traces the model once on the given
inputs and once more per dynamic axis, with that axis one longer (and the values moved, so that
a constant that secretly depends on the input shows up too). Per argument of every op:

- equal in every trace: a constant;
- a whole number that changes: a `Dim`, `coef * product of the sizes of the axes that changed
  it`, checked against every trace (the exporter computes it in the graph from the inputs'
  shapes);
- anything else that changes: an error that names the op and the argument.
"""
import math
from typing import NamedTuple

import numpy as np

from .errors import OnnxExporterError
from .tracer import Ref


class Dim(NamedTuple):
    """A size that follows dynamic input axes: `coef` times the product of their sizes."""
    coef: int
    axes: tuple   # names of the dynamic axes (see `Axes`)


class Varying(NamedTuple):
    """An array argument whose value differs between the traces (one entry per trace)."""
    values: tuple


class Axes:
    """The dynamic axes: each name, where it lies among the inputs, and how each trace sizes it.

    Trace 0 has the given sizes; trace k (k >= 1) lengthens axis k-1 by one. When there is no
    dynamic axis, trace 1 only moves the values.
    """

    def __init__(self, places, sizes):
        self.names = list(places)        # in order of first appearance
        self.places = places             # name -> [(input index, axis), ...]
        self.sizes = sizes               # name -> size in trace 0
        self.n_traces = 1 + max(1, len(self.names))

    def size_in(self, name, trace):
        base = self.sizes[name]
        return base + 1 if trace >= 1 and self.names[trace - 1] == name else base

    def trace_of(self, name):
        return 1 + self.names.index(name)


class MergeError(Exception):
    """Why one argument could not be merged (the caller adds which op and argument)."""


def fit(values, axes):
    """One number per trace -> the number, or the `Dim` that gives it in every trace."""
    v0 = values[0]
    if all(v == v0 for v in values):
        return v0
    changed = tuple(n for n in axes.names if values[axes.trace_of(n)] != v0)
    if not changed:
        raise MergeError(f"the number {v0} changes with the input's values ({list(values)})")
    den = math.prod(axes.sizes[n] for n in changed)
    coef = v0 // den if den else None
    dim = Dim(coef, changed)
    if coef is None or coef * den != v0 or \
            any(values[t] != evaluate(dim, axes, t) for t in range(len(values))):
        sizes = ", ".join(f"{n}: {axes.sizes[n]} -> {axes.sizes[n] + 1}" for n in changed)
        raise MergeError(f"the number {v0} follows the dynamic axes ({sizes}; values "
                         f"{list(values)} across the traces) but is not a multiple of their "
                         f"sizes, which is all the exporter can compute")
    return dim


def evaluate(dim, axes, trace):
    return dim.coef * math.prod(axes.size_in(n, trace) for n in dim.axes)


def merge(items, axes):
    """One argument as recorded in each trace -> the merged argument (raises MergeError)."""
    first = items[0]
    if isinstance(first, Ref):
        if any(not isinstance(i, Ref) or i.key != first.key for i in items):
            raise MergeError("a tensor argument comes from different places in different traces")
        return first
    if isinstance(first, (bool, np.bool_)) or first is None or isinstance(first, str):
        return _same(items)
    if isinstance(first, (int, np.integer)):
        if any(isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer))
               for i in items):
            raise MergeError(f"an argument is {items!r} in the traces")
        return fit([int(i) for i in items], axes)
    if isinstance(first, (tuple, list)):
        if any(type(i) is not type(first) or len(i) != len(first) for i in items):
            raise MergeError(f"a sequence argument changes length across the traces: "
                             f"{[_brief(i) for i in items]}")
        parts = [merge([i[k] for i in items], axes) for k in range(len(first))]
        if hasattr(type(first), "_fields"):
            return type(first)(*parts)
        return list(parts) if isinstance(first, list) else tuple(parts)
    if isinstance(first, dict):
        if any(set(i) != set(first) for i in items):
            raise MergeError("a dict argument changes keys across the traces")
        return {k: merge([i[k] for i in items], axes) for k in first}
    if isinstance(first, slice):
        return slice(*(merge([getattr(i, a) for i in items], axes)
                       for a in ("start", "stop", "step")))
    if isinstance(first, np.ndarray):
        if all(i.shape == first.shape and np.array_equal(i, first, equal_nan=True)
               for i in items):
            return first
        return Varying(tuple(items))
    return _same(items)


def _same(items):
    first = items[0]
    for i in items[1:]:
        if type(i) is not type(first) or not (i == first or (i != i and first != first)):
            raise MergeError(f"an argument is {_brief(first)} in one trace and {_brief(i)} in "
                             f"another")
    return first


def _brief(v):
    text = repr(v)
    return text if len(text) < 80 else text[:77] + "..."


def merge_calls(traces, axes):
    """Check that every trace ran the same ops, then merge each call's arguments.

    Returns one (call, merged args, merged kwargs) per call of trace 0."""
    base = traces[0].calls
    for k, trace in enumerate(traces[1:], 1):
        calls = trace.calls
        for i, (a, b) in enumerate(zip(base, calls)):
            if a.cls is not b.cls:
                raise OnnxExporterError(_structure_message(axes, k, f"op number {i} is "
                                        f"{a.cls.__name__} in one run and {b.cls.__name__} in "
                                        f"the other"))
        if len(calls) != len(base):
            raise OnnxExporterError(_structure_message(axes, k, f"one run has {len(base)} ops "
                                                                f"and the other {len(calls)}"))
    merged = []
    for i, call in enumerate(base):
        try:
            args = merge([t.calls[i].args for t in traces], axes)
            kwargs = merge([t.calls[i].kwargs for t in traces], axes)
        except MergeError as e:
            raise OnnxExporterError(f"ONNX export of {call.cls.__name__} (op number {i}): "
                                    f"{e}. Compute such values with tensor ops from the input, "
                                    f"or do not mark the axis as dynamic.") from None
        merged.append((call, args, kwargs))
    return merged


def _structure_message(axes, k, what):
    change = (f"the dynamic axis {axes.names[k - 1]!r} is one longer" if axes.names
              else "the input's values are moved")
    return (f"ONNX export: the model runs different ops when {change}: {what}. A trace holds "
            f"one path through the model: control flow that depends on the input's values, or "
            f"a Python loop over a dynamic axis (e.g. an RNN over time steps), cannot be "
            f"exported with that axis dynamic. Keep that axis fixed (drop it from "
            f"dynamic_axes) or remove the data-dependent branch.")
