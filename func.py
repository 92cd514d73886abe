"""`phalanx.func`: PyTorch's function transforms (torch.func) on Phalanx's eager autograd.

    grad(f)(x)                 d f / d x of a scalar f, composable: grad(grad(f))
    grad_and_value, vjp        the gradient with the value; a pull-back function
    jvp(f, primals, tangents)  the value and J t (autograd.forward_ad's dual tensors)
    jacrev / jacfwd, hessian   Jacobians (both computed in reverse mode: same values)
    vmap                       phalanx.vmap (a loop over the batch)
    functional_call(m, p, x)   call module m with the tensors p in place of its own

The transforms record the graph they differentiate (create_graph=True), so they nest; a
result is detached when none of the arguments it came from required grad, as torch.func's
results are outside an enclosing transform.
"""
from . import autograd
from .autograd import functional as _functional
from .nn.utils.stateless import _functional_call as _stateless_call
from .tensor import Tensor, vmap

__all__ = ["functional_call", "grad", "grad_and_value", "hessian", "jacfwd", "jacrev", "jvp",
           "stack_module_state", "vjp", "vmap"]


def _argnums(argnums, nargs, name):
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    if not nums:
        raise RuntimeError(f"{name}(f, argnums): argnums must be non-empty")
    for n in nums:
        if not -nargs <= n < nargs:
            raise RuntimeError(f"Got argnums={argnums} for a function called with {nargs} "
                               f"positional arguments")
    return single, tuple(n % nargs for n in nums)


def _leaves(tree):
    """The tensors of a pytree (tuples, lists, dicts) in a fixed order."""
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in _leaves(item)]
    if isinstance(tree, dict):
        return [leaf for key in tree for leaf in _leaves(tree[key])]
    return [tree]


def _rebuild(tree, leaves):
    """`tree` with its leaves replaced, in `_leaves` order, by those of the iterator."""
    if isinstance(tree, (tuple, list)):
        return type(tree)(_rebuild(item, leaves) for item in tree)
    if isinstance(tree, dict):
        return {key: _rebuild(tree[key], leaves) for key in tree}
    return next(leaves)


def _watched(args, nums):
    """args with those at `nums` (tensors or pytrees of them) replaced by tensors that record
    the graph from here on; also whether each replaced tensor required grad before."""
    args = list(args)
    outer = []
    for n in nums:
        leaves = _leaves(args[n])
        for t in leaves:
            if not isinstance(t, Tensor):
                raise RuntimeError(f"argument {n} must be a tensor (or a tuple, list or dict "
                                   f"of tensors) to differentiate with respect to it, got "
                                   f"{type(t).__name__}")
        outer.extend(t.requires_grad for t in leaves)
        args[n] = _rebuild(args[n], iter([t.view_as(t) if t.requires_grad else
                                          t.detach().requires_grad_(True) for t in leaves]))
    return args, outer


def _split_aux(out, has_aux, name):
    if not has_aux:
        return out, None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise RuntimeError(f"{name}(f, ..., has_aux=True): f must return a (output, aux) "
                           f"tuple")
    return out


def grad_and_value(func, argnums=0, has_aux=False):
    def wrapper(*args, **kwargs):
        single, nums = _argnums(argnums, len(args), "grad_and_value")
        watched, outer = _watched(args, nums)
        with autograd.enable_grad():
            out, aux = _split_aux(func(*watched, **kwargs), has_aux, "grad_and_value")
            if not isinstance(out, Tensor) or out.numel() != 1:
                shape = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise RuntimeError(f"grad_and_value(f)(*args): Expected f(*args) to return a "
                                   f"scalar Tensor, got {shape}")
            leaves = [t for n in nums for t in _leaves(watched[n])]
            grads = autograd.grad(out, leaves, create_graph=True, allow_unused=True)
        grads = iter([(g if keep else g.detach()) if g is not None else t.new_zeros(*t.shape)
                      for g, t, keep in zip(grads, leaves, outer)])
        trees = tuple(_rebuild(watched[n], grads) for n in nums)
        value = out if any(outer) else out.detach()
        result = trees[0] if single else trees
        return (result, (value, aux)) if has_aux else (result, value)
    return wrapper


def grad(func, argnums=0, has_aux=False):
    """The gradient of scalar `func` with respect to argument(s) `argnums`."""
    inner = grad_and_value(func, argnums, has_aux)

    def wrapper(*args, **kwargs):
        g, value = inner(*args, **kwargs)
        return (g, value[1]) if has_aux else g
    return wrapper


def vjp(func, *primals, has_aux=False):
    """(func(*primals), vjp_fn): vjp_fn(cotangents) gives the gradient for each primal."""
    watched, outer = _watched(primals, range(len(primals)))
    with autograd.enable_grad():
        out, aux = _split_aux(func(*watched), has_aux, "vjp")
    outs = out if isinstance(out, tuple) else (out,)

    leaves = [t for w in watched for t in _leaves(w)]

    def vjp_fn(*cotangents):
        cts = cotangents[0] if len(cotangents) == 1 and isinstance(out, tuple) else cotangents
        grads = autograd.grad(outs, leaves, cts, retain_graph=True, create_graph=True,
                              allow_unused=True)
        grads = iter([(g if keep else g.detach()) if g is not None else w.new_zeros(*w.shape)
                      for g, w, keep in zip(grads, leaves, outer)])
        return tuple(_rebuild(w, grads) for w in watched)     # each primal's structure
    value = out if any(outer) else (tuple(o.detach() for o in outs) if isinstance(out, tuple)
                                    else out.detach())
    return (value, vjp_fn, aux) if has_aux else (value, vjp_fn)


def jvp(func, primals, tangents, *, strict=False, has_aux=False):
    """(func(*primals), J t): the Jacobian of `func` at `primals` times `tangents` (a tuple of
    the same structure); an output that depends on no primal gets zeros (an error with
    `strict`)."""
    from .autograd import forward_ad
    name = "jvp(f, primals, tangents)"
    if not isinstance(primals, tuple):
        raise RuntimeError(f"{name}: Expected primals to be a tuple. E.g. it should be valid "
                           f"to call f(*primals).")
    flat_p, flat_t = _leaves(primals), _leaves(tangents)
    if not isinstance(tangents, tuple) or len(flat_p) != len(flat_t) or any(
            not isinstance(t, Tensor) for t in flat_p + flat_t):
        raise RuntimeError(f"{name}: Expected primals and tangents to have the same python "
                           f"structure of tensors (a tuple of tensors, or of lists or dicts "
                           f"of them)")
    with forward_ad.dual_level():
        duals = [forward_ad.make_dual(p, t) for p, t in zip(flat_p, flat_t)]
        out, aux = _split_aux(func(*_rebuild(primals, iter(duals))), has_aux, "jvp")
        pairs = []
        for o in _leaves(out):
            if not isinstance(o, Tensor):
                raise RuntimeError(f"{name}: expected f(*args) to return only tensors, got "
                                   f"unsupported type {type(o)}")
            primal, tangent = forward_ad.unpack_dual(o)
            if tangent is None:
                if strict:
                    raise RuntimeError("jvp(f, primals, tangents, strict=True): The output of "
                                       "f is independent of the inputs. This is not allowed "
                                       "with strict=True.")
                tangent = o.new_zeros(*o.shape)
            pairs.append((primal, tangent))
    keep = any(p.requires_grad for p in flat_p)     # inside an enclosing transform
    values = _rebuild(out, iter([p if keep else p.detach() for p, _ in pairs]))
    pushed = _rebuild(out, iter([t if keep else t.detach() for _, t in pairs]))
    return (values, pushed, aux) if has_aux else (values, pushed)


def jacrev(func, argnums=0, *, has_aux=False, chunk_size=None):
    """The Jacobian with respect to argument(s) `argnums`: output.shape + input.shape."""
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"jacrev: chunk_size should be a positive integer, got {chunk_size!r}")

    def wrapper(*args):
        single, nums = _argnums(argnums, len(args), "jacrev")
        aux_box = []
        trees = [args[n] for n in nums]          # tensors, or tuples/lists/dicts of them
        leaves = [t for tree in trees for t in _leaves(tree)]

        def of_leaves(*flat):
            full, given = list(args), iter(flat)
            for n, tree in zip(nums, trees):
                full[n] = _rebuild(tree, given)
            out, aux = _split_aux(func(*full), has_aux, "jacrev")
            aux_box.append(aux)
            return out

        def shaped(per_leaf):                    # a Jacobian per leaf -> the argnums' shape
            given = iter(per_leaf)
            built = tuple(_rebuild(tree, given) for tree in trees)
            return built[0] if single else built
        keep = any(t.requires_grad for t in leaves)
        jac = _functional.jacobian(of_leaves, tuple(leaves), create_graph=keep)
        jac = tuple(shaped(j) for j in jac) if isinstance(jac[0], tuple) else shaped(jac)
        return (jac, aux_box[0]) if has_aux else jac
    return wrapper


def jacfwd(func, argnums=0, has_aux=False, *, randomness="error"):
    """Forward-mode Jacobian in PyTorch; the same values, computed here in reverse mode."""
    if randomness not in ("error", "different", "same"):
        raise RuntimeError(f"jacfwd: randomness must be 'error', 'different' or 'same', got "
                           f"{randomness!r}")
    return jacrev(func, argnums, has_aux=has_aux)


def hessian(func, argnums=0):
    """The matrix of second derivatives of scalar `func`: jacfwd(jacrev(func))."""
    return jacfwd(jacrev(func, argnums), argnums)


def functional_call(module, parameter_and_buffer_dicts, args=None, kwargs=None, *,
                    tie_weights=True, strict=False):
    """module(*args, **kwargs) with the given tensors standing in for its parameters and
    buffers (by their state-dict names; tied ones replaced together); the module itself is
    left as it was. The stateless call of phalanx.nn.utils.stateless, without its
    deprecation warning (as PyTorch's torch.func.functional_call)."""
    return _stateless_call(module, parameter_and_buffer_dicts, args, kwargs,
                           tie_weights=tie_weights, strict=strict)


def stack_module_state(models):
    """(params, buffers): each name's tensors of same-shaped `models` stacked along a new
    first dim, for `vmap` over an ensemble with `functional_call`. The stacked parameters are
    new leaves that require grad where the originals do, as PyTorch's."""
    from .tensor import stack
    models = list(models)
    if not models:
        raise RuntimeError("stack_module_state: Expected at least one model, got 0.")
    if len({m.training for m in models}) > 1:
        raise RuntimeError("stack_module_state: Expected all models to have the same "
                           "training/eval mode.")
    if len({type(m) for m in models}) > 1:
        raise RuntimeError("stack_module_state: Expected all models to be of the same class.")

    def stacked(named):
        tables = [dict(named(m)) for m in models]
        if any(t.keys() != tables[0].keys() for t in tables):
            raise RuntimeError("stack_module_state: the models' parameter or buffer names "
                               "differ")
        return {k: stack([t[k].detach() for t in tables]).requires_grad_(
            tables[0][k].requires_grad) for k in tables[0]}
    return (stacked(lambda m: m.named_parameters()), stacked(lambda m: m.named_buffers()))
