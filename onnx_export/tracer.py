"""Recording one forward call: every top-level op, its arguments and its outputs.

A `Recorder` sits on the dispatch point (`autograd/dispatch.py`) for one forward call. Ops that
run inside another op are not recorded again: only the outermost call of each op is. Every
tensor argument is recorded as a `Ref` to a key that says where the tensor came from:

    ("input", i)        the i-th (flattened) model input
    ("param", name)     a parameter or buffer, by its state-dict name
    ("out", call, j)    output j of recorded call number `call`
    ("const", n)        a tensor made outside the traced ops (a creation function, NumPy, a
                        comparison such as x > 0): its value at first sight is kept

In-place ops write an op's result into an existing buffer after the op returns; the recorder
notices from the tensor's version counter and follows the tensor to the op that computed its
new value.
"""
import threading
from typing import NamedTuple

import numpy as np

from ..tensor import Tensor
from .errors import OnnxExporterError


class Ref(NamedTuple):
    """A tensor argument: the key of the value it holds."""
    key: tuple


class Call:
    """One recorded op call: arguments with tensors as `Ref`s, and what came out."""

    def __init__(self, index, cls, args, kwargs, outputs, input_arrays, foldable):
        self.index, self.cls, self.args, self.kwargs = index, cls, args, kwargs
        self.out_meta = [(tuple(o.shape), o._data.dtype) if isinstance(o, Tensor) else None
                         for o in outputs]
        self.input_arrays = input_arrays   # ids of the argument tensors' arrays (in-place)
        self.outputs = outputs             # kept alive: ids stay unique during the trace
        # the values of a call on constants only, in case it is folded into a constant
        self.values = [host(o._data).copy() if isinstance(o, Tensor) else None
                       for o in outputs] if foldable else None


def host(arr):
    """A NumPy array with `arr`'s values (CuPy arrays are copied to the host)."""
    return arr.get() if hasattr(arr, "get") and not isinstance(arr, np.ndarray) else arr


class Recorder:
    """The interceptor that records one forward call (see the module docstring)."""

    def __init__(self, inputs, named_tensors, constant_kinds):
        self.calls = []
        self.consts = {}
        self._known = {}          # id(tensor) -> (key, version when the key was given)
        self._by_array = {}       # id(array) -> key: .detach() and .data share the array
        self._alive = []
        self._depth = 0
        self._thread = threading.get_ident()
        self._constant_kinds = constant_kinds  # key kinds a call may be folded over
        self._folded = set()      # keys of the outputs of foldable calls (constants too)
        for i, t in enumerate(inputs):
            self._register(t, ("input", i))
        for name, t in named_tensors:
            if id(t) not in self._known:
                self._register(t, ("param", name))

    def __call__(self, cls, args, kwargs, proceed):
        if self._depth or threading.get_ident() != self._thread:
            # an op inside an op's forward (the outer op stands for it), or another thread's
            return proceed(args, kwargs)
        ref_args, ref_kwargs = self.ref(args), self.ref(kwargs)
        arrays = {id(a._data) for a in tensors_in((args, kwargs))}
        self._depth += 1
        try:
            out = proceed(args, kwargs)
        finally:
            self._depth -= 1
        outputs = out if isinstance(out, tuple) else (out,)
        foldable = all(r.key[0] in self._constant_kinds or r.key in self._folded
                       for r in refs_in((ref_args, ref_kwargs)))
        call = Call(len(self.calls), cls, ref_args, ref_kwargs, outputs, arrays, foldable)
        for j, o in enumerate(outputs):
            if isinstance(o, Tensor):
                self._register(o, ("out", call.index, j))
                if foldable:
                    self._folded.add(("out", call.index, j))
        self.calls.append(call)
        return out

    def ref(self, x):
        """`x` with every tensor replaced by its `Ref` (containers rebuilt, arrays copied)."""
        if isinstance(x, Tensor):
            return Ref(self._key_of(x))
        if isinstance(x, (tuple, list)):
            items = [self.ref(v) for v in x]
            if hasattr(type(x), "_fields"):  # a NamedTuple (e.g. a conv geometry)
                return type(x)(*items)
            return list(items) if isinstance(x, list) else tuple(items)
        if isinstance(x, dict):
            return {k: self.ref(v) for k, v in x.items()}
        if hasattr(x, "__array_interface__") or hasattr(x, "__cuda_array_interface__"):
            return np.array(host(x))
        return x

    def _register(self, t, key):
        self._known[id(t)] = (key, t._version[0])
        self._by_array.setdefault(id(t._data), key)
        self._alive.append(t)

    def _key_of(self, t):
        entry = self._known.get(id(t))
        if entry is not None:
            key, version = entry
            if t._version[0] == version:
                return key
            key = self._written_by(t, key)
        else:
            key = self._by_array.get(id(t._data))
            if key is None:
                key = ("const", len(self.consts))
                self.consts[key[1]] = host(t._data).copy()
        self._register(t, key)
        return key

    def _written_by(self, t, old_key):
        """The key of the op output that an in-place op wrote into `t`."""
        d = t._data
        for call in reversed(self.calls):
            if id(d) not in call.input_arrays:
                continue
            for j, o in enumerate(call.outputs):
                if isinstance(o, Tensor) and o._data.shape == d.shape and \
                        o._data.dtype == d.dtype and bool((o._data == d).all()):
                    return ("out", call.index, j)
        raise OnnxExporterError(
            f"ONNX export: a tensor of shape {list(d.shape)} ({_describe(old_key)}) was "
            f"modified in place in a way the exporter cannot follow (through a view, or by an "
            f"op that is not traced). Use the out-of-place form (e.g. x = x + y instead of "
            f"x += y on a view, F.relu(x) instead of F.relu(x, inplace=True)).")

    def output_refs(self, out):
        """The model output's tensors, flattened in order, as `Ref`s."""
        return [Ref(self._key_of(t)) for t in tensors_in(out)]


def _describe(key):
    kind = key[0]
    if kind == "input":
        return f"model input {key[1]}"
    if kind == "param":
        return f"parameter {key[1]!r}"
    if kind == "out":
        return f"output {key[2]} of traced op number {key[1]}"
    return "a tensor made outside the traced ops"


def tensors_in(x):
    """The tensors inside nested tuples, lists and dicts, in order."""
    if isinstance(x, Tensor):
        yield x
    elif isinstance(x, (tuple, list)):
        for v in x:
            yield from tensors_in(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from tensors_in(v)


def refs_in(x):
    if isinstance(x, Ref):
        yield x
    elif isinstance(x, (tuple, list)):
        for v in x:
            yield from refs_in(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from refs_in(v)

