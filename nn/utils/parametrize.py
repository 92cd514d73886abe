"""`phalanx.nn.utils.parametrize`: a tensor of a module recomputed from other tensors on every
access (PyTorch's parametrizations): `register_parametrization(m, "weight", P())` moves the
weight to `m.parametrizations.weight.original` (or `original0, original1, ...` when P has a
`right_inverse` returning several tensors) and makes `m.weight` read as P(original). Assigning
to `m.weight` stores `right_inverse(value)` in the originals. The state-dict keys are
PyTorch's (`parametrizations.weight.original...`), so its checkpoints load.

As in PyTorch, the module's class is swapped for a subclass holding one property per
parametrized name (only that module is affected)."""
from contextlib import contextmanager

from ...autograd import no_grad
from ...tensor import Tensor
from ..modules.container import ModuleDict, ModuleList
from ..parameter import Parameter

__all__ = ["ParametrizationList", "cached", "is_parametrized", "register_parametrization",
           "remove_parametrizations", "type_before_parametrizations"]

_cache = {}             # (id(module), name) -> the value, while `cached()` is active
_cache_depth = [0]


@contextmanager
def cached():
    """Compute each parametrized tensor once inside the block (a weight read in several
    places of a step, or by every time step of an RNN), as PyTorch's context manager."""
    _cache_depth[0] += 1
    try:
        yield
    finally:
        _cache_depth[0] -= 1
        if not _cache_depth[0]:
            _cache.clear()


class ParametrizationList(ModuleList):
    """The chain of parametrizations of one tensor, and the tensor(s) it starts from."""

    def __init__(self, modules, original, unsafe=False):
        super().__init__(modules)
        self.unsafe = unsafe
        with no_grad():
            new = original
            for module in reversed(list(self)):
                if hasattr(module, "right_inverse"):
                    try:
                        new = module.right_inverse(new)
                    except NotImplementedError:  # as PyTorch: the original is kept as it is
                        pass
        self.is_tensor = isinstance(new, Tensor)
        self.ntensors = 1 if self.is_tensor else len(new)
        grad = original.requires_grad
        if self.is_tensor:
            if tuple(new.shape) != tuple(original.shape) or new.dtype is not original.dtype:
                if not unsafe:
                    raise ValueError(f"When `right_inverse` outputs one tensor, it may not "
                                     f"change the shape or dtype (got {list(new.shape)}, "
                                     f"{new.dtype}; expected {list(original.shape)}, "
                                     f"{original.dtype})")
            _store(self, "original", original if new is original else new, grad)
        else:
            for i, t in enumerate(new):
                _store(self, f"original{i}", t, grad)

    def right_inverse(self, value):
        with no_grad():
            for module in reversed(list(self)):
                if hasattr(module, "right_inverse"):
                    value = module.right_inverse(value)
                elif not self.unsafe:
                    raise RuntimeError(f"parametrization {type(module).__name__} does not "
                                       f"implement right_inverse.")
            if self.is_tensor:
                self.original.copy_(value)
            else:
                for i, t in enumerate(value):
                    getattr(self, f"original{i}").copy_(t)

    def forward(self):
        if self.is_tensor:
            x = self[0](self.original)
        else:
            x = self[0](*(getattr(self, f"original{i}") for i in range(self.ntensors)))
        for module in list(self)[1:]:
            x = module(x)
        return x


def _store(plist, name, tensor, requires_grad):
    """Keep `tensor` as a parameter of `plist` (a buffer if it came from one without grad)."""
    if isinstance(tensor, Parameter):
        setattr(plist, name, tensor)
    else:
        setattr(plist, name, Parameter(tensor.detach().clone(), requires_grad=requires_grad))


def _property(name):
    def get(self):
        if not _cache_depth[0]:
            return self.parametrizations[name]()
        key = (id(self), name)
        if key not in _cache:
            _cache[key] = self.parametrizations[name]()
        return _cache[key]

    def set_(self, value):
        self.parametrizations[name].right_inverse(value)
    return property(get, set_)


def is_parametrized(module, tensor_name=None):
    plists = module.__dict__.get("_modules", {}).get("parametrizations")
    if plists is None or not isinstance(plists, ModuleDict):
        return False
    return True if tensor_name is None else tensor_name in plists


def type_before_parametrizations(module):
    return module.__class__.__bases__[0] if is_parametrized(module) else type(module)


def register_parametrization(module, tensor_name, parametrization, *, unsafe=False):
    """Make `module.<tensor_name>` read as parametrization(original); returns the module."""
    if is_parametrized(module, tensor_name):
        plist = module.parametrizations[tensor_name]
        before = getattr(module, tensor_name).detach()
        plist.append(parametrization)
        if not unsafe:
            _check_output(module, tensor_name, before)
        return module
    if tensor_name in module._parameters:
        original = module._parameters.pop(tensor_name)
    elif tensor_name in module._buffers:
        original = module._buffers.pop(tensor_name)
    else:
        raise ValueError(f"Module '{type(module).__name__}' parametrization does not exist: "
                         f"'{tensor_name}' is neither a parameter nor a buffer of the module")
    if not is_parametrized(module):
        cls = type(module)
        module.__class__ = type(f"Parametrized{cls.__name__}", (cls,), {})
        module.parametrizations = ModuleDict()
    module.parametrizations[tensor_name] = ParametrizationList([parametrization], original,
                                                               unsafe=unsafe)
    setattr(type(module), tensor_name, _property(tensor_name))
    if not unsafe:
        _check_output(module, tensor_name, original)
    return module


def _check_output(module, tensor_name, original):
    """PyTorch's check of a new parametrization: run it once; it must give a tensor of the
    original's shape and dtype unless `unsafe=True`."""
    with no_grad():
        value = getattr(module, tensor_name)
    if not isinstance(value, Tensor):
        raise ValueError(f"A parametrization must return a tensor. Got {type(value).__name__}.")
    if value.dtype is not original.dtype:
        raise ValueError(f"Registering a parametrization may not change the dtype of the "
                         f"tensor, unless the `unsafe` flag is enabled.\nunparametrized dtype: "
                         f"{original.dtype}\nparametrized dtype: {value.dtype}")
    if tuple(value.shape) != tuple(original.shape):
        raise ValueError(f"Registering a parametrization may not change the shape of the "
                         f"tensor, unless the `unsafe` flag is enabled.\nunparametrized shape: "
                         f"{list(original.shape)}\nparametrized shape: {list(value.shape)}")


def remove_parametrizations(module, tensor_name, leave_parametrized=True):
    """Put back a plain parameter: the current parametrized value (leave_parametrized=True)
    or the stored original."""
    if not is_parametrized(module, tensor_name):
        raise ValueError(f"Module {type(module).__name__} does not have a parametrization on "
                         f"{tensor_name}")
    plist = module.parametrizations[tensor_name]
    with no_grad():
        if leave_parametrized:
            value = Parameter(getattr(module, tensor_name).detach().clone())
        elif plist.is_tensor:
            value = plist.original
        else:
            raise ValueError("Cannot leave unparametrized (`leave_parametrized=False`) a tensor "
                             "that is parametrized in terms of a sequence of tensors.")
    delattr(type(module), tensor_name)
    del module.parametrizations[tensor_name]
    module.register_parameter(tensor_name, value if isinstance(value, Parameter)
                              else Parameter(value))
    if len(module.parametrizations) == 0:
        del module._modules["parametrizations"]
        module.__class__ = module.__class__.__bases__[0]
    return module
