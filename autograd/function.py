"""`Function`: one differentiable op, forward and backward side by side.

`Function.apply` runs `forward(ctx, *args)` without recording, then, when grad mode is on and
an input requires grad, links the outputs into the graph through `ctx`, which is the backward
node. Built-in ops and user-defined Functions share this base, as in PyTorch.
"""
import itertools
import os
import traceback
import weakref

from .grad_mode import _set, _state as _grad_state, is_grad_enabled
from .anomaly import _state as _anomaly_state
from .dispatch import call_intercepted, interceptors as _interceptors

_sequence = itertools.count()


class TensorBase:
    """The autograd-facing part of a tensor; `phalanx.tensor.Tensor` subclasses it."""

    __slots__ = ("requires_grad", "_grad", "grad_fn", "_output_nr", "_version", "_hooks",
                 "_post_hooks", "__weakref__")

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        """Checked as PyTorch checks it: a tensor of this one's size and dtype, or None (a
        wrong one would otherwise fail far away, in the next backward or optimizer step)."""
        if value is not None:
            if not isinstance(value, TensorBase):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got grad "
                                f"of type {type(value).__name__}")
            if value.shape != self.shape:
                raise RuntimeError(f"attempting to assign a gradient of size "
                                   f"'{list(value.shape)}' to a tensor of size "
                                   f"'{list(self.shape)}'. Please ensure that the gradient and "
                                   f"the tensor are the same size")
            if value.dtype != self.dtype:
                raise RuntimeError(f"attempting to assign a gradient with dtype "
                                   f"'{value.dtype}' to a tensor with dtype '{self.dtype}'; "
                                   f"convert it first (grad.to(param.dtype))")
        self._grad = value

    @grad.deleter
    def grad(self):
        self._grad = None


class Node:
    """The backward node of one `Function` call; it is also the `ctx` the Function sees."""

    __slots__ = ("fn", "edges", "needs_input_grad", "seq", "n_outputs", "pre_hooks",
                 "_saved", "_saved_versions", "_released", "__dict__", "__weakref__")
    # rarely set: class-level defaults, so that creating a node stays cheap
    _non_diff = None
    materialize_grads = True
    forward_stack = None
    output_meta = None
    _gradient_buffers = None
    post_hooks = None

    def __init__(self, fn):
        self.fn = fn
        self.edges = ()
        self.needs_input_grad = ()
        self.pre_hooks = None
        self._saved = None
        self._released = False

    # --- the ctx interface -------------------------------------------------------------
    def save_for_backward(self, *tensors):
        self._saved = tensors
        self._saved_versions = tuple(None if t is None else t._version[0] for t in tensors)

    @property
    def saved_tensors(self):
        if self._released:
            raise self._freed_error()
        saved = self._saved or ()
        for i, (t, v) in enumerate(zip(saved, self._saved_versions)):
            if t is not None and t._version[0] != v:
                made_by = f", which is output {t._output_nr} of {t.grad_fn.name()}," \
                    if t.grad_fn is not None else ""
                raise RuntimeError(
                    f"one of the variables needed for gradient computation has been modified "
                    f"by an inplace operation: saved tensor {i} of {self.name()} (shape "
                    f"{tuple(t.shape)}, dtype {t.dtype}){made_by} is at version "
                    f"{t._version[0]}; expected version {v} instead. Hint: replace the "
                    f"in-place operation (e.g. x.add_(y) -> x = x + y) or clone the tensor "
                    f"before modifying it; autograd.set_detect_anomaly(True) shows where "
                    f"{self.name()}'s forward ran.")
        return saved

    def _freed_error(self):
        return RuntimeError(
            f"Trying to backward through the graph a second time (or to read saved tensors "
            f"of {self.name()} after they were freed). Saved tensors are freed after "
            f"backward; pass retain_graph=True to the first backward() if you need to run "
            f"backward through the same graph again.")

    def gradient_buffer(self, i):
        """An array (input i's shape and dtype) where backward may write input i's gradient, or
        None. The engine offers one when that gradient becomes a leaf's `.grad` and already has
        a home (a DDP bucket view): computing it there (`out=`) and returning it saves a copy."""
        buffers = self._gradient_buffers
        return None if buffers is None else buffers[i]

    def mark_non_differentiable(self, *tensors):
        self._non_diff = {id(t) for t in tensors}

    def set_materialize_grads(self, value):
        self.materialize_grads = bool(value)

    # --- the graph-node interface ------------------------------------------------------
    def name(self):
        own = self.__dict__.get("node_name")    # ops whose PyTorch name depends on the call
        return _full_name(own) if own else backward_name(self.fn)

    @property
    def next_functions(self):
        """The nodes of PyTorch's inputs of this op, in PyTorch's order: `graph_inputs` (on
        the node for one call, else on the Function) picks them from the forward's arguments
        by position (a tuple, or a slice for variadic ones), so sizes, dims and flags, which
        PyTorch does not count as inputs, are left out; None means every argument."""
        edges = self.edges
        pick = self.__dict__.get("graph_inputs")
        if pick is None:
            pick = getattr(self.fn, "graph_inputs", None)
        if pick is not None:
            edges = edges[pick] if isinstance(pick, slice) else \
                [edges[i] if i < len(edges) else None for i in pick]
        return tuple((None, 0) if e is None else
                     ((e[0], e[1]) if isinstance(e[0], Node) else (accumulate_node(e[0]), 0))
                     for e in edges)

    def register_hook(self, hook):
        """`hook(grad_inputs, grad_outputs)` after this node's backward (PyTorch's
        Node.register_hook): `grad_inputs` are the gradients it computed for its inputs; a
        non-None result replaces them."""
        if self.post_hooks is None:
            self.post_hooks = []
        self.post_hooks.append(hook)
        return RemovableHandle(self.post_hooks, hook)

    def register_prehook(self, output_nr, hook):
        """Run `hook(grad)` on the gradient of output `output_nr` before this node runs."""
        if self.pre_hooks is None:
            self.pre_hooks = {}
        hooks = self.pre_hooks.setdefault(output_nr, [])
        hooks.append(hook)
        return RemovableHandle(hooks, hook)

    def release(self):
        """Free what backward saved (after it ran, unless retain_graph). As in PyTorch, a
        node that saved no tensors can run again; one that did says so when it reads them."""
        if self._saved is not None and any(t is not None for t in self._saved):
            self._saved = None
            self._released = True     # saved_tensors says so from now on
        stashed = self.__dict__       # arrays and tensors kept as ctx attributes go too
        freed = [k for k, v in stashed.items() if _holds_data(v)]
        for k in freed:
            del stashed[k]
        if freed:
            stashed["_freed"] = frozenset(freed)

    def __getattr__(self, name):      # only for names not found: the freed ones say why
        if name.startswith(("_saved_", "_raw_saved_")) and name not in ("_saved_versions",):
            found = saved_hooks.saved_by_name(self, name)
            if found is not saved_hooks.NOT_SAVED:
                return found
        if name in self.__dict__.get("_freed", ()):
            raise RuntimeError(
                f"Trying to backward through the graph a second time (or to read saved values "
                f"of {self.name()} after they were freed): '{name}' was freed by the first "
                f"backward. Pass retain_graph=True to the first backward() to keep it.")
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __repr__(self):
        return f"<{self.name()} object at {id(self):#x}>"


def backward_name(fn):
    """PyTorch's name for the backward node of `fn`: `MulBackward0` for a built-in op,
    `MyFunctionBackward` for a user-defined Function."""
    module = fn.__module__
    builtin = module.startswith("phalanx.") and not module.startswith("phalanx.tests")
    if not builtin:
        return f"{fn.__name__}Backward"
    return _full_name(fn.__dict__.get('node_name') or fn.__name__)


def _full_name(op):
    """`op` as a node name: "Sum" -> "SumBackward0"; a name that gives PyTorch's overload
    number itself ("SumBackward1", the node of sum(dim)) stays as it is."""
    return op if "Backward" in op else f"{op}Backward0"


def _holds_data(value):
    """Whether a ctx attribute holds tensor data (an array or tensor, or a tuple, list or
    dict of them), which release() frees; shapes, dims and flags stay."""
    if isinstance(value, (tuple, list)):
        return any(_holds_data(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_data(v) for v in value.values())
    return isinstance(value, TensorBase) or hasattr(value, "__array_interface__") or \
        hasattr(value, "__cuda_array_interface__")


class AccumulateGrad:
    """The node that puts a leaf's gradient into its `.grad`, as `next_functions` shows a
    leaf (PyTorch's AccumulateGrad): `variable` is the leaf. One per leaf while it is held."""

    __slots__ = ("variable", "metadata", "__weakref__")
    next_functions = ()

    def __init__(self, variable):
        self.variable, self.metadata = variable, {}

    def name(self):
        return "torch::autograd::AccumulateGrad"

    def __repr__(self):
        return f"<AccumulateGrad object at {id(self):#x}>"


_accumulators = weakref.WeakValueDictionary()     # id(leaf) -> its AccumulateGrad


def accumulate_node(leaf):
    node = _accumulators.get(id(leaf))
    if node is None or node.variable is not leaf:
        node = _accumulators[id(leaf)] = AccumulateGrad(leaf)
    return node


class RemovableHandle:
    """Returned by every register_*hook; `.remove()` unregisters the hook."""

    __slots__ = ("_container", "_item")

    def __init__(self, container, item):
        self._container, self._item = container, item

    def remove(self):
        try:
            self._container.remove(self._item)
        except ValueError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class Function:
    """Subclass with static `forward(ctx, *args)` and `backward(ctx, *grad_outputs)`.

    `backward` returns one gradient per `forward` argument (None where there is none). It is
    written with tensor ops, so that `create_graph=True` differentiates through it.
    """
    # False for ops whose outputs are never floating (comparisons, logical and bitwise ops):
    # they are never linked into the graph, whatever their inputs
    differentiable = True
    # False for Functions whose tensor inputs only give the node its graph edges (checkpoint's
    # recompute node): a meta input (e.g. a parameter FSDP has freed) then leaves the
    # outputs real
    meta_from_inputs = True
    # True for Functions that take DTensors as they are (tensor parallelism's to_local):
    # the DTensor guard lets them through
    dtensor_aware = False

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError(f"{ctx.fn.__name__} does not implement backward")

    @classmethod
    def apply(cls, *args, **kwargs):
        if _interceptors:  # autocast, profiler, ONNX export (autograd/dispatch.py)
            return call_intercepted(cls, args, kwargs, _call)
        if gpu_guard is not None:
            return _call(cls, args, kwargs)
        return _run(cls, args, kwargs)


# Set by the array backend once CuPy is in use: `gpu_guard(args)` gives the context that makes
# the GPU of the first CuPy input current when it is not (else None), so an op's arrays are
# made on its inputs' GPU and no op needs to know about device indices. Without CuPy it stays
# None and costs one test per op.
gpu_guard = None

# Set by the tensor library once a meta tensor exists (tensor/meta.py): `meta_outputs(args,
# out)` makes an op's outputs meta when one of its inputs is. Until then it costs one test.
meta_outputs = None

# Set by distributed.tensor once a DTensor exists: `dtensor_ops(cls, args, kwargs, run)` runs
# the op on DTensors' local parts where that is right and refuses it elsewhere
# (distributed/tensor/dtensor.py). Until then it costs one test.
dtensor_ops = None


def _call(cls, args, kwargs):
    """Run one op on its inputs' GPU."""
    guard = gpu_guard
    if guard is not None:
        place = guard(args)
        if place is not None:
            with place:
                return _run(cls, args, kwargs)
    return _run(cls, args, kwargs)


def _run(cls, args, kwargs):
    """Run one op: forward without recording, then link the outputs into the graph."""
    if dtensor_ops is not None:
        return dtensor_ops(cls, args, kwargs, _run_op)
    return _run_op(cls, args, kwargs)


def _run_op(cls, args, kwargs):
    ctx = Node(cls)
    state = _grad_state
    try:
        if not state.enabled:
            out = cls.forward(ctx, *args, **kwargs)
            if meta_outputs is not None and cls.meta_from_inputs:
                meta_outputs(args, out)
            return out
        record = False
        if cls.differentiable:
            for a in args:
                if isinstance(a, TensorBase) and a.requires_grad:
                    record = True
                    break
        state.enabled = False  # the forward itself records nothing
        try:
            out = cls.forward(ctx, *args, **kwargs)
        finally:
            state.enabled = True
    except ValueError as e:
        if "broadcast" in str(e):  # NumPy's wording names neither the op nor the fix
            raise _broadcast_error(cls, args) from None
        raise
    except MemoryError as e:
        if type(e).__module__.startswith("cupy"):   # as torch.cuda.OutOfMemoryError
            from ..cuda import OutOfMemoryError
            raise OutOfMemoryError(f"CUDA out of memory in {cls.__name__}: {e}") from e
        raise
    if meta_outputs is not None and cls.meta_from_inputs:
        meta_outputs(args, out)
    if record:
        _link(ctx, args, out)
        if saved_hooks.active[0]:
            saved_hooks.seal(ctx)
    return out


def _broadcast_error(cls, args):
    shapes = [list(a.shape) for a in args if isinstance(a, TensorBase)]
    return RuntimeError(
        f"{_mismatch(shapes)}{cls.__name__}: the shapes {' and '.join(map(str, shapes))} "
        f"cannot be broadcast together: each dimension, aligned from the right, must be equal "
        f"or 1. Reshape or unsqueeze an operand (e.g. x.unsqueeze(-1)) so that they line up.")


def _mismatch(shapes):
    """PyTorch's words for the first clash of two shapes (people search for them)."""
    if len(shapes) < 2:
        return ""
    a, b = shapes[0], shapes[1]
    for i in range(1, min(len(a), len(b)) + 1):
        if a[-i] != b[-i] and 1 not in (a[-i], b[-i]):
            return (f"The size of tensor a ({a[-i]}) must match the size of tensor b ({b[-i]}) "
                    f"at non-singleton dimension {max(len(a), len(b)) - i}. ")
    return ""


def _link(ctx, args, out):
    """Make ctx the graph node of `out`: one edge per argument (None for non-tensors and
    tensors that need no gradient)."""
    edges, needs = [], []
    for a in args:
        if isinstance(a, TensorBase) and a.requires_grad:
            fn = a.grad_fn
            edges.append((fn, a._output_nr) if fn is not None else (a, -1))
            needs.append(True)
        else:
            edges.append(None)
            needs.append(False)
    ctx.edges = edges
    ctx.needs_input_grad = tuple(needs)
    ctx.seq = next(_sequence)
    if _anomaly_state.enabled:
        ctx.forward_stack = _callers_stack()
    non_diff = ctx._non_diff
    if isinstance(out, tuple):
        ctx.n_outputs = len(out)
        ctx.output_meta = [(o.shape, o.dtype) if isinstance(o, TensorBase) else ((), None)
                           for o in out]
        for i, o in enumerate(out):
            if isinstance(o, TensorBase) and (non_diff is None or id(o) not in non_diff) \
                    and _differentiable(o._data.dtype):
                o.requires_grad = True
                o.grad_fn = ctx
                o._output_nr = i
    else:
        ctx.n_outputs = 1
        if (non_diff is None or id(out) not in non_diff) and _differentiable(out._data.dtype):
            out.requires_grad = True
            out.grad_fn = ctx
            out._output_nr = 0


def _differentiable(dt):
    # bfloat16 (from ml_dtypes) is floating but has NumPy kind 'V'
    return dt.kind in "fc" or dt.name == "bfloat16"


def once_differentiable(backward):
    """Mark a backward that cannot itself be differentiated (it runs under no_grad)."""
    import functools

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        prev = is_grad_enabled()
        _set(False)
        try:
            return backward(ctx, *grads)
        finally:
            _set(prev)
    return wrapper


def _callers_stack():
    """The stack that made a node, up to the last frame outside Phalanx (PyTorch's anomaly
    warning shows the user's frames: its own are C++)."""
    frames = traceback.extract_stack()
    while frames and _is_phalanx_frame(frames[-1].filename):
        frames.pop()
    return "".join(traceback.format_list(frames))


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _is_phalanx_frame(filename):
    inside = filename.startswith(_PACKAGE_DIR)
    return inside and filename[len(_PACKAGE_DIR):].split(os.sep, 1)[0] not in (
        "tests", "examples", "benchmarks")      # the repository root is the package

from . import saved_hooks  # noqa: E402  (it subclasses Node)
