"""Turning the merged traces into an ONNX model: values, folding, emitters, outputs, pruning.

Each recorded call either folds (it ran on constants only and gave the same values in every
trace: its outputs are constants) or goes through its emitter (ops/). Graph outputs are the
op outputs named as the caller asked; nodes and initializers the outputs do not need are
dropped at the end.
"""
import warnings

import numpy as np

from .. import __version__
from .builder import GraphBuilder, Value
from .errors import OnnxExporterError, UnsupportedOperatorError
from .merge import Dim, merge_calls
from .ops import EMITTERS, OpCall
from .tracer import Ref, host


def exportable_ops():
    """The names of the ops (Function classes) that have an ONNX translation."""
    return sorted({cls.__name__ for cls in EMITTERS})


def build(onnx, opset, traces, axes, names, inputs, named, output_names, output_axes,
           export_params, keep_initializers_as_inputs, folding):
    helper = onnx.helper
    n = len(traces)
    values = {}
    graph_inputs = []
    for i, (t, name) in enumerate(zip(inputs, names)):
        v = Value([tr.input_shapes[i] for tr in traces], t._data.dtype, name=name)
        values[("input", i)] = v
        graph_inputs.append(v)
    for name, t in named:
        values.setdefault(("param", name), Value([t.shape] * n, t._data.dtype,
                                                 consts=[host(t._data)] * n, param=name))
    b = GraphBuilder(onnx, opset, axes, graph_inputs, export_params)

    merged = merge_calls(traces, axes)
    out_refs = traces[0].outputs
    if any(len(tr.outputs) != len(out_refs) or
           any(r.key != s.key for r, s in zip(out_refs, tr.outputs)) for tr in traces[1:]):
        raise OnnxExporterError("ONNX export: the model's outputs come from different ops "
                                "when a dynamic axis changes")
    out_names = _output_names(output_names, len(out_refs))
    preassigned = {}
    for ref, name in zip(out_refs, out_names):
        if ref.key[0] == "out":
            preassigned.setdefault(ref.key, name)
    b.reserve(out_names)

    table = _ValueTable(traces, values)
    for call, args, kwargs in merged:
        _emit_call(b, call, args, kwargs, traces, table, preassigned, folding)

    graph_outputs = []
    for ref, name in zip(out_refs, out_names):
        v = table.of(ref)
        source = b.use(v)
        if source != name:
            b.node("Identity", [source], name)
        graph_outputs.append(helper.make_tensor_value_info(
            name, b.elem_type(v.dtype), _dims_of(v, axes, output_axes.get(name, {}), name)))

    input_infos = [helper.make_tensor_value_info(
        v.name, b.elem_type(v.dtype), _input_dims(v, i, axes)) for i, v in enumerate(graph_inputs)]
    nodes, initializers, param_inputs = _prune(b, [o.name for o in graph_outputs])
    read = {i for node in nodes for i in node.input} | {o.name for o in graph_outputs}
    for v in graph_inputs:
        if v.name not in read:
            warnings.warn(f"ONNX export: the graph does not use input {v.name!r}: the model "
                          f"ignores it, or reads its values outside the traced ops (e.g. a bool "
                          f"mask turned into a float mask with NumPy), in which case the graph "
                          f"holds the example's values as a constant instead")
    if keep_initializers_as_inputs:
        param_inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                         for t in initializers]
    graph = helper.make_graph(nodes, "phalanx", input_infos + param_inputs, graph_outputs,
                              initializers)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="phalanx",
                              producer_version=__version__)
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    return proto


class _ValueTable:
    """The `Value` of each key, and op arguments with their `Ref`s turned into `Value`s."""

    def __init__(self, traces, values):
        self.traces, self.values = traces, values

    def of(self, ref):
        v = self.values.get(ref.key)
        if v is None and ref.key[0] == "const":
            arrays = [tr.consts[ref.key[1]] for tr in self.traces]
            v = self.values[ref.key] = Value([a.shape for a in arrays], arrays[0].dtype,
                                             consts=arrays)
        return v

    def resolve(self, x, note):
        if isinstance(x, Ref):
            v = self.of(x)
            if v.note is None:
                v.note = note
            return v
        if isinstance(x, (tuple, list)) and not isinstance(x, Dim):
            items = [self.resolve(i, note) for i in x]
            if hasattr(type(x), "_fields"):
                return type(x)(*items)
            return list(items) if isinstance(x, list) else tuple(items)
        if isinstance(x, dict):
            return {k: self.resolve(i, note) for k, i in x.items()}
        if isinstance(x, slice):
            return slice(*(self.resolve(getattr(x, a), note) for a in ("start", "stop", "step")))
        return x


def _emit_call(b, call, args, kwargs, traces, table, preassigned, folding):
    """Fold one call into constants, or append its nodes through its emitter."""
    i = call.index
    note = f"used by {call.cls.__name__}, op number {i}"
    args, kwargs = table.resolve(args, note), table.resolve(kwargs, note)
    metas = [tr.calls[i].out_meta for tr in traces]
    if folding and _same_in_every_trace([tr.calls[i].values for tr in traces]):
        _fold(call, i, traces, metas, (args, kwargs), table.values)
        return
    emitter = EMITTERS.get(call.cls)
    if emitter is None:
        raise UnsupportedOperatorError(
            f"ONNX export: the op {call.cls.__name__} ({call.cls.__module__}, op number {i}) "
            f"has no ONNX translation. Exportable ops: {', '.join(exportable_ops())}.")
    outputs = []
    for j, meta in enumerate(call.out_meta):
        if meta is None:
            outputs.append(None)
            continue
        key = ("out", i, j)
        suffix = f"_{j}" if len(call.out_meta) > 1 else ""
        name = preassigned.get(key) or b.fresh(f"{call.cls.__name__.strip('_')}_{i}{suffix}")
        v = table.values[key] = Value([m[j][0] for m in metas], meta[1], name=name)
        outputs.append(v)
    b.begin_op()
    emitter(b, OpCall(call.cls, i, outputs), *args, **kwargs)


def _same_in_every_trace(per_trace):
    """Whether a call ran on constants only and gave the same results in every trace (one that
    follows a dynamic axis, such as zeros(batch, n) @ W, stays an op of the graph)."""
    if any(v is None for v in per_trace):
        return False
    first = per_trace[0]
    return all(a is None or (a.shape == b.shape and np.array_equal(a, b, equal_nan=True))
               for values in per_trace[1:] for a, b in zip(first, values))


def _fold(call, i, traces, metas, arguments, values):
    """The outputs of a call on constants only are constants: its traced values. One equal to
    a parameter it read (a reshape that changes nothing) is that parameter, name and all."""
    inputs = list(_values_in(arguments))
    params = [v for v in inputs if v.param is not None]
    sources = [v.param or v.source for v in inputs if v.param or v.source]
    for j, meta in enumerate(call.out_meta):
        if meta is None:
            continue
        arrays = [tr.calls[i].values[j] for tr in traces]
        same = [p for p in params if p.consts[0].shape == arrays[0].shape and
                p.dtype == arrays[0].dtype and np.array_equal(p.consts[0], arrays[0])]
        if same:
            values[("out", i, j)] = same[0]
            continue
        v = Value([m[j][0] for m in metas], meta[1], consts=arrays)
        if sources:  # named after the parameter it comes from
            v.source = sources[0]
            v.hint = f"{v.source}_{call.cls.__name__.strip('_')}"
        values[("out", i, j)] = v


def _values_in(x):
    if isinstance(x, Value):
        yield x
    elif isinstance(x, (tuple, list)):
        for i in x:
            yield from _values_in(i)
    elif isinstance(x, dict):
        for i in x.values():
            yield from _values_in(i)


def _output_names(given, n):
    given = list(given or [])
    if len(given) > n:
        raise ValueError(f"export: {len(given)} output_names given ({given}) but the model "
                         f"returns {n} tensors")
    default = ["output"] if n == 1 else [f"output_{i}" for i in range(n)]
    return given + default[len(given):]


def _input_dims(v, index, axes):
    dims = list(v.shape)
    for axis_name, places in axes.places.items():
        for i, axis in places:
            if i == index:
                dims[axis] = axis_name
    return dims


def _dims_of(v, axes, named_axes, output_name):
    """An output's shape: numbers, and names for the sizes that follow dynamic axes."""
    dims = v.dims(axes)
    if dims is None:
        return [None] * v.ndim
    out = []
    for k, d in enumerate(dims):
        if k in named_axes or k - len(dims) in named_axes:
            out.append(named_axes.get(k, named_axes.get(k - len(dims))))
        elif isinstance(d, Dim):
            out.append(d.axes[0] if d.coef == 1 and len(d.axes) == 1
                       else f"{output_name}_dim_{k}")
        else:
            out.append(d)
    return out


def _prune(b, output_names):
    """The nodes, initializers and parameter inputs that the outputs depend on."""
    needed = set(output_names)
    kept = []
    for node in reversed(b.nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    kept.reverse()
    return (kept, [t for t in b.initializers if t.name in needed],
            [p for p in b.param_inputs if p.name in needed])
