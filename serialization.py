"""Checkpoints: `save(obj, path)` and `load(path, map_location=None)`.

A checkpoint is one safetensors file. Every tensor and NumPy array of `obj` is stored as a
safetensors entry; the nested structure around them (dicts with any scalar keys, lists, tuples,
ints, floats, bools, strings, None, dtypes, devices) is JSON in the file's metadata. Nothing is
ever pickled, so loading a file cannot run code. Writes are atomic: the bytes go to a temporary
file in the same directory, which is fsync'ed and renamed over the target, so a crash leaves
either the old file or the new one (and the next save of that path removes the temporary a
killed save left behind). A plain safetensors file from elsewhere loads as a dict of
tensors.
"""
import json
import math
import os
import pickle
import socket
import tempfile

import numpy as np
import psutil

from . import serialization_torch
from .tensor import Tensor, backend, dtypes

FORMAT = "phalanx.checkpoint.v1"
MAX_DEPTH = 100                  # nesting of containers a checkpoint may hold
_INT64_END = 1 << 63             # sizes (and an array's bytes) stay below this, as NumPy needs
_TREE_KEY = "phalanx.tree"
_FORMAT_KEY = "format"


# ---- encoding: Python structure <-> JSON tree + dict of arrays ----------------------------
class _Encoder:
    def __init__(self):
        self.arrays = {}
        # id(obj) -> (key, obj), so a tensor stored twice is one entry (and shared); holding
        # obj keeps its id from going to a temporary made later (a sparse tensor's indices)
        self._seen = {}

    def encode(self, obj, where):
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return obj
        if isinstance(obj, float):
            return obj if np.isfinite(obj) else {"float": repr(obj)}
        if isinstance(obj, Tensor) and obj.is_sparse:     # its indices and values, by name
            return {"sparse_coo": [self.encode(obj._indices(), f"{where}.indices"),
                                   self.encode(obj._values(), f"{where}.values")],
                    "size": list(obj.shape), "coalesced": obj.is_coalesced()}
        if isinstance(obj, Tensor) and hasattr(obj, "_placements"):
            raise TypeError(
                f"phalanx.save: {where} is a DTensor (one rank's part of a sharded tensor), "
                f"which would be saved as if it were the whole. Gather first: "
                f"value.full_tensor(), or for a model and its optimizer "
                f"distributed.checkpoint.state_dict.get_state_dict(model, optimizer, options="
                f"StateDictOptions(full_state_dict=True, cpu_offload=True)) and save on rank 0")
        if isinstance(obj, Tensor):
            arr = backend.to_device(obj.detach()._data, "cpu")
            pairs = arr.dtype == np.complex128  # safetensors has no complex128: (re, im) pairs
            if pairs:
                arr = np.ascontiguousarray(arr).view(np.float64).reshape(arr.shape + (2,))
            node = {"tensor": self._store(obj, arr), "device": str(obj.device),
                    "requires_grad": obj.requires_grad}
            if pairs:
                node["complex128"] = True
            return node
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
        if callable(getattr(obj, "state_dict", None)):  # a whole Module or Optimizer
            raise TypeError(f"px.save can't store the {type(obj).__name__} object at {where}: "
                            f"whole modules and optimizers are not pickled (loading a pickle "
                            f"can run code). Save its state instead: "
                            f"px.save(obj.state_dict(), path), and restore it with "
                            f"obj.load_state_dict(px.load(path))")
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
        seen = self._seen.get(id(obj))
        if seen is not None:
            return seen[0]
        key = str(len(self.arrays))
        self._seen[id(obj)] = (key, obj)
        self.arrays[key] = arr if arr.flags.c_contiguous else arr.copy(order="C")
        return key


def _describe_use(use):
    if use[0] != "tensor":
        return {"ndarray": "an ndarray", "npscalar": "a NumPy scalar"}[use[0]]
    _, device, requires_grad, complex128 = use
    pairs = ", as complex128 pairs" if complex128 else ""
    return f"a tensor on {device} with requires_grad={requires_grad}{pairs}"


class _Decoder:
    def __init__(self, arrays, map_location, path):
        self.arrays, self.map_location, self.path = arrays, map_location, path
        self._built = {}   # array name -> (how the tree first used it, what that built)

    def _corrupt(self, what):
        return ValueError(f"{self.path} is corrupt: its structure does not match its tensors "
                          f"({what})")

    def decode(self, node, depth=0):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or not node:
            raise self._corrupt(f"unexpected entry {node!r:.60}")
        if depth > MAX_DEPTH:
            raise self._corrupt(f"containers nested deeper than {MAX_DEPTH} levels")
        kind = next(iter(node))  # every non-JSON value is an object named by its first key
        value = node[kind]
        if kind in ("list", "tuple", "dict"):
            if not isinstance(value, list) or kind == "dict" and not all(
                    isinstance(kv, list) and len(kv) == 2 for kv in value):
                raise self._corrupt(f"malformed {kind}")
            if kind == "dict":
                return {self._key(k, depth): self.decode(v, depth + 1) for k, v in value}
            items = [self.decode(v, depth + 1) for v in value]
            return items if kind == "list" else tuple(items)
        if kind == "float" and value in ("inf", "-inf", "nan"):
            return float(value)
        if kind == "dtype" and isinstance(value, str) and value in dtypes._names:
            return dtypes._by_name(value)
        if kind == "device" and isinstance(value, str):
            try:
                return backend.Device(value)
            except (ValueError, RuntimeError):
                raise self._corrupt(f"unknown device {value!r}") from None
        if kind == "tensor" and isinstance(node.get("device"), str) and \
                isinstance(node.get("requires_grad"), bool):
            use = ("tensor", node["device"], node["requires_grad"], node.get("complex128"))
            return self._cached(value, use, lambda a: self._tensor(a, node))
        if kind == "sparse_coo" and isinstance(value, list) and len(value) == 2 and \
                isinstance(node.get("size"), list) and isinstance(node.get("coalesced"), bool):
            from .tensor.sparse_coo import sparse_coo_tensor
            if not all(type(n) is int and 0 <= n < _INT64_END for n in node["size"]):
                raise self._corrupt(f"a sparse tensor of size {node['size']!r:.60}")
            indices, values = (self.decode(v, depth + 1) for v in value)
            if not (isinstance(indices, Tensor) and isinstance(values, Tensor)):
                raise self._corrupt("a sparse tensor without index and value tensors")
            try:
                return sparse_coo_tensor(indices, values, node["size"],
                                         is_coalesced=node["coalesced"],
                                         requires_grad=values.requires_grad)
            except (RuntimeError, TypeError, ValueError) as e:
                raise self._corrupt(f"a malformed sparse tensor ({e})") from None
        if kind == "ndarray":
            return self._cached(value, ("ndarray",), lambda a: a)
        if kind == "npscalar":
            return self._cached(value, ("npscalar",), self._scalar)
        raise self._corrupt(f"unknown entry {kind!r}: {value!r:.60}")

    def _key(self, node, depth):
        key = self.decode(node, depth + 1)
        if not (key is None or isinstance(key, (str, int, float, bool))):
            raise self._corrupt(f"a dict key of type {type(key).__name__}")
        return key

    def _array(self, key):
        if not isinstance(key, str) or key not in self.arrays:
            raise self._corrupt(f"it refers to tensor {key!r:.60}, which the file does not hold")
        return self.arrays[key]

    def _cached(self, key, use, build):
        """What the array `key` builds as `use` (its kind and, for a tensor, its device and
        requires_grad). One object referenced twice is one entry used the same way twice; an
        entry used two ways (a tensor and an ndarray) is a crafted or damaged file."""
        arr = self._array(key)
        if key not in self._built:
            self._built[key] = (use, build(arr))
        first, built = self._built[key]
        if first != use:
            raise self._corrupt(f"entry {key!r} is used both as {_describe_use(first)} and as "
                                f"{_describe_use(use)}")
        return built

    def _scalar(self, arr):
        if arr.ndim != 0:
            raise self._corrupt(f"a NumPy scalar stored as an array of shape {list(arr.shape)}")
        return arr[()]

    def _tensor(self, arr, node):
        saved = node["device"]
        if node.get("complex128") is True:
            if arr.dtype != np.float64 or arr.ndim == 0 or arr.shape[-1] != 2:
                raise self._corrupt(f"a complex128 tensor stored as {arr.dtype} of shape "
                                    f"{list(arr.shape)}, not as float64 (re, im) pairs")
            arr = np.ascontiguousarray(arr).view(np.complex128)[..., 0]
        if arr.dtype not in dtypes._from_np:
            raise ValueError(f"{self.path}: a tensor has dtype {arr.dtype}, which Phalanx "
                             f"tensors do not support ({', '.join(d.name for d in dtypes.ALL)})")
        try:
            backend.Device(saved)
        except (ValueError, RuntimeError):
            raise self._corrupt(f"unknown device {saved!r:.40}") from None
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
            try:
                t.requires_grad_(True)
            except RuntimeError:  # save never writes one
                raise self._corrupt(f"a tensor of dtype {t.dtype} requires grad") from None
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


def _temp_prefix(path):
    """Temporaries of `path` are `.NAME.HOST.PID.RANDOM.tmp`: who wrote them is in the name."""
    return f".{os.path.basename(path)}.{socket.gethostname()}.{os.getpid()}."


def _remove_stale_temporaries(path):
    """Remove the temporaries that saves of `path` killed midway left behind: those written on
    this host by a process that is gone. Another host's, or a live process's, are left alone."""
    directory = os.path.dirname(os.path.abspath(path))
    head, host = f".{os.path.basename(path)}.", socket.gethostname()
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(head) and name.endswith(".tmp")):
            continue
        parts = name[len(head):-len(".tmp")].rsplit(".", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit() \
                or psutil.pid_exists(int(parts[1])):
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def _atomic_write(path, data):
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=directory)
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


def save(obj, f, pickle_module=None, pickle_protocol=2, _use_new_zipfile_serialization=True,
         _disable_byteorder_record=False):
    """Save `obj` (nested dicts/lists/tuples of tensors, arrays and plain values) to the path
    `f` atomically, or to a writable binary file object, as safetensors (PyTorch's pickle
    options choose how its own format is written, and change nothing here)."""
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
    # a safetensors header (JSON) starts at byte 8; its 8-byte length may begin with any byte
    if (data[:2] == b"PK" or data[:1] == b"\x80") and bytes(data[8:9]) != b"{":
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
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{path} is corrupt or not a Phalanx checkpoint: unreadable header "
                         f"({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is corrupt: the header is not a JSON object")
    return header


def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None,
         upcast_bfloat16=False, **pickle_load_args):
    """Load what `save` wrote. `map_location` places tensors: None (where they were saved),
    'cpu' or a device, a dict {saved_device: device}, or a callable
    `(tensor_on_cpu, saved_device) -> tensor`.

    A `torch.save` file is read through an allow-list that rebuilds only tensors and plain
    containers, as torch.load(weights_only=True) does; `weights_only=False`, torch.load's
    way of saying the file is trusted, also lets it hold other Python objects (argparse
    namespaces, NumPy arrays: globals outside torch, which can run code). `pickle_load_args`
    (e.g. encoding='latin1') go to the unpickler; `mmap` only chooses how the file is read.

    A safetensors file's bfloat16 entries load as `phalanx.bfloat16` tensors;
    `upcast_bfloat16=True` (a Phalanx option) loads them as float32 instead, exactly (a
    bfloat16 is the top half of a float32). A damaged or crafted file raises ValueError."""
    if hasattr(f, "read"):
        path, data = getattr(f, "name", "<file object>"), f.read()
    else:
        path = os.fspath(f)
        with open(path, "rb") as fh:
            data = fh.read()
    if pickle_module is not None and pickle_module is not pickle:
        name = getattr(pickle_module, "__name__", pickle_module)
        raise NotImplementedError(f"load(pickle_module={name}): Phalanx reads torch.save "
                                  f"files with its own unpickler; leave pickle_module unset")
    if serialization_torch.is_torch_zip(data):  # torch.save's format, through an allow-list
        return serialization_torch.load(data, path, map_location,
                                        trusted=weights_only is False, **pickle_load_args)
    header = _read_header(data, path)
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError(f"{path} is corrupt: its __metadata__ is not a map of strings")
    arrays = _read_arrays(memoryview(data)[8 + int.from_bytes(data[:8], "little"):], header,
                          path, upcast_bfloat16)
    if _TREE_KEY not in meta:  # a plain safetensors file: a dict of tensors
        return {k: _Decoder(arrays, map_location, path)._tensor(a, {"device": "cpu",
                                                                   "requires_grad": False})
                for k, a in arrays.items()}
    if meta.get(_FORMAT_KEY) != FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {meta.get(_FORMAT_KEY)!r} "
                         f"(this Phalanx reads {FORMAT!r})")
    try:
        tree = json.loads(meta[_TREE_KEY])
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{path} is corrupt: unreadable structure ({e})") from None
    return _Decoder(arrays, map_location, path).decode(tree)


# safetensors dtype names -> NumPy; BF16 is read as its raw 16 bits, see _read_arrays
_ST_DTYPES = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16,
              "U16": np.uint16, "I32": np.int32, "U32": np.uint32, "I64": np.int64,
              "U64": np.uint64, "F16": np.float16, "F32": np.float32, "F64": np.float64,
              "BF16": np.uint16, "C64": np.complex64}
MAX_DIMS = 64


def _read_arrays(payload, header, path, upcast_bfloat16):
    """The tensors the header describes, each checked (dtype, shape, offsets) and copied out
    of `payload`, the bytes after the header."""
    arrays = {}
    for name, entry in header.items():
        def bad(what):
            return ValueError(f"{path} is corrupt or truncated: tensor {name!r:.60} {what}")
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad("is not a {dtype, shape, data_offsets} entry")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _ST_DTYPES:
            raise bad(f"has dtype {dtype!r:.40}, which Phalanx cannot load (it reads "
                      f"{', '.join(_ST_DTYPES)})")
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(
                type(d) is int and 0 <= d < _INT64_END for d in shape)):
            raise bad(f"has shape {shape!r:.60}; expected a list of at most {MAX_DIMS} sizes in "
                      f"[0, 2**63)")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= len(payload)):
            raise bad(f"has data offsets {offsets!r:.60} outside the {len(payload)} bytes of "
                      f"data the file holds")
        itemsize = np.dtype(_ST_DTYPES[dtype]).itemsize
        if offsets[1] - offsets[0] != math.prod(shape) * itemsize:
            raise bad(f"of shape {shape} and dtype {dtype} needs "
                      f"{math.prod(shape) * itemsize} bytes, but its offsets span "
                      f"{offsets[1] - offsets[0]}")
        if math.prod(d for d in shape if d) * itemsize >= _INT64_END:  # an empty array's
            raise bad(f"has shape {shape}: even empty, NumPy can't hold it (its nonzero sizes "
                      f"times the {itemsize}-byte item size reach 2**63)")
        arr = np.frombuffer(payload[offsets[0]:offsets[1]], dtype=_ST_DTYPES[dtype]).copy()
        if dtype == "BF16" and upcast_bfloat16:  # the top half of a float32: exact
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        elif dtype == "BF16":
            arr = arr.view(dtypes.bfloat16.np)
            dtypes.to_numpy_dtype(dtypes.bfloat16)   # turns on bfloat16 compute
        arrays[name] = arr.reshape(shape)
    return arrays
