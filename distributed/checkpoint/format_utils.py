"""Converting between a DCP checkpoint folder and one file (PyTorch's
`torch.distributed.checkpoint.format_utils`): `dcp_to_torch_save` gathers a sharded
checkpoint, saved at any world size, into one `phalanx.save` file of whole tensors (for
inference in one process, or to publish); `torch_save_to_dcp` goes the other way. Both run in
one process, with no process group."""
from ... import serialization
from ...tensor import empty
from ...tensor.dtypes import from_numpy_dtype
from .saver import _read_tensor, _unplain, read_metadata, save

__all__ = ["dcp_to_torch_save", "torch_save_to_dcp"]


def dcp_to_torch_save(dcp_checkpoint_dir, torch_save_path):
    """The checkpoint in `dcp_checkpoint_dir` as one file at `torch_save_path`, nested as it
    was saved (a checkpoint written before paths were recorded comes out flat, keyed by
    dotted names)."""
    import numpy as np
    folder = str(dcp_checkpoint_dir)
    metadata = read_metadata(folder)
    paths = metadata.get("paths", {})
    state = {}
    for key, entry in metadata["tensors"].items():
        whole = empty(*entry["shape"], dtype=from_numpy_dtype(np.dtype(entry["dtype"])))
        _read_tensor(whole, key, metadata, folder)
        _place(state, paths.get(key, [["key", key]]), whole)
    for key, value in metadata["values"].items():
        _place(state, paths.get(key, [["key", key]]), _unplain(value))
    serialization.save(_lists(state), torch_save_path)


def torch_save_to_dcp(torch_save_path, dcp_checkpoint_dir):
    """The state dict in the file `torch_save_path` (`phalanx.save`'s, or `torch.save`'s
    weights) as a DCP checkpoint in `dcp_checkpoint_dir`."""
    save(serialization.load(torch_save_path), checkpoint_id=dcp_checkpoint_dir, no_dist=True)


class _Listed(dict):
    """A container the path indexes by position: a list once every entry is in."""


def _place(state, path, value):
    node = state
    for (kind, k), (next_kind, _) in zip(path, path[1:]):
        node = node.setdefault(k, _Listed() if next_kind == "index" else {})
    if path:
        node[path[-1][1]] = value


def _lists(node):
    if isinstance(node, _Listed):
        return [_lists(node[i]) for i in sorted(node)]
    if isinstance(node, dict):
        return {k: _lists(v) for k, v in node.items()}
    return node
