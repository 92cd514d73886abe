"""`vmap`: map a function over a batch dimension of its inputs (PyTorch's torch.vmap).

Phalanx has no batching rules, so the map is a loop: the function runs once per batch element
on the slices of the batched inputs, and the results are stacked along `out_dims`. Values and
gradients are exactly those of the per-example calls (what vmap promises); the cost is one
call per element. `chunk_size` only bounds PyTorch's peak memory, and one element at a time is
within any bound. Randomness follows PyTorch's three modes, watched through the CPU generator:
'error' raises if the function drew random numbers, 'different' lets every element draw its
own, 'same' replays the same draws for every element.
"""
import functools

from .ops.shape import stack
from .random import get_rng_state, set_rng_state
from .tensor import Tensor

_RANDOMNESS = ("error", "different", "same")


def _tree_map(fn, tree, dims):
    """Apply fn(leaf, dim) over a pytree of tuples, lists and dicts; `dims` is one value for
    the whole tree or a tree of the same structure."""
    if isinstance(tree, (tuple, list)):
        parts = dims if isinstance(dims, (tuple, list)) else [dims] * len(tree)
        if len(parts) != len(tree):
            raise ValueError(f"vmap: in_dims {dims!r} does not match an input with "
                             f"{len(tree)} elements")
        return type(tree)(_tree_map(fn, t, d) for t, d in zip(tree, parts))
    if isinstance(tree, dict):
        return {k: _tree_map(fn, v, dims[k] if isinstance(dims, dict) else dims)
                for k, v in tree.items()}
    return fn(tree, dims)


def _batch_size(args, in_dims):
    sizes = []

    def visit(leaf, dim):
        if dim is None:
            return leaf
        if not isinstance(leaf, Tensor):
            raise ValueError(f"vmap: got in_dim={dim} for an input of type "
                             f"{type(leaf).__name__}; in_dims must be None for non-tensors")
        if not -leaf.ndim <= dim < leaf.ndim:
            raise ValueError(f"vmap: in_dim={dim} is out of range for an input of shape "
                             f"{list(leaf.shape)}")
        sizes.append(leaf.shape[dim])
        return leaf
    _tree_map(visit, args, in_dims)
    if not sizes:
        raise ValueError("vmap: at least one input must be a tensor with an in_dim that is "
                         "not None")
    if len(set(sizes)) != 1:
        raise ValueError(f"vmap: expected all batched inputs to have the same size along "
                         f"their in_dims, got sizes {sizes}")
    return sizes[0]


def _stack_outputs(results, out_dims):
    first = results[0]
    if isinstance(first, (tuple, list)):
        dims = out_dims if isinstance(out_dims, (tuple, list)) else [out_dims] * len(first)
        if len(dims) != len(first):
            raise ValueError(f"vmap: out_dims {out_dims!r} does not match the function's "
                             f"{len(first)} outputs")
        return type(first)(_stack_outputs([r[i] for r in results], d)
                           for i, d in enumerate(dims))
    if isinstance(first, dict):
        return {k: _stack_outputs([r[k] for r in results],
                                  out_dims[k] if isinstance(out_dims, dict) else out_dims)
                for k in first}
    if not isinstance(first, Tensor):
        raise ValueError(f"vmap: the function must return tensors, got "
                         f"{type(first).__name__}")
    if out_dims is None:
        return first
    return stack(results, dim=out_dims if out_dims >= 0 else out_dims + first.ndim + 1)


def vmap(func, in_dims=0, out_dims=0, randomness="error", *, chunk_size=None):
    """func mapped over dim `in_dims` of its positional inputs; see the module docstring."""
    if randomness not in _RANDOMNESS:
        raise RuntimeError(f"vmap: randomness must be one of {', '.join(_RANDOMNESS)}, got "
                           f"{randomness!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"vmap: chunk_size should be None or a positive integer, got "
                         f"{chunk_size!r}")

    @functools.wraps(func)
    def mapped(*args, **kwargs):
        dims = in_dims if isinstance(in_dims, (tuple, list)) else (in_dims,) * len(args)
        if len(dims) != len(args):
            raise ValueError(f"vmap: in_dims {in_dims!r} has {len(dims)} entries for "
                             f"{len(args)} positional inputs")
        size = _batch_size(list(args), list(dims))
        start = get_rng_state()
        results = []
        for i in range(size):
            if randomness == "same" and i:
                set_rng_state(start)
            sliced = _tree_map(lambda leaf, d: leaf if d is None else leaf.select(d, i),
                               list(args), list(dims))
            results.append(func(*sliced, **kwargs))
            if randomness == "error" and i == 0 and not _same_state(start, get_rng_state()):
                raise RuntimeError("vmap: called random operation while in randomness error "
                                   "mode. Please either use the 'same' or 'different' "
                                   "randomness flags on vmap or perform the randomness "
                                   "operation out of vmap")
        return _stack_outputs(results, out_dims)
    return mapped


def _same_state(a, b):
    return bool((a == b).all().item()) if isinstance(a, Tensor) else a == b
