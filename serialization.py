"""Checkpoints: `save(obj, path)` and `load(path, map_location=None)`.

A checkpoint is one safetensors file. Every tensor and NumPy array of `obj` is stored as a
safetensors entry; the nested structure around them (dicts with any scalar keys, lists, tuples,
ints, floats, bools, strings, None, dtypes, devices) is JSON in the file's metadata. Nothing is
ever pickled, so loading a file cannot run code. Writes are atomic: the bytes go to a temporary
file in the same directory, which is fsync'ed and renamed over the target, so a crash leaves
either the old file or the new one. A plain safetensors file from elsewhere loads as a dict of
tensors.
"""
import json
import os
import tempfile

import numpy as np

from .tensor import Tensor, backend, dtypes

FORMAT = "phalanx.checkpoint.v1"
_TREE_KEY = "phalanx.tree"
_FORMAT_KEY = "format"


# ---- encoding: Python structure <-> JSON tree + dict of arrays ----------------------------
class _Encoder:
    def __init__(self):
        self.arrays = {}
        self._seen = {}  # id(obj) -> key, so a tensor stored twice is one entry (and shared)

    def encode(self, obj, where):
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return obj
        if isinstance(obj, float):
            return obj if np.isfinite(obj) else {"float": repr(obj)}
        if isinstance(obj, Tensor):
            return {"tensor": self._store(obj, backend.to_device(obj.detach()._data, "cpu")),
                    "device": str(obj.device), "requires_grad": obj.requires_grad}
        if isinstance(obj, np.ndarray):
            self._check_array(obj, where)
            return {"ndarray": self._store(obj, obj)}
        if isinstance(obj, np.generic):
            self._check_array(np.asarray(obj), where)
            return {"npscalar": self._store(obj, np.asarray(obj))}
        if isinstance(obj, dtypes.dtype):
            return {"dtype": obj.name}
        if isinstance(obj, backend.Device):
            return {"device": str(obj)}
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            raise TypeError(f"px.save can't store the namedtuple {type(obj).__name__} at "
                            f"{where} (it would need unpickling to rebuild); convert it with "
                            f"._asdict() or tuple(...)")
        if isinstance(obj, list):
            return {"list": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, tuple):
            return {"tuple": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                if not (k is None or isinstance(k, (str, int, float, bool))):
                    raise TypeError(f"px.save can't store the dict key {k!r} "
                                    f"({type(k).__name__}) at {where}; keys must be str, int, "
                                    f"float, bool or None")
                items.append([self.encode(k, where), self.encode(v, f"{where}[{k!r}]")])
            return {"dict": items}
        raise TypeError(f"px.save can't store an object of type {type(obj).__name__} at "
                        f"{where}; checkpoints hold tensors, NumPy arrays, numbers, strings, "
                        f"None and dicts/lists/tuples of them. Store its state_dict() or its "
                        f"fields instead")

    @staticmethod
    def _check_array(arr, where):
        if arr.dtype.kind in "OSUVMmc":
            raise TypeError(f"px.save can't store the NumPy array of dtype {arr.dtype} at "
                            f"{where}; only bool, integer and float arrays are supported")

    def _store(self, obj, arr):
        key = self._seen.get(id(obj))
        if key is None:
            key = self._seen[id(obj)] = str(len(self.arrays))
            self.arrays[key] = arr if arr.flags.c_contiguous else arr.copy(order="C")
        return key


class _Decoder:
    def __init__(self, arrays, map_location, path):
        self.arrays, self.map_location, self.path = arrays, map_location, path
        self._built = {}

    def _corrupt(self, what):
        return ValueError(f"{self.path} is corrupt: its structure does not match its tensors "
                          f"({what})")

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or not node:
            raise self._corrupt(f"unexpected entry {node!r:.60}")
        kind = next(iter(node))  # every non-JSON value is an object named by its first key
        value = node[kind]
        if kind in ("list", "tuple", "dict"):
            if not isinstance(value, list) or kind == "dict" and not all(
                    isinstance(kv, list) and len(kv) == 2 for kv in value):
                raise self._corrupt(f"malformed {kind}")
            if kind == "dict":
                return {self.decode(k): self.decode(v) for k, v in value}
            items = [self.decode(v) for v in value]
            return items if kind == "list" else tuple(items)
        if kind == "float" and value in ("inf", "-inf", "nan"):
            return float(value)
        if kind == "dtype" and value in dtypes._names:
            return dtypes._by_name(value)
        if kind == "device" and isinstance(value, str):
            try:
                return backend.Device(value)
            except ValueError:
                raise self._corrupt(f"unknown device {value!r}") from None
        if kind == "tensor" and isinstance(node.get("device"), str) and \
                isinstance(node.get("requires_grad"), bool):
            return self._cached(value, lambda a: self._tensor(a, node))
        if kind == "ndarray":
            return self._cached(value, lambda a: a)
        if kind == "npscalar":
            return self._array(value)[()]
        raise self._corrupt(f"unknown entry {kind!r}: {value!r:.60}")

    def _array(self, key):
        if not isinstance(key, str) or key not in self.arrays:
            raise self._corrupt(f"it refers to tensor {key!r}, which the file does not hold")
        return self.arrays[key]

    def _cached(self, key, build):
        if key not in self._built:
            self._built[key] = build(self._array(key))
        return self._built[key]

    def _tensor(self, arr, node):
        saved = node["device"]
        loc = self.map_location
        if callable(loc):
            t = loc(Tensor._make(arr), saved)
            if not isinstance(t, Tensor):
                raise TypeError(f"map_location callable returned {type(t).__name__}; it must "
                                f"return a Tensor (called as map_location(tensor, "
                                f"saved_device))")
        else:
            if isinstance(loc, dict):
                loc = loc.get(saved, saved)
            target = loc if loc is not None else saved
            try:
                t = Tensor._make(backend.to_device(arr, target))
            except RuntimeError as e:
                raise RuntimeError(f"{self.path}: can't place a tensor saved on {saved} on "
                                   f"{target}: {e}. Pass map_location='cpu' to load it on the "
                                   f"CPU") from e
        if node["requires_grad"]:
            t.requires_grad_(True)
        return t


# ---- files ------------------------------------------------------------------------------
def _write_all(f, data):
    """Write `data` in chunks (one place to interrupt in crash tests)."""
    view = memoryview(data)
    for start in range(0, len(view), 1 << 24):
        f.write(view[start:start + (1 << 24)])


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path, data):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # mkstemp makes it 0600; give it a normal file's mode
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save(obj, f):
    """Save `obj` (nested dicts/lists/tuples of tensors, arrays and plain values) to the path
    `f` atomically, or to a writable binary file object."""
    from safetensors.numpy import save as st_save
    enc = _Encoder()
    tree = enc.encode(obj, "obj")
    data = st_save(enc.arrays, metadata={_FORMAT_KEY: FORMAT,
                                         _TREE_KEY: json.dumps(tree, separators=(",", ":"))})
    if hasattr(f, "write"):
        f.write(data)
    else:
        _atomic_write(os.fspath(f), data)


def _read_header(data, path):
    """Validate the safetensors framing ourselves, so errors name the file and the problem."""
    if data[:2] == b"PK" or data[:1] == b"\x80":
        raise ValueError(f"{path} is a pickle/zip file (e.g. written by torch.save), not a "
                         f"Phalanx checkpoint; Phalanx never unpickles files. Convert it to "
                         f"safetensors (safetensors.torch.save_file) and load that")
    if len(data) < 8:
        raise ValueError(f"{path} is not a Phalanx checkpoint: {len(data)} bytes is shorter "
                         f"than a safetensors header (truncated or empty file?)")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError(f"{path} is truncated or not a Phalanx checkpoint: its header claims "
                         f"{n} bytes but the file has only {len(data) - 8} after the length")
    try:
        header = json.loads(bytes(data[8:8 + n]))
    except ValueError as e:
        raise ValueError(f"{path} is corrupt or not a Phalanx checkpoint: unreadable header "
                         f"({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is corrupt: the header is not a JSON object")
    return header


def load(f, map_location=None):
    """Load what `save` wrote. `map_location` places tensors: None (where they were saved),
    'cpu' or a device, a dict {saved_device: device}, or a callable
    `(tensor_on_cpu, saved_device) -> tensor`."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load
    if hasattr(f, "read"):
        path, data = getattr(f, "name", "<file object>"), f.read()
    else:
        path = os.fspath(f)
        with open(path, "rb") as fh:
            data = fh.read()
    header = _read_header(data, path)
    meta = header.get("__metadata__") or {}
    try:
        arrays = st_load(data)
    except SafetensorError as e:
        raise ValueError(f"{path} is corrupt or truncated: {e}") from None
    if _TREE_KEY not in meta:  # a plain safetensors file: a dict of tensors
        return {k: _Decoder(arrays, map_location, path)._tensor(a, {"device": "cpu",
                                                                   "requires_grad": False})
                for k, a in arrays.items()}
    if meta.get(_FORMAT_KEY) != FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {meta.get(_FORMAT_KEY)!r} "
                         f"(this Phalanx reads {FORMAT!r})")
    try:
        tree = json.loads(meta[_TREE_KEY])
    except ValueError as e:
        raise ValueError(f"{path} is corrupt: unreadable structure ({e})") from None
    return _Decoder(arrays, map_location, path).decode(tree)
