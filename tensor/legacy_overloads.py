"""PyTorch's deprecated overloads that old scripts still call, and PyTorch still runs (with a
warning where it warns):

    add(input, value, other) / sub(...)        input +/- value * other   (p.add_(-lr, grad))
    addcmul(input, value, t1, t2) / addcdiv     input + value * t1 * t2 (or / t2)
    var(input, unbiased) / var(input, dim, unbiased, keepdim)   and the same for std,
    var_mean, std_mean (which also take `unbiased=`)

Each wrapper turns the old form into the current call; the current forms pass through.
"""
import numbers

from .ops import elementwise as ew, reduction as red
from .tensor import Tensor
from .user_warnings import warn_user


def _warn(name, old, new):
    warn_user(f"This overload of {name} is deprecated:\n\t{name}({old})\nConsider using one "
              f"of the following signatures instead:\n\t{name}({new})")


def _is_value(v):
    return isinstance(v, numbers.Number) and not isinstance(v, bool)


def _alpha_op(fn, name):
    def op(input, *args, **kwargs):
        if len(args) == 2 and _is_value(args[0]) and isinstance(args[1], Tensor):
            _warn(name, "Number alpha, Tensor other", "Tensor other, *, Number alpha = 1")
            return fn(input, args[1], alpha=args[0], **kwargs)
        return fn(input, *args, **kwargs)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = fn.__doc__
    return op


def _value_op(fn, name):
    def op(input, *args, **kwargs):
        if len(args) == 3 and _is_value(args[0]):
            _warn(name, "Number value, Tensor tensor1, Tensor tensor2",
                  "Tensor tensor1, Tensor tensor2, *, Number value = 1")
            return fn(input, args[1], args[2], value=args[0], **kwargs)
        return fn(input, *args, **kwargs)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = fn.__doc__
    return op


add = _alpha_op(ew.add, "add")
sub = _alpha_op(ew.sub, "sub")
addcmul = _value_op(ew.addcmul, "addcmul")
addcdiv = _value_op(ew.addcdiv, "addcdiv")


def _moment_args(name, args, kwargs):
    """(dim, kwargs) from the current form or the old positional (unbiased) ones."""
    kwargs = dict(kwargs)
    if args and isinstance(args[0], bool):            # var(input, unbiased)
        if len(args) > 1:
            raise TypeError(f"{name}(input, unbiased) takes no further positional arguments")
        kwargs["unbiased"] = args[0]
        return None, kwargs
    if len(args) > 3:
        raise TypeError(f"{name}() takes at most 4 positional arguments "
                        f"(input, dim, unbiased, keepdim)")
    dim = args[0] if args else kwargs.pop("dim", None)
    if len(args) >= 2:                                # var(input, dim, unbiased[, keepdim])
        kwargs["unbiased"] = args[1]
    if len(args) == 3:
        kwargs["keepdim"] = args[2]
    return dim, kwargs


def _correction(kwargs):
    unbiased = kwargs.pop("unbiased", None)
    if unbiased is not None:
        if "correction" in kwargs:
            raise RuntimeError("var/std: pass either unbiased or correction, not both")
        kwargs["correction"] = int(bool(unbiased))
    return kwargs


def var(input, *args, **kwargs):
    dim, kwargs = _moment_args("var", args, kwargs)
    return red.var(input, dim, **_correction(kwargs))


def std(input, *args, **kwargs):
    dim, kwargs = _moment_args("std", args, kwargs)
    return red.std(input, dim, **_correction(kwargs))


def var_mean(input, *args, **kwargs):
    dim, kwargs = _moment_args("var_mean", args, kwargs)
    return red.var_mean(input, dim, **_correction(kwargs))


def std_mean(input, *args, **kwargs):
    dim, kwargs = _moment_args("std_mean", args, kwargs)
    return red.std_mean(input, dim, **_correction(kwargs))


for _fn in (var, std, var_mean, std_mean):     # they take dim= through **kwargs
    _fn.takes_dim = True

METHODS = {"add": add, "sub": sub, "subtract": sub, "addcmul": addcmul, "addcdiv": addcdiv,
           "var": var, "std": std}
# the in-place forms warn under their own names (p.add_(-lr, grad): "add_")
INPLACE = {"add_": _alpha_op(ew.add, "add_"), "sub_": _alpha_op(ew.sub, "sub_"),
           "subtract_": _alpha_op(ew.sub, "subtract_"),
           "addcmul_": _value_op(ew.addcmul, "addcmul_"),
           "addcdiv_": _value_op(ew.addcdiv, "addcdiv_")}
__all__ = ["add", "addcdiv", "addcmul", "std", "std_mean", "sub", "var", "var_mean"]
