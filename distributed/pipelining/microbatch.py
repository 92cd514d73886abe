"""Splitting a batch into microbatches and merging the last stage's outputs back, as
`torch.distributed.pipelining.microbatch`.

A chunk spec mirrors the structure of the arguments (tuples, lists and dicts nest): a
`TensorChunkSpec(dim)` leaf splits the tensor at that place along `dim` the way
`tensor_split` does (the first `size % n` chunks are one longer), a `_Replicate` leaf hands
the same value to every microbatch. Without a spec every tensor splits along dim 0 and
everything else is replicated.
"""
from ...tensor import Tensor, cat, tensor_split

__all__ = ["TensorChunkSpec", "split_args_kwargs_into_chunks", "merge_chunks"]

DEFAULT_CHUNK_DIM = 0


class TensorChunkSpec:
    """Split a tensor argument along `split_dim`."""

    def __init__(self, split_dim):
        self.split_dim = split_dim

    def __repr__(self):
        return f"TensorChunkSpec({self.split_dim})"

    __str__ = __repr__

    @staticmethod
    def from_tuple(chunk_dims):
        """One spec per positional argument: `from_tuple((0, 1))`."""
        return tuple(TensorChunkSpec(dim) for dim in chunk_dims)

    @staticmethod
    def from_dict(chunk_dims):
        """One spec per keyword argument: `from_dict({"mask": 0})`."""
        return {name: TensorChunkSpec(dim) for name, dim in chunk_dims.items()}


class _Replicate:
    """Give every microbatch the whole value."""

    def __repr__(self):
        return "_Replicate()"


# --- nested structures -------------------------------------------------------------------------
def _flatten(tree):
    """(leaves, rebuild): tuples, lists and dicts are walked, everything else is a leaf."""
    if isinstance(tree, (tuple, list)):
        parts = [_flatten(item) for item in tree]
        kind = type(tree)

        def rebuild(leaves):
            out, start = [], 0
            for leaves_of_item, rebuild_item in parts:
                out.append(rebuild_item(leaves[start:start + len(leaves_of_item)]))
                start += len(leaves_of_item)
            return kind(out)
        return [leaf for leaves_of_item, _ in parts for leaf in leaves_of_item], rebuild
    if isinstance(tree, dict):
        keys = list(tree)
        leaves, rebuild_values = _flatten([tree[k] for k in keys])
        return leaves, lambda leaves: dict(zip(keys, rebuild_values(leaves)))
    return [tree], lambda leaves: leaves[0]


def _default_spec(tree):
    if isinstance(tree, (tuple, list)):
        return type(tree)(_default_spec(item) for item in tree)
    if isinstance(tree, dict):
        return {k: _default_spec(v) for k, v in tree.items()}
    return TensorChunkSpec(DEFAULT_CHUNK_DIM) if isinstance(tree, Tensor) else _Replicate()


def _spec_leaves(values, spec, what):
    """The spec's leaves, one per leaf of `values` (a spec leaf may stand for a whole
    sub-structure only when it is `_Replicate`)."""
    leaves, _ = _flatten(values)
    spec_leaves, _ = _flatten(spec)
    if len(spec_leaves) != len(leaves):
        raise ValueError(f"{what}: the chunk spec {spec!r} has {len(spec_leaves)} leaves but the "
                         f"values have {len(leaves)}; give one TensorChunkSpec or _Replicate "
                         f"per tensor, in the same nesting as the arguments")
    return leaves, spec_leaves


def _split_leaf(value, spec, chunks, what):
    if spec is _Replicate or isinstance(spec, _Replicate):
        return [value] * chunks
    if not isinstance(spec, TensorChunkSpec):
        raise TypeError(f"{what}: a chunk spec leaf must be TensorChunkSpec or _Replicate, "
                        f"got {spec!r}")
    if not isinstance(value, Tensor):
        raise TypeError(f"{what}: TensorChunkSpec({spec.split_dim}) given for a "
                        f"{type(value).__name__}, which cannot be split; use _Replicate()")
    size = value.shape[spec.split_dim]
    if size < chunks:
        raise ValueError(f"{what}: a tensor of shape {tuple(value.shape)} has {size} entries "
                         f"along dim {spec.split_dim}, fewer than the {chunks} microbatches; "
                         f"pass a batch of at least {chunks} or lower n_microbatches")
    return list(tensor_split(value, chunks, spec.split_dim))


def _split(values, spec, chunks, what):
    """A list of `chunks` copies of the structure `values`, its tensors split by `spec`."""
    leaves, rebuild = _flatten(values)
    _, spec_leaves = _spec_leaves(values, spec, what)
    columns = [_split_leaf(v, s, chunks, what) for v, s in zip(leaves, spec_leaves)]
    return [rebuild([column[i] for column in columns]) for i in range(chunks)]


def split_args_kwargs_into_chunks(args, kwargs, chunks, args_chunk_spec=None,
                                  kwargs_chunk_spec=None):
    """([args of each microbatch], [kwargs of each microbatch]).

    Unlike PyTorch, which quietly makes fewer microbatches when a tensor is too short,
    a tensor shorter than `chunks` along its split dim raises."""
    kwargs = kwargs or {}
    args = tuple(args)
    if args_chunk_spec is None:
        args_chunk_spec = _default_spec(args)
    if kwargs_chunk_spec is None:
        kwargs_chunk_spec = _default_spec(kwargs)
    if len(args_chunk_spec) != len(args):
        raise ValueError(f"args_chunk_spec has {len(args_chunk_spec)} entries for "
                         f"{len(args)} positional arguments; give one per argument")
    if set(kwargs_chunk_spec) != set(kwargs):
        raise ValueError(f"kwargs_chunk_spec names {sorted(kwargs_chunk_spec)} but the keyword "
                         f"arguments are {sorted(kwargs)}; give one spec per keyword")
    args_split = _split(list(args), list(args_chunk_spec), chunks, "positional arguments")
    kwargs_split = _split(kwargs, {k: kwargs_chunk_spec[k] for k in kwargs}, chunks,
                          "keyword arguments")
    return [tuple(a) for a in args_split], kwargs_split


def merge_chunks(chunks, chunk_spec):
    """The inverse of the split: tensors at `TensorChunkSpec` places are concatenated along
    their dim, other leaves must be equal in every chunk and are kept once. `chunk_spec` None
    concatenates every leaf along dim 0."""
    first, rebuild = _flatten(chunks[0])
    if chunk_spec is None:
        spec_leaves = [TensorChunkSpec(DEFAULT_CHUNK_DIM)] * len(first)
    else:
        _, spec_leaves = _spec_leaves(chunks[0], chunk_spec, "output_merge_spec")
    columns = [_flatten(chunk)[0] for chunk in chunks]
    merged = []
    for i, spec in enumerate(spec_leaves):
        values = [column[i] for column in columns]
        if isinstance(spec, TensorChunkSpec):
            merged.append(cat(values, dim=spec.split_dim))
        else:
            merged.append(values[0])
    return rebuild(merged)
