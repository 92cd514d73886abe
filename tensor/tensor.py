"""`Tensor`: an n-dimensional array (NumPy or CuPy) with autograd metadata.

Ops are defined in `tensor/ops/*` and bound as methods in `tensor/methods.py`; this file holds
what a tensor *is*: its array, dtype, device, grad state, conversion and representation.
"""
import warnings

import numpy as np

from ..autograd import engine
from ..autograd.function import RemovableHandle, TensorBase
from . import backend, dtypes, shared_memory

_new = object.__new__


class Tensor(TensorBase):
    # _view: None, or (base, kind, arg) when this tensor is a view of `base` made by
    # indexing ("index", index), reshape ("reshape", None) or permute ("permute", inverse);
    # an in-place op on the view then also moves `base` to the new graph node.
    # __dict__: a tensor takes attributes of its own as PyTorch's do (`p._no_decay = True`),
    # and a Parameter keeps the same layout (swap_tensors exchanges their classes)
    __slots__ = ("_data", "_view", "__dict__")

    # ---- construction ----------------------------------------------------------------------
    def __init__(self, *args, device=None):
        """PyTorch's legacy constructor: `Tensor(2, 3)` is uninitialised, `Tensor([1, 2])`
        copies data into the default dtype (see legacy_types); `phalanx.tensor` infers it."""
        from .legacy_types import tensor_init
        tensor_init(self, args, device)

    def _init(self, arr, requires_grad=False):
        self._data = arr
        self._view = None
        self._grad = None
        self.grad_fn = None
        self._output_nr = 0
        self._version = [0]
        self._hooks = None
        self._post_hooks = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _make(arr, requires_grad=False):
        """Wrap an array without copying (package-internal)."""
        if isinstance(arr, np.generic):  # NumPy ufuncs turn 0-d arrays into scalars
            arr = np.asarray(arr)
        t = _new(Tensor)
        t._data = arr
        t._view = None
        t.requires_grad = False
        t._grad = None
        t.grad_fn = None
        t._output_nr = 0
        t._version = [0]
        t._hooks = None
        t._post_hooks = None
        if requires_grad:
            t.requires_grad_(True)
        return t

    def _result_like(self, arr):
        """A tensor of this one's kind over `arr`, an elementwise result of its array (a
        DTensor keeps its layout)."""
        return Tensor._make(arr)

    def _everywhere(self, flag):
        """`flag`, a verdict on this tensor's array, as every rank holding part of it agrees
        (a DTensor: all must hold; a tensor: as it is)."""
        return flag

    def _view_of(self, arr, kind=None, arg=None):
        """A tensor over `arr` (a view of self's array) sharing self's version counter;
        `kind`/`arg` say how it was made, so that in-place ops on it reach self (see _view)."""
        t = Tensor._make(arr)
        t._version = self._version
        if kind is not None:
            t._view = (self, kind, arg)
        return t

    # ---- metadata --------------------------------------------------------------------------
    @property
    def shape(self):
        return Size(self._data.shape)

    def size(self, dim=None):
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[dim]

    @property
    def dtype(self):
        return dtypes.from_numpy_dtype(self._data.dtype)

    @property
    def device(self):
        return backend.device_of(self._data)

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    @property
    def is_cpu(self):
        return self.device.type == "cpu"

    # devices Phalanx never runs on (Intel XPU, Apple MPS); sparse/quantized layouts
    is_xpu = is_mps = is_sparse = is_quantized = property(lambda self: False)
    is_meta = property(lambda self: type(self._data).__name__ == "MetaArray")

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    def numel(self):
        return int(self._data.size)

    nelement = numel

    def element_size(self):
        return self._data.itemsize

    @property
    def itemsize(self):
        return self._data.itemsize

    @property
    def nbytes(self):
        return self._data.nbytes

    def stride(self, dim=None):
        s = tuple(x // self._data.itemsize for x in self._data.strides)
        return s if dim is None else s[dim]

    def is_contiguous(self):
        return bool(self._data.flags.c_contiguous)

    def is_floating_point(self):
        dt = self._data.dtype
        return dtypes.is_floating_np(dt) and dt.kind != "c"  # complex is not (PyTorch)

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def data(self):
        """A tensor sharing this one's memory, outside the graph (as in PyTorch)."""
        return self._view_of(self._data)

    @data.setter
    def data(self, value):
        self._data = value._data if isinstance(value, Tensor) else value

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self):
        return self.transpose(-2, -1)

    # ---- autograd --------------------------------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        if requires_grad and not dtypes.is_floating_np(self._data.dtype):
            raise RuntimeError(f"only tensors of floating point dtype can require gradients "
                               f"(got {self.dtype}); convert first, e.g. x.float()")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor: use .detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        if inputs is not None and not isinstance(inputs, (tuple, list)):
            inputs = [inputs]
        engine.run_backward([self], [gradient], create_graph if retain_graph is None
                            else retain_graph, create_graph, inputs=inputs)

    def register_hook(self, hook):
        """`hook(grad)` runs when the gradient of this tensor is computed; it may return a
        replacement."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require grad")
        if self.grad_fn is not None:
            return self.grad_fn.register_prehook(self._output_nr, hook)
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return RemovableHandle(self._hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """`hook(tensor)` runs on a leaf after its `.grad` has been accumulated."""
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks can only be registered on leaf "
                               "tensors")
        if self._post_hooks is None:
            self._post_hooks = []
        self._post_hooks.append(hook)
        return RemovableHandle(self._post_hooks, hook)

    def retain_grad(self):
        if self.grad_fn is None:
            return
        retained = self.grad_fn.__dict__.setdefault("retained_outputs", set())
        if self._output_nr in retained:
            return   # a second call changes nothing, as in PyTorch (`retains_grad` reads this)
        retained.add(self._output_nr)
        import weakref
        ref = weakref.ref(self)

        def keep(g):
            t = ref()
            if t is not None:
                t.grad = g.detach() if t.grad is None else t.grad + g.detach()
        self.grad_fn.register_prehook(self._output_nr, keep)

    def detach(self):
        return self._view_of(self._data)

    def detach_(self):
        if self.grad_fn is not None and self._version is None:
            raise RuntimeError("cannot detach_ a view")
        self.grad_fn = None
        self.requires_grad = False
        return self

    # ---- conversion ------------------------------------------------------------------------
    def numpy(self, *, force=False):
        if self.requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                               "tensor.detach().numpy() instead.")
        if backend.is_cupy_array(self._data):
            if not force:
                raise TypeError(f"can't convert {self.device} tensor to numpy. Use "
                                f"tensor.cpu() to copy the tensor to host memory first.")
            return backend.to_host(self._data)
        _has_data(self, "numpy()", TypeError)
        return self._data

    def __array__(self, dtype=None, copy=None):
        arr = self.detach().cpu()._data
        return arr if dtype is None else arr.astype(dtype)

    def item(self):
        _has_data(self, "item()")
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted "
                               f"to Scalar")
        return backend.host_scalar(self._data)

    def tolist(self):
        _has_data(self, "tolist()", NotImplementedError)
        return backend.to_device(self._data, "cpu").tolist()

    def to(self, *args, dtype=None, device=None, copy=False, non_blocking=False,
           memory_format=None):
        """`to(device)`, `to(dtype)`, `to(device, dtype)` or `to(other_tensor)`.

        `non_blocking=True` copies from pinned host memory (`pin_memory()`) to a GPU
        asynchronously on the current stream; other copies complete before it returns."""
        dtype, device = to_arguments(args, dtype, device)
        device = as_device(device)
        from .ops.conversion import to_copy
        from .memory_formats import check_memory_format
        check_memory_format(memory_format, "to")
        return to_copy(self, dtype=dtype, device=device, copy=copy,
                       non_blocking=non_blocking)

    def pin_memory(self, device=None):
        """A copy in page-locked host memory (a GPU reads it asynchronously); needs a GPU."""
        _warn_deprecated_device_argument("pin_memory", device)
        if self.is_cuda:
            raise RuntimeError(f"cannot pin '{self.device}' memory: only CPU tensors can be "
                               f"pinned")
        return Tensor._make(backend.pin(self._data))

    def is_pinned(self, device=None):
        _warn_deprecated_device_argument("is_pinned", device)
        return backend.is_pinned(self._data)

    def share_memory_(self):
        """Move the values into shared memory (see tensor/shared_memory.py), so that processes
        this tensor is passed to update the same numbers; a no-op when already shared, and for
        a GPU tensor, as in PyTorch."""
        if not self.is_cuda and not shared_memory.is_shared(self._data):
            self._data = shared_memory.share(self._data)
        return self

    def is_shared(self):
        """Whether the values are in shared memory (always true of a GPU tensor, as in
        PyTorch: CUDA memory crosses processes by handle)."""
        return self.is_cuda or shared_memory.is_shared(self._data)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to(backend.Device("cuda", device if isinstance(device, int) else None)
                       if not isinstance(device, (str, backend.Device)) else device)

    def type(self, dtype=None, non_blocking=False):
        """With no argument, the type's name in PyTorch's legacy spelling under Phalanx's
        prefix: 'phalanx.FloatTensor', 'phalanx.cuda.LongTensor'. With a dtype or a type name
        ('torch.DoubleTensor' and 'phalanx.DoubleTensor' alike, '...cuda...' moving to the
        GPU), the tensor cast to it."""
        if dtype is None:
            prefix = "phalanx.cuda." if self.is_cuda else "phalanx."
            return prefix + _LEGACY_TYPE_NAMES[self.dtype.name]
        if isinstance(dtype, type) and hasattr(dtype, "_legacy_type_name"):
            dtype = dtype._legacy_type_name   # t.type(phalanx.LongTensor), (phalanx.cuda.X)
        if isinstance(dtype, str):
            target, on_gpu = _parse_type_name(dtype)
            if on_gpu and not self.is_cuda:
                return self.to("cuda", target, non_blocking=non_blocking)
            if not on_gpu and self.is_cuda:
                return self.to("cpu", target, non_blocking=non_blocking)
            return self.to(target, non_blocking=non_blocking)
        return self.to(dtype, non_blocking=non_blocking)

    def type_as(self, other):
        return self.to(other.dtype)

    def _cast(self, dtype):
        """The dtype methods (`float()`, `long()`, ...): `self` when it has that dtype already,
        without `to`'s argument parsing (scripts call them on every input)."""
        if self._data.dtype == dtype.np and dtype is not dtypes.bfloat16:
            return self
        return self.to(dtype)

    def float(self):
        return self._cast(dtypes.float32)

    def double(self):
        return self._cast(dtypes.float64)

    def cfloat(self):
        return self._cast(dtypes.complex64)

    def cdouble(self):
        return self._cast(dtypes.complex128)

    def half(self):
        return self._cast(dtypes.float16)

    def bfloat16(self):
        return self._cast(dtypes.bfloat16)

    def int(self):
        return self._cast(dtypes.int32)

    def long(self):
        return self._cast(dtypes.int64)

    def short(self):
        return self._cast(dtypes.int16)

    def bool(self):
        return self._cast(dtypes.bool_)

    def byte(self):
        return self._cast(dtypes.uint8)

    # ---- new_* (same device, dtype unless given) -----------------------------------------
    def _xp(self):
        return backend.array_module(self._data)

    def _np_dtype(self, dtype):
        return self._data.dtype if dtype is None else dtypes.to_numpy_dtype(dtype)

    def _alloc(self, name, *args):
        """xp.<name>(*args) on this tensor's device (on its GPU, not the current one)."""
        d = self._data
        if type(d).__name__ == "MetaArray":        # a meta tensor's new tensors are meta
            from .meta import meta_array
            made = getattr(np, name)(*args)
            return meta_array(made.shape, made.dtype)
        if not backend.is_cupy_array(d):
            return getattr(backend.array_module(d), name)(*args)
        with d.device:
            return getattr(backend.array_module(d), name)(*args)

    def new_zeros(self, *size, dtype=None, requires_grad=False):
        return Tensor._make(self._alloc("zeros", _size(size), self._np_dtype(dtype)),
                            requires_grad)

    def new_ones(self, *size, dtype=None, requires_grad=False):
        return Tensor._make(self._alloc("ones", _size(size), self._np_dtype(dtype)),
                            requires_grad)

    def new_empty(self, *size, dtype=None, requires_grad=False):
        return Tensor._make(self._alloc("empty", _size(size), self._np_dtype(dtype)),
                            requires_grad)

    def new_full(self, size, fill_value, dtype=None, requires_grad=False):
        return Tensor._make(self._alloc("full", _size((size,)), fill_value,
                                        self._np_dtype(dtype)), requires_grad)

    def new_tensor(self, data, dtype=None, requires_grad=False):
        from .creation import tensor
        return tensor(data, dtype=dtype or self.dtype, device=self.device,
                      requires_grad=requires_grad)

    # ---- DLPack ----------------------------------------------------------------------------
    def __dlpack__(self, *args, **kwargs):
        return self.detach()._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    # ---- Python protocol -------------------------------------------------------------------
    __hash__ = object.__hash__
    __array_priority__ = 1000  # NumPy scalars and arrays defer to our reflected operators

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))     # one op for all the rows, as PyTorch

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self._data.size} elements is "
                               f"ambiguous; use .any() or .all()")
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __complex__(self):
        return complex(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an "
                            "index")
        return int(self.item())

    def __repr__(self):
        from .printing import tensor_repr
        return tensor_repr(self)

    def __format__(self, format_spec):
        # a 0-d tensor formats as its number ('{:.2f}'), others as str() (as in PyTorch)
        if self._data.ndim == 0:
            return self.item().__format__(format_spec)
        return object.__format__(self, format_spec)

    def __reduce_ex__(self, protocol):
        # pickling (e.g. DataLoader workers) carries the array and requires_grad only
        return (_rebuild, (backend.to_device(self._data, "cpu"), str(self.device),
                           self.requires_grad))

    def __deepcopy__(self, memo):
        if self.grad_fn is not None:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) "
                               "support the deepcopy protocol")
        t = Tensor._make(self._data.copy(), self.requires_grad)
        if self.grad is not None:
            t.grad = self.grad.__deepcopy__(memo)
        memo[id(self)] = t
        return t


_LEGACY_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor",
                      "float16": "HalfTensor", "bfloat16": "BFloat16Tensor",
                      "uint8": "ByteTensor", "int8": "CharTensor",
                      "int16": "ShortTensor", "int32": "IntTensor", "int64": "LongTensor",
                      "bool": "BoolTensor", "complex64": "ComplexFloatTensor",
                      "complex128": "ComplexDoubleTensor"}
_DTYPE_OF_TYPE_NAME = {v: k for k, v in _LEGACY_TYPE_NAMES.items()}


def _warn_deprecated_device_argument(method, device):
    """PyTorch still accepts `pin_memory(device)`/`is_pinned(device)` but deprecates it: pinned
    memory serves any GPU, so the device changes nothing, and it says so as PyTorch does."""
    if device is not None:
        warnings.warn(f"The argument 'device' of Tensor.{method}() is deprecated. Please do not "
                      f"pass this argument.", DeprecationWarning, stacklevel=3)


def _parse_type_name(name):
    """'torch.cuda.FloatTensor' or 'phalanx.FloatTensor' -> (phalanx dtype, on_gpu)."""
    parts = name.split(".")
    ok = len(parts) in (2, 3) and parts[0] in ("torch", "phalanx") and \
        (len(parts) == 2 or parts[1] == "cuda") and parts[-1] in _DTYPE_OF_TYPE_NAME
    if not ok:
        raise ValueError(f"invalid type: {name!r}; expected e.g. 'phalanx.FloatTensor' or "
                         f"'torch.cuda.LongTensor' (one of "
                         f"{', '.join(sorted(_DTYPE_OF_TYPE_NAME))})")
    return dtypes._by_name(_DTYPE_OF_TYPE_NAME[parts[-1]]), len(parts) == 3


def to_arguments(args, dtype, device):
    """The (dtype, device) of `to`'s positional forms: a device, a dtype, both, or a tensor."""
    for a in args:
        if isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
        elif isinstance(a, dtypes.dtype) or a in (float, int, bool) or isinstance(a, np.dtype):
            dtype = a
        else:
            device = a
    return dtype, device


def as_device(device):
    """A device from a device argument (None stays None): a bare int means that CUDA device,
    as in PyTorch. A CUDA device without a usable GPU is an error that names it."""
    if device is None:
        return None
    bare_int = isinstance(device, (int, np.integer)) and not isinstance(device, bool)
    if bare_int:
        if device < 0:
            raise RuntimeError(f"Device index must not be negative, got {device}")
        device = backend.Device("cuda", int(device))
    else:
        device = backend.Device(device)
    if device.type == "cuda":
        try:
            backend.cupy()
        except RuntimeError as e:
            note = " (a bare integer device means cuda:N, as in PyTorch)" if bare_int else ""
            raise RuntimeError(f"can't use device {device}{note}: {e}") from None
    return device


def _rebuild(arr, device, requires_grad):
    return Tensor._make(backend.to_device(arr, device), requires_grad)


def _has_data(t, what, kind=RuntimeError):
    if type(t._data).__name__ == "MetaArray":
        from .meta import no_data
        raise no_data(f"Tensor.{what} cannot be called on meta tensors", kind)


class Size(tuple):
    """The shape of a tensor: a tuple, printed as `phalanx.Size([2, 3])`."""

    def __repr__(self):
        return f"phalanx.Size({list(self)})"

    # shapes built from shapes stay shapes, as in PyTorch
    def __add__(self, other):
        return Size(tuple(self) + tuple(other))

    def __radd__(self, other):
        return Size(tuple(other) + tuple(self))

    def __mul__(self, n):
        return Size(tuple(self) * n)

    __rmul__ = __mul__

    def __getitem__(self, index):
        item = tuple.__getitem__(self, index)
        return Size(item) if isinstance(index, slice) else item

    def numel(self):
        n = 1
        for s in self:
            n *= s
        return n


def _size(size, keyword=None):
    """Accept f(2, 3), f((2, 3)), f([2, 3]) and f(Size), or f(size=(2, 3)) (`keyword`)."""
    if keyword is not None:
        if size:
            raise TypeError("the size was given both positionally and as size=")
        size = (keyword,)
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(s) for s in size)


# the names users see (`type(t)` prints <class 'phalanx.Tensor'>, as PyTorch's torch.Tensor)
Tensor.__module__ = Size.__module__ = "phalanx"

__all__ = ["Tensor", "Size"]
