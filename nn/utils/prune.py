"""`torch.nn.utils.prune`: zero out parts of a module's parameters, through a mask.

Pruning `module.weight` replaces the parameter by `weight_orig` (the same Parameter, which the
optimizer keeps training) and a buffer `weight_mask` of ones and zeros; a forward pre-hook
(the pruning method itself) sets the plain attribute `weight = weight_mask * weight_orig`
before every forward, so the pruned entries stay zero and get no gradient. Pruning the same
parameter again chains the methods in a `PruningContainer`: each new one chooses only among
the entries still unpruned (all of them, for a structured method, in the channels still
kept). `remove(module, "weight")` makes the pruning permanent: `weight` is a Parameter again,
holding the masked values. State dicts hold `weight_orig` and `weight_mask`, as PyTorch's.

Methods: `Identity`, `RandomUnstructured`, `L1Unstructured` (the smallest magnitudes),
`RandomStructured`, `LnStructured` (the channels along `dim` of smallest Ln norm),
`CustomFromMask`; an `amount` is a fraction of the entries (or channels) to prune, rounded to
the nearest count, or a count. `global_unstructured` prunes across several parameters at
once (e.g. the 20% smallest weights of the whole model).
"""
import abc
import numbers

import numpy as np

from ...tensor import Tensor, ones_like, rand, rand_like
from ...tensor.backend import array_module


class BasePruningMethod(abc.ABC):
    """A way of choosing a mask: subclasses define `compute_mask(t, default_mask)` and
    `PRUNING_TYPE` ("unstructured", "structured" with a `dim`, or "global")."""

    _tensor_name = None

    def __call__(self, module, inputs):
        setattr(module, self._tensor_name, self.apply_mask(module))

    @abc.abstractmethod
    def compute_mask(self, t, default_mask):
        """The new mask for `t`, given the mask it already has."""

    def apply_mask(self, module):
        """The pruned tensor: the module's `<name>_orig` times its `<name>_mask`."""
        if self._tensor_name is None:
            raise AssertionError(f"Module {module} has to be pruned")
        mask = getattr(module, self._tensor_name + "_mask")
        orig = getattr(module, self._tensor_name + "_orig")
        return mask.to(orig.dtype) * orig

    @classmethod
    def apply(cls, module, name, *args, importance_scores=None, **kwargs):
        """Prune `module.<name>` with a new `cls(*args, **kwargs)` (chained after any pruning
        it already has); `importance_scores` (the parameter's shape) rank the entries instead
        of the parameter's own values."""
        method = _chain(module, name, cls(*args, **kwargs))
        orig = getattr(module, name)
        if importance_scores is None:
            importance_scores = orig
        elif tuple(importance_scores.shape) != tuple(orig.shape):
            raise AssertionError(f"importance_scores should have the same shape as parameter "
                                 f"{name} of {module}, got {tuple(importance_scores.shape)} vs "
                                 f"{tuple(orig.shape)}")
        first = not isinstance(method, PruningContainer)
        if first:
            module.register_parameter(name + "_orig", orig)
            del module._parameters[name]
            default_mask = ones_like(orig).detach()
        else:
            default_mask = getattr(module, name + "_mask").detach().clone()
        try:
            mask = method.compute_mask(importance_scores.detach(), default_mask=default_mask)
            module.register_buffer(name + "_mask", mask)
            setattr(module, name, method.apply_mask(module))
            module.register_forward_pre_hook(method)
        except Exception:
            if first:                          # leave the module as it was
                module.register_parameter(name, module._parameters.pop(name + "_orig"))
            raise
        return method

    def prune(self, t, default_mask=None, importance_scores=None):
        """`t` with this method's mask applied (no module involved)."""
        scores = t if importance_scores is None else importance_scores
        if tuple(scores.shape) != tuple(t.shape):
            raise AssertionError(f"importance_scores should have the same shape as tensor t, "
                                 f"got {tuple(scores.shape)} vs {tuple(t.shape)}")
        mask = ones_like(t) if default_mask is None else default_mask
        return t * self.compute_mask(scores, default_mask=mask)

    def remove(self, module):
        """Make the pruning permanent: `<name>` is the Parameter again, holding masked values."""
        if self._tensor_name is None:
            raise AssertionError(f"Module {module} has to be pruned before pruning can be "
                                 f"removed")
        pruned = self.apply_mask(module)
        if self._tensor_name in module.__dict__:
            delattr(module, self._tensor_name)
        orig = module._parameters.pop(self._tensor_name + "_orig")
        orig.data = pruned.detach()
        del module._buffers[self._tensor_name + "_mask"]
        setattr(module, self._tensor_name, orig)


def _pruning_hooks(module):
    """(position in the forward pre-hooks, method) of the module's pruning methods."""
    return [(i, hook) for i, (hook, _) in enumerate(module._forward_pre_hooks)
            if isinstance(hook, BasePruningMethod)]


def _chain(module, name, method):
    """`method` for `module.<name>`, after the pruning it already has (its hook removed: the
    chain's comes back when applied)."""
    method._tensor_name = name
    found = [(i, h) for i, h in _pruning_hooks(module) if h._tensor_name == name]
    if len(found) > 1:
        raise AssertionError(f"Avoid adding multiple pruning hooks to the same tensor {name} of "
                             f"module {module}. Use a PruningContainer.")
    if not found:
        return method
    i, old = found[0]
    del module._forward_pre_hooks[i]
    container = old if isinstance(old, PruningContainer) else PruningContainer(old)
    container.add_pruning_method(method)
    return container


class PruningContainer(BasePruningMethod):
    """Pruning methods applied one after the other to the same parameter; the mask is the
    last one's, chosen among what the earlier ones left."""

    def __init__(self, *methods):
        self._pruning_methods = ()
        if len(methods) == 1:
            self._tensor_name = methods[0]._tensor_name
        for m in methods:
            self.add_pruning_method(m)

    def add_pruning_method(self, method):
        if method is not None and not isinstance(method, BasePruningMethod):
            raise TypeError(f"{type(method)} is not a BasePruningMethod subclass")
        if method is not None and self._tensor_name != method._tensor_name:
            raise ValueError(f"Can only add pruning methods acting on the parameter named "
                             f"'{self._tensor_name}' to PruningContainer {self}. Found "
                             f"'{method._tensor_name}'")
        self._pruning_methods += (method,)

    def __len__(self):
        return len(self._pruning_methods)

    def __iter__(self):
        return iter(self._pruning_methods)

    def __getitem__(self, idx):
        return self._pruning_methods[idx]

    def compute_mask(self, t, default_mask):
        method = self._pruning_methods[-1]
        mask = default_mask.to(t.dtype)
        if method.PRUNING_TYPE == "unstructured":
            where = (mask == 1)._data                      # the entries still there
        elif method.PRUNING_TYPE == "structured":
            if not hasattr(method, "dim"):
                raise AttributeError('Pruning methods of PRUNING_TYPE "structured" need to '
                                     'have the attribute `dim` defined.')
            dim = method.dim + t.ndim if method.dim < 0 else method.dim
            others = tuple(d for d in range(t.ndim) if d != dim)
            where = [slice(None)] * t.ndim
            where[dim] = (mask._data.sum(axis=others) != 0)  # the channels still there
            where = tuple(where)
        elif method.PRUNING_TYPE == "global":
            where = (slice(None),) * t.ndim
        else:
            raise ValueError(f"Unrecognized PRUNING_TYPE {method.PRUNING_TYPE}")
        part = method.compute_mask(Tensor._make(t._data[where]),
                                   default_mask=Tensor._make(mask._data[where]))
        out = mask._data.copy()
        out[where] = part._data.astype(out.dtype)
        return Tensor._make(out)


class Identity(BasePruningMethod):
    """Prunes nothing: the mask of ones (a way to see pruning's reparametrisation)."""
    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t, default_mask):
        return default_mask

    @classmethod
    def apply(cls, module, name):
        return super().apply(module, name)


class _Unstructured(BasePruningMethod):
    """`amount` of the entries: those that `_scores` ranks first."""
    PRUNING_TYPE = "unstructured"

    def __init__(self, amount):
        _check_amount(amount)
        self.amount = amount

    def compute_mask(self, t, default_mask):
        scores, largest = self._scores(t)
        return _zero_flat(default_mask, _top(scores.reshape(-1), _count(self.amount, t.numel()),
                                             largest))


class RandomUnstructured(_Unstructured):
    """`amount` of the entries, chosen at random (the global generator)."""

    def _scores(self, t):
        return rand_like(t)._data, True

    @classmethod
    def apply(cls, module, name, amount):
        return super().apply(module, name, amount=amount)


class L1Unstructured(_Unstructured):
    """`amount` of the entries, those of the smallest magnitude."""

    def _scores(self, t):
        return array_module(t._data).abs(t._data), False

    @classmethod
    def apply(cls, module, name, amount, importance_scores=None):
        return super().apply(module, name, amount=amount, importance_scores=importance_scores)


class _Structured(BasePruningMethod):
    """`amount` of the channels along `dim`: all but those `_kept` keeps."""
    PRUNING_TYPE = "structured"

    def compute_mask(self, t, default_mask):
        _check_structured(t, self.dim)
        channels = t.shape[self.dim]
        k = _count(self.amount, channels)
        if k == 0:
            return default_mask
        return _keep_channels(t, self.dim, self._kept(t, channels, k), default_mask)


class RandomStructured(_Structured):
    """`amount` of the channels along `dim`, chosen at random (the global generator)."""

    def __init__(self, amount, dim=-1):
        _check_amount(amount)
        self.amount, self.dim = amount, dim

    def _kept(self, t, channels, k):
        prob = rand(channels, device=t.device)._data
        return prob > array_module(prob).sort(prob)[k - 1]

    @classmethod
    def apply(cls, module, name, amount, dim=-1):
        return super().apply(module, name, amount=amount, dim=dim)


class LnStructured(_Structured):
    """`amount` of the channels along `dim`, those of the smallest Ln norm (`n`: a number,
    inf, -inf or 'fro')."""

    def __init__(self, amount, n, dim=-1):
        _check_amount(amount)
        self.amount, self.n, self.dim = amount, n, dim

    def _kept(self, t, channels, k):
        xp = array_module(t._data)
        rows = xp.moveaxis(t._data, self.dim, 0).reshape(channels, -1)
        norms = xp.linalg.norm(rows, ord=2 if self.n == "fro" else self.n, axis=1)
        keep = xp.zeros(channels, dtype=bool)
        keep[_top(norms, channels - k, largest=True)] = True
        return keep

    @classmethod
    def apply(cls, module, name, amount, n, dim, importance_scores=None):
        return super().apply(module, name, amount=amount, n=n, dim=dim,
                             importance_scores=importance_scores)


class CustomFromMask(BasePruningMethod):
    """The mask given (times the one the parameter already has)."""
    PRUNING_TYPE = "global"

    def __init__(self, mask):
        self.mask = mask

    def compute_mask(self, t, default_mask):
        if tuple(default_mask.shape) != tuple(self.mask.shape):
            raise AssertionError(f"default_mask shape {tuple(default_mask.shape)} must match "
                                 f"self.mask shape {tuple(self.mask.shape)}")
        return default_mask * self.mask.to(default_mask.dtype)

    @classmethod
    def apply(cls, module, name, mask):
        return super().apply(module, name, mask=mask)


# --- the functional forms ------------------------------------------------------------------
def identity(module, name):
    Identity.apply(module, name)
    return module


def random_unstructured(module, name, amount):
    RandomUnstructured.apply(module, name, amount)
    return module


def l1_unstructured(module, name, amount, importance_scores=None):
    L1Unstructured.apply(module, name, amount=amount, importance_scores=importance_scores)
    return module


def random_structured(module, name, amount, dim):
    RandomStructured.apply(module, name, amount, dim)
    return module


def ln_structured(module, name, amount, n, dim, importance_scores=None):
    LnStructured.apply(module, name, amount, n, dim, importance_scores=importance_scores)
    return module


def custom_from_mask(module, name, mask):
    CustomFromMask.apply(module, name, mask)
    return module


def global_unstructured(parameters, pruning_method, importance_scores=None, **kwargs):
    """Prune the (module, name) pairs of `parameters` together: `pruning_method(**kwargs)`
    (an unstructured method class) chooses among all their entries at once (by
    `importance_scores[(module, name)]` where given)."""
    from .convert_parameters import parameters_to_vector
    parameters = list(parameters)
    importance_scores = {} if importance_scores is None else importance_scores
    if not isinstance(importance_scores, dict):
        raise TypeError("global_unstructured(): importance_scores must be of type dict")
    scores = parameters_to_vector([importance_scores.get((m, n), getattr(m, n)).detach()
                                   for m, n in parameters])
    masks = parameters_to_vector([getattr(m, n + "_mask") if hasattr(m, n + "_mask")
                                  else ones_like(getattr(m, n)).detach() for m, n in parameters])
    method = pruning_method(**kwargs)
    if method.PRUNING_TYPE != "unstructured":
        raise TypeError(f'Only "unstructured" PRUNING_TYPE supported for the `pruning_method`. '
                        f'Found method {pruning_method} of type {method.PRUNING_TYPE}')
    container = PruningContainer()
    container._tensor_name = method._tensor_name = "temp"
    container.add_pruning_method(method)
    final = container.compute_mask(scores, masks)
    start = 0
    for module, name in parameters:
        param = getattr(module, name)
        custom_from_mask(module, name, final[start:start + param.numel()].view_as(param))
        start += param.numel()


def remove(module, name):
    """Make the pruning of `module.<name>` permanent (see `BasePruningMethod.remove`)."""
    for i, hook in _pruning_hooks(module):
        if hook._tensor_name == name:
            hook.remove(module)
            del module._forward_pre_hooks[i]
            return module
    raise ValueError(f"Parameter '{name}' of module {module} has to be pruned before pruning "
                     f"can be removed")


def is_pruned(module):
    """Whether `module` or one of its submodules has a pruned parameter."""
    return any(_pruning_hooks(m) for m in module.modules())


# --- helpers -----------------------------------------------------------------------------------
def _check_amount(amount):
    if not isinstance(amount, numbers.Real):
        raise TypeError(f"Invalid type for amount: {amount}. Must be int or float.")
    if (isinstance(amount, numbers.Integral) and amount < 0) or \
            (not isinstance(amount, numbers.Integral) and not 0.0 <= float(amount) <= 1.0):
        raise ValueError(f"amount={amount} should either be a float in the range [0, 1] or a "
                         f"non-negative integer")


def _count(amount, size):
    """How many of `size` to prune: the count given, or the fraction rounded (half to even)."""
    k = amount if isinstance(amount, numbers.Integral) else round(amount * size)
    if k > size:
        raise ValueError(f"amount={amount} should be smaller than the number of parameters to "
                         f"prune={size}")
    return int(k)


def _check_structured(t, dim):
    if t.ndim <= 1:
        raise ValueError(f"Structured pruning can only be applied to multidimensional tensors. "
                         f"Found tensor of shape {tuple(t.shape)} with {t.ndim} dims")
    if dim >= t.ndim:
        raise IndexError(f"Invalid index {dim} for tensor of size {tuple(t.shape)}")


def _top(scores, k, largest):
    """Indices of the `k` largest (or smallest) of the 1-d array `scores`."""
    xp = array_module(scores)
    if k == 0:
        return xp.zeros(0, dtype=np.int64)
    order = xp.argsort(-scores if largest else scores, kind="stable")
    return order[:k]


def _zero_flat(default_mask, indices):
    mask = default_mask._data.copy()
    mask.reshape(-1)[indices] = 0
    return Tensor._make(mask)


def _keep_channels(t, dim, keep, default_mask):
    """Ones in the channels `keep` (a boolean per index of `dim`), times the mask so far."""
    xp = array_module(t._data)
    shape = [1] * t.ndim
    shape[dim] = t.shape[dim]
    mask = xp.broadcast_to(keep.reshape(shape), t.shape).astype(t._data.dtype)
    return Tensor._make(mask * default_mask._data.astype(mask.dtype))
