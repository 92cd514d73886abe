"""`Variable`: PyTorch's pre-0.4 wrapper, still accepted by old scripts. Since 0.4 every tensor
is a Variable: `Variable(t, requires_grad=...)` is `t` detached (sharing its memory) as a new
leaf, and `isinstance(t, Variable)` holds for every tensor."""
import warnings

from .function import TensorBase


class _VariableMeta(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, TensorBase)


class Variable(metaclass=_VariableMeta):
    def __new__(cls, data=None, requires_grad=False, volatile=False):
        if volatile:
            warnings.warn("volatile was removed and now has no effect. Use `with "
                          "phalanx.no_grad():` instead.", UserWarning, stacklevel=2)
        if not isinstance(data, TensorBase):
            raise TypeError(f"Variable data has to be a tensor, but got "
                            f"{type(data).__name__}")
        out = data.detach()
        return out.requires_grad_(True) if requires_grad else out
