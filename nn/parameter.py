"""`Parameter`: a tensor that a `Module` registers as one of its learnable weights."""
import numpy as np

from ..tensor import Tensor, backend, dtypes


class Parameter(Tensor):
    """A leaf tensor that `Module.__setattr__` registers; `Parameter(t)` shares `t`'s memory.

    Ops on a Parameter return plain tensors, as in PyTorch; `isinstance(p, Parameter)` is how
    modules, optimizers and `state_dict` recognise weights.
    """

    def __new__(cls, data=None, *args, **kwargs):
        as_parameter = getattr(data, "_as_parameter", None)   # a DTensor stays one
        if as_parameter is not None:
            return as_parameter(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            arr = np.empty((0,), dtypes.get_default_dtype().np)
        elif isinstance(data, Tensor):
            arr = data._data
        else:
            from ..tensor.creation import _to_array
            arr = _to_array(data)
        self._init(arr, requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        p = Parameter(Tensor._make(self._data.copy()), self.requires_grad)
        if self.grad is not None:
            p.grad = self.grad.__deepcopy__(memo)
        memo[id(self)] = p
        return p

    def __reduce_ex__(self, protocol):
        return (_rebuild_parameter, (backend.to_device(self._data, "cpu"), str(self.device),
                                     self.requires_grad))


def _rebuild_parameter(arr, device, requires_grad):
    return Parameter(Tensor._make(backend.to_device(arr, device)), requires_grad)


class Buffer(Tensor):
    """Marks a tensor as a buffer when assigned to a module attribute (`nn.Buffer`)."""

    def __init__(self, data, persistent=True):
        self._init(data._data if isinstance(data, Tensor) else np.asarray(data))
        self.persistent = persistent


def __getattr__(name):
    # torch.nn.parameter's lazy-parameter names; they live with the lazy layers that use them
    if name in ("UninitializedParameter", "UninitializedBuffer", "UninitializedTensorMixin"):
        from .modules import lazy
        return getattr(lazy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
