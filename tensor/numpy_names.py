"""NumPy's spellings of two arguments, which PyTorch accepts wherever a function or method
takes `dim` or `keepdim`: `x.sum(axis=1, keepdims=True)`, `torch.cat(xs, axis=0)`.

Each such function is wrapped once, here; a call that uses neither spelling pays one
dictionary test."""
import functools
import inspect

ALIASES = (("axis", "dim"), ("keepdims", "keepdim"))


def takes_dim(fn):
    """Whether `fn` has a `dim` or `keepdim` parameter (or says it takes one through
    **kwargs: `fn.takes_dim`) and no NumPy spelling of its own."""
    if getattr(fn, "takes_dim", False):
        return True
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return ("dim" in params or "keepdim" in params) and "axis" not in params


def accept_numpy_names(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        if kwargs and ("axis" in kwargs or "keepdims" in kwargs):
            for alias, name in ALIASES:
                if alias in kwargs:
                    if name in kwargs:
                        raise TypeError(f"{fn.__name__}() got multiple values for argument "
                                        f"'{name}' (also given as '{alias}')")
                    kwargs[name] = kwargs.pop(alias)
        return fn(*args, **kwargs)
    return call


def apply(namespace, names):
    """Wrap the functions `names` of `namespace` (a module's globals) that take `dim`."""
    for name in names:
        fn = namespace.get(name)
        if callable(fn) and not isinstance(fn, type) and takes_dim(fn):
            namespace[name] = accept_numpy_names(fn)


def apply_to_methods(cls):
    for name, fn in list(vars(cls).items()):
        if not name.startswith("__") and inspect.isfunction(fn) and takes_dim(fn):
            setattr(cls, name, accept_numpy_names(fn))
