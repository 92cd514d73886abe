"""`export`: trace a model's forward call and write it as an ONNX graph.

    trace     run the model under a `Recorder` (tracer.py): once on the given inputs, and once
              more per dynamic axis with that axis one longer (merge.py)
    merge     per op, one symbolic argument list: sizes that follow dynamic axes become `Dim`s
    emit      per op, ONNX nodes through the translation table (ops/); calls on constants only
              are folded into constants; parameters become initializers named as in
              `model.named_parameters()` / `named_buffers()` (assemble.py)
    check     the model passes `onnx.checker.check_model(full_check=True)` before it is written
"""
import enum
import inspect
import os
import warnings

import numpy as np

from ..autograd import dispatch
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor, backend
from .assemble import build
from .errors import OnnxExporterError
from .merge import Axes
from .tracer import Recorder, host, tensors_in

DEFAULT_OPSET = 20  # as torch.onnx.export
MIN_OPSET = 13


class TrainingMode(enum.IntEnum):
    """Which mode the model is exported in (PyTorch's `torch.onnx.TrainingMode`)."""
    EVAL = 0
    PRESERVE = 1
    TRAINING = 2


# torch.onnx.export options of PyTorch's other exporters: accepted only when they ask for
# nothing (None, False or empty), since this exporter has no such feature
_NOT_SUPPORTED = ("dynamic_shapes", "custom_translation_table", "report", "verify", "profile",
                  "dump_exported_program", "artifacts_dir", "optimize", "fallback",
                  "external_data", "custom_opsets", "export_modules_as_functions",
                  "operator_export_type", "autograd_inlining")


def export(model, args=(), f=None, *, kwargs=None, verbose=None, input_names=None,
           output_names=None, opset_version=None, dynamic_axes=None, export_params=True,
           keep_initializers_as_inputs=False, training=TrainingMode.EVAL,
           do_constant_folding=True, dynamo=True, **options):
    """Export `model` (called as `model(*args, **kwargs)`) to ONNX; PyTorch's signature.

    args: the example inputs, a tensor or a tuple (a trailing dict holds keyword inputs, as in
        PyTorch); tensors (also inside tuples and lists) become graph inputs, in order, and
        anything else is fixed into the graph.
    f: a path or a writable binary file to save the model to, or None.
    input_names, output_names: graph names of the flattened inputs and outputs (by default the
        forward's parameter names, and "output" or "output_0", "output_1", ...).
    opset_version: the ai.onnx opset (default 20, as in PyTorch; 13 or later).
    dynamic_axes: {name: {axis: axis_name}} or {name: [axis, ...]} for inputs and outputs whose
        sizes are free at run time; everywhere else the traced sizes are fixed.
    export_params: store parameters and buffers in the model (False: they become inputs).
    keep_initializers_as_inputs: also list the stored constants as graph inputs.
    training: TrainingMode.EVAL (the default: the model is traced in eval mode and set back
        afterwards) or PRESERVE for a model already in eval mode; exporting training-mode
        behaviour is not supported.
    do_constant_folding: ops on constants only (e.g. weight.T, folded batch-norm statistics)
        are computed once and stored as constants.
    dynamo: PyTorch's choice between its two exporters; phalanx has one (a tracer) and gives
        the same graph either way.

    Returns the `onnx.ModelProto`. An op without an ONNX translation raises
    `UnsupportedOperatorError` naming it; see `exportable_ops()`.
    """
    onnx = _load_onnx()
    _check_options(options, dynamo)
    opset = _opset(opset_version, onnx)
    if training == TrainingMode.TRAINING or (
            training == TrainingMode.PRESERVE and any(m.training for m in model.modules())):
        raise NotImplementedError(
            "export: exporting training-mode behaviour (dropout, batch statistics) is not "
            "supported; export with training=TrainingMode.EVAL (the default)")
    args, kwargs = _split_args(args, kwargs)
    inputs = list(tensors_in((args, kwargs)))
    names = _input_names(model, args, kwargs, inputs, input_names)
    axes, output_axes = _dynamic_axes(dynamic_axes, names, inputs, output_names)

    named = list(model.named_parameters()) + [(n, t) for n, t in model.named_buffers()
                                               if t is not None]
    constant_kinds = ({"const", "param"} if export_params else {"const"}) \
        if do_constant_folding else set()
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        traces = _run_traces(model, args, kwargs, inputs, axes, named, constant_kinds)
    finally:
        for m, mode in modes:
            m.training = mode
    proto = build(onnx, opset, traces, axes, names, inputs, named, output_names, output_axes,
                   export_params, keep_initializers_as_inputs, do_constant_folding)
    onnx.checker.check_model(proto, full_check=True)
    if verbose:
        print(onnx.helper.printable_graph(proto.graph))
    if f is not None:
        if hasattr(f, "write"):
            f.write(proto.SerializeToString())
        else:
            onnx.save(proto, os.fspath(f))
    return proto


# ---- arguments ----------------------------------------------------------------------------
def _load_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("phalanx.onnx.export needs the onnx package: pip install "
                          "'phalanx[onnx]' (or pip install onnx)") from None
    return onnx


def _check_options(options, dynamo):
    for name, value in options.items():
        if name not in _NOT_SUPPORTED:
            raise TypeError(f"export() got an unexpected keyword argument {name!r}")
        if value not in (None, False) and not (isinstance(value, (dict, list, tuple))
                                               and not value):
            raise NotImplementedError(
                f"export: {name}={value!r} is an option of PyTorch's exporters that phalanx's "
                f"exporter does not have; leave it out")
    if not isinstance(dynamo, bool):
        raise TypeError(f"export: dynamo must be a bool, got {dynamo!r}")


def _opset(opset_version, onnx):
    newest = onnx.defs.onnx_opset_version()
    opset = DEFAULT_OPSET if opset_version is None else int(opset_version)
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"export: opset_version {opset} is not supported: phalanx exports "
                         f"opsets {MIN_OPSET} to {newest} (the newest the installed onnx "
                         f"{onnx.__version__} knows)")
    return opset


def _split_args(args, kwargs):
    if isinstance(args, Tensor):
        args = (args,)
    elif isinstance(args, list):
        args = tuple(args)
    elif not isinstance(args, tuple):
        args = (args,)
    kwargs = dict(kwargs or {})
    if args and isinstance(args[-1], dict):  # PyTorch: a trailing dict holds keyword inputs
        kwargs = {**args[-1], **kwargs}
        args = args[:-1]
    return args, kwargs


def _input_names(model, args, kwargs, inputs, given):
    try:
        params = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        params = []
    defaults = []
    for i, a in enumerate(args):
        base = params[i] if i < len(params) and params[i] not in ("args", "kwargs") \
            else f"input_{i}"
        n = len(list(tensors_in(a)))
        defaults += [base] if isinstance(a, Tensor) else [f"{base}_{k}" for k in range(n)]
    for key, a in kwargs.items():
        n = len(list(tensors_in(a)))
        defaults += [key] if isinstance(a, Tensor) else [f"{key}_{k}" for k in range(n)]
    given = list(given or [])
    if len(given) > len(inputs):
        raise ValueError(f"export: {len(given)} input_names given ({given}) but the model has "
                         f"{len(inputs)} tensor inputs")
    names = given + defaults[len(given):]
    if len(set(names)) != len(names):
        raise ValueError(f"export: input names must be unique, got {names}")
    return names


def _dynamic_axes(dynamic_axes, names, inputs, output_names):
    places, sizes, output_axes = {}, {}, {}
    outputs = set(output_names or [])
    for key, spec in (dynamic_axes or {}).items():
        if isinstance(spec, dict):
            pairs = [(int(a), str(n)) for a, n in spec.items()]
        else:
            pairs = [(int(a), f"{key}_dynamic_axes_{k + 1}") for k, a in enumerate(spec)]
        if key in names:
            t = inputs[names.index(key)]
            for axis, axis_name in pairs:
                if not -t.ndim <= axis < t.ndim:
                    raise ValueError(f"export: dynamic axis {axis} of input {key!r} is out of "
                                     f"range for its shape {list(t.shape)}")
                axis %= t.ndim
                size = t.shape[axis]
                if sizes.setdefault(axis_name, size) != size:
                    raise ValueError(f"export: the dynamic axis {axis_name!r} has different "
                                     f"sizes in the example inputs ({sizes[axis_name]} and "
                                     f"{size} in {key!r})")
                places.setdefault(axis_name, []).append((names.index(key), axis))
        elif key in outputs or output_names is None:
            output_axes[key] = dict(pairs)
        else:
            warnings.warn(f"Provided key {key} for dynamic axes is not a valid input/output "
                          f"name (inputs {names}, outputs {list(outputs)})")
    return Axes(places, sizes), output_axes


# ---- tracing ------------------------------------------------------------------------------
class Trace:
    def __init__(self, recorder, inputs, outputs):
        self.calls, self.consts = recorder.calls, recorder.consts
        self.input_shapes = [tuple(t.shape) for t in inputs]
        self.outputs = outputs


def _run_traces(model, args, kwargs, inputs, axes, named, constant_kinds):
    traces = [_trace(model, args, kwargs, inputs, axes, 0, named, constant_kinds)]
    for k in range(1, axes.n_traces):
        try:
            traces.append(_trace(model, args, kwargs, inputs, axes, k, named, constant_kinds))
        except Exception as e:
            if axes.names:
                name = axes.names[k - 1]
                change = (f"the dynamic axis {name!r} one longer ({axes.sizes[name]} -> "
                          f"{axes.sizes[name] + 1})")
            else:
                change = "the input's values moved one place"
            raise OnnxExporterError(
                f"ONNX export: to learn which sizes and values depend on the input, the model "
                f"runs once more with {change}, and that run failed: {type(e).__name__}: {e}. "
                f"Export with a smaller example size along that axis (or without it in "
                f"dynamic_axes).") from e
    return traces


def _trace(model, args, kwargs, inputs, axes, k, named, constant_kinds):
    """Trace k: the given inputs (k = 0), or with axis k-1 one longer and the values moved."""
    if k:
        swap = {id(t): _variant(t, i, axes, k) for i, t in enumerate(inputs)}
        args, kwargs = _replace((args, kwargs), swap)
        inputs = [swap[id(t)] for t in inputs]
    recorder = Recorder(inputs, named, constant_kinds)
    with no_grad(), dispatch.intercept(recorder):
        out = model(*args, **kwargs)
    outputs = recorder.output_refs(out)
    return Trace(recorder, inputs, outputs)


def _variant(t, index, axes, k):
    """Input `index` for trace k: its dynamic axes named axes.names[k-1] one longer (repeating
    its first entry at the end), and every value moved one place, so that a constant that
    depends on the input's values or shape is noticed."""
    arr = host(t._data)
    name = axes.names[k - 1] if axes.names else None
    for i, axis in axes.places.get(name, []):
        if i == index:
            n = arr.shape[axis]
            arr = np.take(arr, np.arange(n + 1) % max(n, 1), axis=axis)
    arr = np.roll(arr, 1) if arr.ndim else arr
    return Tensor._make(backend.to_device(np.array(arr, order="C"), t.device))


def _replace(x, swap):
    if isinstance(x, Tensor):
        return swap.get(id(x), x)
    if isinstance(x, (tuple, list)):
        items = [_replace(v, swap) for v in x]
        return list(items) if isinstance(x, list) else tuple(items)
    if isinstance(x, dict):
        return {k: _replace(v, swap) for k, v in x.items()}
    return x
