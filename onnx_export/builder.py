"""`GraphBuilder`: the ONNX graph under construction, and `Value`, one tensor in it.

Emitters (`ops/`) see an op's tensor arguments as `Value`s and turn them into graph names with
`b.use(value)`: a model input or an op output has a name already; a parameter becomes an
initializer named after it on first use; a constant becomes an initializer (shared between
equal constants) or, when its shape follows a dynamic axis and all its elements are equal (the
zero state of an RNN), a ConstantOfShape node. Sizes that follow dynamic axes (`Dim`) are
computed from the inputs' shapes with Shape, Gather and Mul.
"""
import numpy as np

from .errors import OnnxExporterError
from .merge import Dim, MergeError, fit

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


class Value:
    """One tensor of the exported graph, with its shape and dtype in every trace.

    `name` is its graph name once it has one; `consts` its value in each trace when it is a
    constant (a parameter, a tensor made outside the traced ops, or a folded op's result);
    `param` the state-dict name a parameter keeps; `error` why it cannot be used."""

    def __init__(self, shapes, dtype, name=None, consts=None, param=None, error=None):
        self.shapes = [tuple(s) for s in shapes]
        self.dtype = np.dtype(dtype)
        self.name, self.consts, self.param, self.error = name, consts, param, error
        self.note = None  # which op argument it is, for error messages
        self.hint = "const"  # the start of its initializer's name, if it becomes one
        self.source = None   # the parameter a folded constant was computed from

    @property
    def shape(self):
        return self.shapes[0]

    @property
    def ndim(self):
        return len(self.shapes[0])

    def dims(self, axes):
        """The shape with sizes that follow dynamic axes as `Dim`s (None if the rank varies)."""
        if any(len(s) != self.ndim for s in self.shapes):
            return None
        try:
            return tuple(fit([s[i] for s in self.shapes], axes) for i in range(self.ndim))
        except MergeError:
            return None

    def __repr__(self):
        return f"Value({self.name or 'constant'}, shape={list(self.shape)}, dtype={self.dtype})"


class GraphBuilder:
    def __init__(self, onnx, opset, axes, inputs, export_params=True):
        self.onnx, self.helper = onnx, onnx.helper
        self.opset, self.axes, self.inputs = opset, axes, inputs
        self.export_params = export_params
        self.nodes, self.initializers, self.param_inputs = [], [], []
        self._taken = {v.name for v in inputs}
        self._consts = {}   # (dtype, shape, bytes) -> initializer name
        self._dims = {}     # Dim -> name of its 1-D int64 tensor
        self._count = 0
        self._op_start = 0

    # ---- names and nodes -------------------------------------------------------------------
    def reserve(self, names):
        """Keep `names` (the graph's output names) from being handed out by `fresh`."""
        self._taken.update(names)

    def fresh(self, hint):
        name = hint
        while name in self._taken:
            self._count += 1
            name = f"{hint}_{self._count}"
        self._taken.add(name)
        return name

    def node(self, op_type, inputs, outputs=None, n_outputs=1, **attrs):
        """Append one node; returns its output name (or list of names when n_outputs > 1).
        An input of None (or "") is an omitted optional input."""
        if outputs is None:
            outputs = [self.fresh(f"{op_type}_out") for _ in range(n_outputs)]
        elif isinstance(outputs, str):
            outputs = [outputs]
        inputs = ["" if i is None else i for i in inputs]
        while inputs and inputs[-1] == "":
            inputs.pop()
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.helper.make_node(op_type, inputs, outputs,
                                                name=self.fresh(op_type), **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def begin_op(self):
        """Mark where the nodes of the op about to be emitted start (see `finish`)."""
        self._op_start = len(self.nodes)

    def finish(self, name, output):
        """Make the graph tensor `name` available as `output`: by renaming it when the current
        op's last node made it (so nothing else can read it), by an Identity node otherwise."""
        last = self.nodes[-1] if len(self.nodes) > self._op_start else None
        if last is not None and list(last.output) == [name]:
            last.output[0] = output
            return output
        return self.node("Identity", [name], output)

    # ---- constants -------------------------------------------------------------------------
    def const(self, array, hint="const"):
        """An initializer holding `array` (equal constants share one)."""
        array = np.asarray(array, order="C")  # (ascontiguousarray would make 0-d 1-d)
        key = (array.dtype.str, array.shape, array.tobytes())
        name = self._consts.get(key)
        if name is None:
            name = self._consts[key] = self.fresh(hint)
            self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def scalar(self, value, dtype):
        return self.const(np.asarray(value, dtype=dtype), "scalar")

    def int64s(self, values):
        return self.const(np.asarray(list(values), dtype=np.int64), "ints")

    def use(self, value):
        """The graph name of `value`, materialising a parameter or constant on first use."""
        if value.error is not None:
            raise OnnxExporterError(value.error)
        if value.name is not None:
            return value.name
        if value.param is not None:
            array = value.consts[0]
            value.name = self.fresh(value.param)
            if self.export_params:
                self.initializers.append(self.onnx.numpy_helper.from_array(
                    np.asarray(array, order="C"), value.name))
            else:
                self.param_inputs.append(self.helper.make_tensor_value_info(
                    value.name, self.elem_type(array.dtype), list(array.shape)))
            return value.name
        value.name = self._materialise(value)
        return value.name

    def _materialise(self, value):
        arrays = value.consts
        first = arrays[0]
        if all(a.shape == first.shape and np.array_equal(a, first, equal_nan=True)
               for a in arrays):
            return self.const(first, value.hint)
        # a constant whose shape follows a dynamic axis: made in the graph when it has one of
        # the forms models build from sizes (an RNN's zero state, positions, a causal mask)
        dims = value.dims(self.axes)
        if dims is not None and all(a.size for a in arrays):
            for form in (self._filled, self._arange, self._triangle):
                name = form(arrays, dims)
                if name is not None:
                    return name
        raise OnnxExporterError(
            f"ONNX export: a tensor of shape {list(first.shape)} and dtype {first.dtype} was "
            f"made outside the traced ops (by a creation function, NumPy, a comparison such as "
            f"x > 0, argmax, or a random draw), and its value or shape depends on the input "
            f"({value.note or 'used by a traced op'}), so it cannot be stored as a constant. "
            f"Compute it with tensor ops from the input; a constant whose shape follows a "
            f"dynamic axis can be exported when it is one repeated value (zeros), a 1-D arange "
            f"or a triangular (causal) mask.")

    def _filled(self, arrays, dims):
        fill = arrays[0].reshape(-1)[0]
        if not all(np.all(a == fill) for a in arrays):
            return None
        tensor = self.onnx.numpy_helper.from_array(np.asarray([fill], dtype=arrays[0].dtype))
        return self.node("ConstantOfShape", [self.shape_tensor(dims)], value=tensor)

    def _arange(self, arrays, dims):
        """start + step * arange(n), n following a dynamic axis: Range."""
        first = arrays[0]
        if first.ndim != 1 or first.size < 2 or first.dtype.kind not in "iuf" or \
                not isinstance(dims[0], Dim):
            return None
        start, step = first[0], first[1] - first[0]
        if not all(np.array_equal(a, start + step * np.arange(a.size, dtype=a.dtype))
                   for a in arrays):
            return None
        dtype = first.dtype
        count = self.cast(self.squeeze(self.dim(dims[0]), [0]), np.int64, dtype)
        limit = self.node("Add", [self.scalar(start, dtype),
                                  self.node("Mul", [count, self.scalar(step, dtype)])])
        return self.node("Range", [self.scalar(start, dtype), limit, self.scalar(step, dtype)])

    def _triangle(self, arrays, dims):
        """`upper` where j - i >= k and `lower` elsewhere (a causal mask): Trilu of ones."""
        first = arrays[0]
        if first.ndim != 2 or self.opset < 14:
            return None
        upper, lower = first[0, -1], first[-1, 0]
        for k in range(-2, 3):
            if all(np.array_equal(a, np.where(np.triu(np.ones(a.shape, bool), k), upper, lower))
                   for a in arrays):
                ones = self.node("ConstantOfShape", [self.shape_tensor(dims)],
                                 value=self.onnx.numpy_helper.from_array(
                                     np.ones(1, np.float32)))
                band = self.node("Trilu", [ones, self.scalar(k, np.int64)], upper=1)
                mask = self.cast(band, np.float32, np.bool_)
                return self.node("Where", [mask, self.scalar(upper, first.dtype),
                                           self.scalar(lower, first.dtype)])
        return None

    # ---- shapes ----------------------------------------------------------------------------
    def dim(self, dim):
        """A 1-D int64 tensor [size] holding a `Dim`, computed from the inputs' shapes."""
        name = self._dims.get(dim)
        if name is None:
            factors = []
            for axis_name in dim.axes:
                index, axis = self.axes.places[axis_name][0]
                shape = self.node("Shape", [self.inputs[index].name])
                factors.append(self.node("Gather", [shape, self.int64s([axis])], axis=0))
            name = factors[0]
            for f in factors[1:]:
                name = self.node("Mul", [name, f])
            if dim.coef != 1:
                name = self.node("Mul", [name, self.int64s([dim.coef])])
            self._dims[dim] = name
        return name

    def shape_tensor(self, entries):
        """A 1-D int64 tensor from numbers and `Dim`s."""
        entries = list(entries)
        if not any(isinstance(e, Dim) for e in entries):
            return self.int64s(entries)
        parts, run = [], []
        for e in entries:
            if isinstance(e, Dim):
                if run:
                    parts.append(self.int64s(run))
                    run = []
                parts.append(self.dim(e))
            else:
                run.append(int(e))
        if run:
            parts.append(self.int64s(run))
        return parts[0] if len(parts) == 1 else self.node("Concat", parts, axis=0)

    # ---- opset-dependent forms -------------------------------------------------------------
    def reduce(self, op_type, x, axes, keepdims, outputs=None):
        """Reduce* over `axes` (None: all); the axes are an input from opset 18 (ReduceSum:
        13), an attribute before."""
        axes = None if axes is None else [int(a) for a in axes]
        as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if as_input:
            inputs = [x] if axes is None else [x, self.int64s(axes)]
            return self.node(op_type, inputs, outputs, keepdims=int(keepdims))
        return self.node(op_type, [x], outputs, axes=axes, keepdims=int(keepdims))

    def squeeze(self, x, axes, outputs=None):
        return self.node("Squeeze", [x, self.int64s(axes)], outputs)

    def unsqueeze(self, x, axes, outputs=None):
        return self.node("Unsqueeze", [x, self.int64s(axes)], outputs)

    def cast(self, x, from_dtype, to_dtype, outputs=None):
        if np.dtype(from_dtype) == np.dtype(to_dtype):
            return x if outputs is None else self.node("Identity", [x], outputs)
        return self.node("Cast", [x], outputs, to=self.elem_type(to_dtype))

    def elem_type(self, dtype):
        dtype = np.dtype(dtype)
        try:
            return self.helper.np_dtype_to_tensor_dtype(dtype)
        except (KeyError, ValueError, TypeError):
            raise OnnxExporterError(f"ONNX export: dtype {dtype} has no ONNX type") from None
