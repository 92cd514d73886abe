"""`weight_norm` / `remove_weight_norm` (PyTorch's older API, deprecated there but accepted):
a weight re-expressed as g * v / ||v||, with the norm over every dim except `dim`. The
module keeps `<name>_g` and `<name>_v` as parameters (the same state-dict keys as PyTorch) and
recomputes `<name>` from them before every forward, through a forward pre-hook."""
import warnings

from ..parameter import Parameter


def norm_except_dim(v, pow=2, dim=0):
    """The p-norm of v over all dims except `dim` (kept as size-1 dims); dim=-1: the whole
    tensor's norm."""
    if dim == -1:
        return v.norm(pow)
    dim = dim % v.ndim
    moved = v.movedim(dim, 0)
    norms = moved.reshape(moved.shape[0], -1).norm(pow, dim=1)
    shape = [1] * v.ndim
    shape[dim] = v.shape[dim]
    return norms.reshape(*shape)


def _weight_norm(v, g, dim=0):
    return v * (g / norm_except_dim(v, 2, dim))


class WeightNorm:
    def __init__(self, name, dim):
        self.name = name
        self.dim = -1 if dim is None else dim

    def compute_weight(self, module):
        g = getattr(module, self.name + "_g")
        v = getattr(module, self.name + "_v")
        return _weight_norm(v, g, self.dim)

    @staticmethod
    def apply(module, name, dim):
        for hook, _ in module._forward_pre_hooks:
            if isinstance(hook, WeightNorm) and hook.name == name:
                raise RuntimeError(f"Cannot register two weight_norm hooks on the same "
                                   f"parameter {name}")
        fn = WeightNorm(name, dim)
        weight = getattr(module, name)
        if not isinstance(weight, Parameter):
            raise TypeError(f"weight_norm: {type(module).__name__}.{name} is not a "
                            f"Parameter (got {type(weight).__name__})")
        del module._parameters[name]
        module.register_parameter(name + "_g",
                                  Parameter(norm_except_dim(weight, 2, fn.dim).detach()))
        module.register_parameter(name + "_v", Parameter(weight.detach()))
        setattr(module, name, fn.compute_weight(module))
        module.register_forward_pre_hook(fn)
        return fn

    def remove(self, module):
        weight = self.compute_weight(module).detach()
        delattr(module, self.name)
        del module._parameters[self.name + "_g"]
        del module._parameters[self.name + "_v"]
        setattr(module, self.name, Parameter(weight))

    def __call__(self, module, inputs):
        setattr(module, self.name, self.compute_weight(module))


def weight_norm(module, name="weight", dim=0):
    """Reparameterise `module.<name>` as g * v / ||v|| (norm over all dims but `dim`; None
    for the whole tensor). Returns the module."""
    warnings.warn("`torch.nn.utils.weight_norm` is deprecated in favor of "
                  "`torch.nn.utils.parametrizations.weight_norm`.", FutureWarning,
                  stacklevel=2)
    WeightNorm.apply(module, name, dim)
    return module


def remove_weight_norm(module, name="weight"):
    """Undo weight_norm: `module.<name>` becomes a plain parameter again."""
    for entry in list(module._forward_pre_hooks):
        hook = entry[0]
        if isinstance(hook, WeightNorm) and hook.name == name:
            hook.remove(module)
            module._forward_pre_hooks.remove(entry)
            return module
    raise ValueError(f"weight_norm of '{name}' not found in {module}")
