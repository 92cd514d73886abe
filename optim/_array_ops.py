"""In-place array steps shared by the update functions (NumPy or CuPy, through the array module).

The updates run once per parameter per step over every element, so they write into existing
arrays (`out=`, augmented assignment) and allocate at most a scratch array of a parameter's size.
Results that are kept get an explicit `out=`: NumPy returns a scalar, not an array, for a 0-d
input otherwise.
"""
from ..tensor.backend import array_module


def effective_grad(param, grad, weight_decay, maximize):
    """The gradient the update follows: negated when maximizing, plus `weight_decay * param`
    (L2 penalty). Never writes into `grad`, which belongs to the caller."""
    xp = array_module(param)
    if not weight_decay:
        return xp.negative(grad, out=xp.empty_like(grad)) if maximize else grad
    out = xp.multiply(param, weight_decay, out=xp.empty_like(param))
    if maximize:
        return xp.subtract(out, grad, out=out)
    return xp.add(out, grad, out=out)


def add_scaled_(y, x, alpha, scratch=None):
    """y += alpha * x, using `scratch` (an array like y) for the product when given."""
    if alpha == 1:
        y += x
    elif alpha == -1:
        y -= x
    else:
        y += array_module(y).multiply(x, alpha, out=scratch)
    return y


def lerp_(start, end, weight, scratch):
    """start = start + weight * (end - start), in place, in PyTorch's two-branch form (the
    branch nearer the endpoint keeps precision)."""
    xp = array_module(start)
    xp.subtract(end, start, out=scratch)
    if weight < 0.5:
        scratch *= weight
        start += scratch
    else:
        scratch *= 1 - weight
        xp.subtract(end, scratch, out=start)
    return start
