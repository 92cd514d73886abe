"""`torch.distributed.checkpoint.save` / `load` (DCP): each rank writes only what it holds, and
a checkpoint loads into any layout, at any world size.

    state = {"model": model.state_dict(), "step": 100}     # or Stateful objects (AppState)
    dcp.save(state, checkpoint_id="ckpt/100")              # every rank calls it
    dcp.load(state, checkpoint_id="ckpt/100")              # in place, into state's tensors

A checkpoint is a folder: one safetensors file per rank (`__<rank>_<save id>.safetensors`)
holding that rank's chunks of sharded tensors (DTensors) and, on rank 0 only, the tensors
every rank has whole; and `.metadata` (JSON), written by rank 0 once every rank's file is in
place: for each tensor its shape, dtype and where each chunk lies (file, offset, shape), and
the non-tensor values (numbers, strings, lists). Files are written under temporary names and
renamed, and a folder without `.metadata` is refused, so a crash mid-save never leaves a
checkpoint that loads wrong; an earlier save's files go once the new metadata is in place;
nothing is unpickled. `async_save` copies the tensors and agrees the layout at once, then
writes in a background thread (its Future completes when the checkpoint is whole).

Loading reads, for each tensor of the given state dict, the parts of the saved chunks that
overlap what this rank holds (the whole tensor, or its DTensor chunk), so a checkpoint saved
by 4 ranks loads on 2, or into an unsharded model. Nested dicts and lists are addressed by
dotted paths ("optim.state.layer.weight.exp_avg"), as in PyTorch; a value with both
`state_dict` and `load_state_dict` (a module, an optimizer, an application's `Stateful`) is
saved as its `state_dict()` and restored by `load_state_dict` after its tensors are filled.
"""
import json
import math
import os
import re
import reprlib
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...tensor import Tensor
from ...tensor.backend import to_device

METADATA = ".metadata"
VERSION = 1
# what `save` writes and nothing else: `__<rank>_<save id>.safetensors` in the folder itself
_FILE_NAME = re.compile(r"__(?:0|[1-9][0-9]*)_([0-9a-f]+)\.safetensors")
_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                     "uint64", "float16", "float32", "float64", "bfloat16",
                     "complex64"})                 # Phalanx's dtypes that safetensors stores
_MAX_DIM = 2 ** 62                                         # any real tensor's dimension


class FileSystemWriter:
    """Where `save` writes: a folder (PyTorch's storage writer for a file system)."""

    def __init__(self, path, single_file_per_rank=True, sync_files=True, thread_count=1,
                 per_thread_copy_ahead=10_000_000, cache_staged_state_dict=False,
                 overwrite=True):
        if not single_file_per_rank or thread_count != 1 or cache_staged_state_dict:
            raise NotImplementedError("FileSystemWriter: Phalanx writes one file per rank "
                                      "from one thread; keep the defaults")
        self.path, self.sync_files, self.overwrite = os.fspath(path), sync_files, overwrite


class FileSystemReader:
    """Where `load` reads: a folder written by `save`."""

    def __init__(self, path):
        self.path = os.fspath(path)


def save(state_dict, *, checkpoint_id=None, storage_writer=None, planner=None,
         process_group=None, no_dist=False, use_collectives=True):
    """Write `state_dict` to the folder `checkpoint_id` (every rank of `process_group` calls
    it; with `no_dist=True` one process alone). Returns the metadata written."""
    job = _Save(state_dict, checkpoint_id, storage_writer, planner, process_group, no_dist,
                use_collectives, copy=False)
    job.write_mine()
    _barrier(job.group)                        # every file is in place ...
    if job.rank == 0:
        job.write_metadata()                   # ... before the checkpoint counts
    _barrier(job.group)
    return job.metadata


def async_save(state_dict, *, checkpoint_id=None, storage_writer=None, planner=None,
               process_group=None, async_checkpointer_type=None, async_stager=None,
               no_dist=False, use_collectives=True):
    """`save` with the writing in a background thread: the tensors are copied (staged) and
    the layout agreed with the other ranks now, so training may go on and change them; the
    returned `concurrent.futures.Future` completes on every rank once the whole checkpoint
    is in place (rank 0 writes the metadata when every rank's file is there). Call its
    `result()` before the next save."""
    if async_stager is not None:
        raise NotImplementedError("dcp.async_save(async_stager=...): Phalanx stages into "
                                  "host memory itself; pass None")
    if async_checkpointer_type not in (None, "thread") and \
            getattr(async_checkpointer_type, "value", None) != "thread":
        raise NotImplementedError(f"dcp.async_save(async_checkpointer_type="
                                  f"{async_checkpointer_type!r}): Phalanx writes from a thread")
    job = _Save(state_dict, checkpoint_id, storage_writer, planner, process_group, no_dist,
                use_collectives, copy=True)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcp-async-save")
    future = executor.submit(job.finish_in_background)
    executor.shutdown(wait=False)
    return future


class _Save:
    """One save: what this rank writes, the metadata every rank agreed on, the files."""

    def __init__(self, state_dict, checkpoint_id, storage_writer, planner, process_group,
                 no_dist, use_collectives, copy):
        self.folder, writer = _folder(checkpoint_id, storage_writer, FileSystemWriter,
                                      "storage_writer")
        _no_planner(planner, use_collectives)
        self.sync = writer.sync_files if writer is not None else True
        self.group, self.rank = _group(process_group, no_dist)
        flat, paths = {}, {}
        _flatten(_saved_form(state_dict), (), flat, paths)
        mine, chunks, values = {}, [], {}      # everything checked before a file is touched
        for key, value in flat.items():
            if isinstance(value, Tensor):
                entry = _chunk(key, value, self.rank, copy)
                if entry is not None:
                    mine[key] = entry.pop("array")
                    chunks.append(entry)
            else:
                values[key] = _plain(key, value)
        os.makedirs(self.folder, exist_ok=True)
        # an earlier checkpoint here stays whole (its files keep their names) until the new
        # metadata replaces its own, so a save that fails leaves it loadable
        if writer is not None and not writer.overwrite and \
                os.path.exists(os.path.join(self.folder, METADATA)):   # every rank sees it
            raise RuntimeError(f"dcp.save: {self.folder} holds a checkpoint already and "
                               f"overwrite=False")
        # a name of this save's own for every file, so that no file of an earlier save is
        # taken for one of this one
        nonce = secrets.token_hex(4) if self.rank == 0 else None
        everyone = self.group.allgather_plain([nonce, chunks]) if self.group is not None \
            else [[nonce, chunks]]
        nonce = everyone[0][0]
        self.name = f"__{self.rank}_{nonce}.safetensors"
        self.mine = mine
        metadata = {"version": VERSION, "save": nonce, "tensors": {}, "values": values,
                    "paths": paths,
                    "files": sorted({f"__{r}_{nonce}.safetensors"
                                     for r in range(len(everyone))})}
        for r, (_, rank_chunks) in enumerate(everyone):
            for c in rank_chunks:
                t = metadata["tensors"].setdefault(c["key"], {"shape": c["whole"],
                                                              "dtype": c["dtype"],
                                                              "chunks": []})
                if not any(d["offsets"] == c["offsets"] and d["shape"] == c["shape"]
                           for d in t["chunks"]):   # HSDP's replicas write the same chunk
                    t["chunks"].append({"file": f"__{r}_{nonce}.safetensors",
                                        "offsets": c["offsets"], "shape": c["shape"]})
        self.metadata = metadata

    def write_mine(self):
        _write_atomic(os.path.join(self.folder, self.name), self.mine, self.sync)

    def write_metadata(self):
        """Rank 0, once every file is in place: the metadata, then the earlier saves'
        files go."""
        text = json.dumps(self.metadata, sort_keys=True).encode()
        _replace(os.path.join(self.folder, METADATA), text, self.sync)
        for name in os.listdir(self.folder):
            if name.startswith("__") and name.endswith(".safetensors") and \
                    name not in self.metadata["files"]:
                os.remove(os.path.join(self.folder, name))

    def finish_in_background(self, timeout=1800.0):
        """The async save's thread: this rank's file; rank 0 waits for the others' and
        writes the metadata; every rank returns once the metadata of this save is there."""
        self.write_mine()
        deadline = time.monotonic() + timeout
        if self.rank == 0:
            _wait_for(lambda: all(os.path.exists(os.path.join(self.folder, f))
                                  for f in self.metadata["files"]), deadline,
                      f"the other ranks' files of {self.folder}")
            self.write_metadata()
        else:
            _wait_for(self._metadata_written, deadline, f"the metadata of {self.folder}")
        return self.metadata

    def _metadata_written(self):
        try:
            with open(os.path.join(self.folder, METADATA)) as f:
                written = json.load(f)
        except (OSError, ValueError, RecursionError):
            return False
        return isinstance(written, dict) and written.get("save") == self.metadata["save"]


def _wait_for(done, deadline, what, poll=0.05):
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"dcp.async_save: gave up waiting for {what}")
        time.sleep(poll)


def load(state_dict, *, checkpoint_id=None, storage_reader=None, planner=None,
         process_group=None, no_dist=False):
    """Fill `state_dict`'s tensors in place (and replace its other values) from the
    checkpoint in `checkpoint_id`; Stateful values get `load_state_dict` afterwards. Every
    rank reads what it holds; no collective is needed. Every rank reads and checks the whole
    metadata before it reads a tensor, so damaged metadata raises the same ValueError on
    every rank."""
    folder, _ = _folder(checkpoint_id, storage_reader, FileSystemReader, "storage_reader")
    _no_planner(planner, True)
    _group(process_group, no_dist)
    _fill(state_dict, (), read_metadata(folder), folder)


def read_metadata(folder):
    """The checked metadata of the checkpoint in `folder` (a ValueError names any fault)."""
    path = os.path.join(folder, METADATA)
    if not os.path.exists(path):
        raise FileNotFoundError(f"dcp.load: {folder} holds no complete checkpoint (no "
                                f"{METADATA}: nothing was saved there, or the save did not "
                                f"finish)")
    with open(path, "rb") as f:
        text = f.read()
    try:
        metadata = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"dcp.load: the {METADATA} of the checkpoint in {folder} is not "
                         f"JSON that save wrote ({type(e).__name__}: {e}); the checkpoint is "
                         f"damaged") from None
    _check_metadata(metadata, folder)
    return metadata


# ---- saving --------------------------------------------------------------------------------
def _saved_form(value):
    if _is_stateful(value):
        return _saved_form(value.state_dict())
    if isinstance(value, dict):
        return {k: _saved_form(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_saved_form(v) for v in value)
    return value


def _is_stateful(value):
    return not isinstance(value, (Tensor, dict, list, tuple)) and \
        callable(getattr(value, "state_dict", None)) and \
        callable(getattr(value, "load_state_dict", None))


def _flatten(value, path, out, paths=None):
    """Leaves of nested dicts and lists, by dotted path; a tuple of plain values is a leaf.
    `paths` gets each leaf's path as [["key", k] or ["index", i], ...], which the dotted
    key cannot give back (names hold dots)."""
    if isinstance(value, dict):
        if not value:
            _leaf(out, paths, path, {})
        for k, v in value.items():
            _flatten(v, path + (("key", k if isinstance(k, (str, int)) else str(k)),), out,
                     paths)
    elif isinstance(value, list) and any(isinstance(v, (Tensor, dict, list)) for v in value):
        for i, v in enumerate(value):
            _flatten(v, path + (("index", i),), out, paths)
    else:
        _leaf(out, paths, path, value)


def _leaf(out, paths, path, value):
    key = _key(path)
    out[key] = value
    if paths is not None:
        paths[key] = [list(step) for step in path]


def _key(path):
    return ".".join(str(step[1]) for step in path)


def _chunk(key, t, rank, copy=False):
    """What this rank writes of tensor `t`: its DTensor chunk, or the whole tensor on rank 0
    (every rank holds the same); None if nothing. `copy`: a copy of the values, which the
    caller may go on changing."""
    whole = list(t.shape)
    if t.is_meta:                          # every rank says so, before any collective
        raise ValueError(f"dcp.save: {key} is a meta tensor (no data)")
    placements = getattr(t, "_placements", None)
    offsets = [0] * len(whole)
    if placements is not None:
        if any(p.is_partial() for p in placements):
            raise ValueError(f"dcp.save: {key} is a Partial DTensor; reduce it first "
                             f"(redistribute to Replicate or Shard)")
        if not t._first_replica():         # another rank writes the same part
            return None
        offsets = t._box()[0]
    elif rank != 0:
        return None
    array = to_device(t.detach()._data, "cpu")
    array = np.array(array, order="C") if copy else np.ascontiguousarray(array)
    if array.size == 0 and math.prod(whole) > 0:
        return None                        # an empty chunk of a non-empty tensor
    return {"key": key, "whole": whole, "dtype": str(array.dtype), "offsets": offsets,
            "shape": list(array.shape), "array": array}


def _plain(key, value):
    """A non-tensor value as JSON (tuples marked, to come back as tuples)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_plain(key, v) for v in value]}
    if isinstance(value, list):
        return [_plain(key, v) for v in value]
    if isinstance(value, dict):
        return {"__dict__": {str(k): _plain(key, v) for k, v in value.items()}}
    raise TypeError(f"dcp.save: {key} is a {type(value).__name__}; a checkpoint holds "
                    f"tensors, numbers, strings, and lists, tuples and dicts of them (no "
                    f"pickled objects)")


def _unplain(value):
    if isinstance(value, dict) and set(value) == {"__tuple__"}:
        return tuple(_unplain(v) for v in value["__tuple__"])
    if isinstance(value, dict) and set(value) == {"__dict__"}:
        return {k: _unplain(v) for k, v in value["__dict__"].items()}
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


def _write_atomic(path, arrays, sync):
    from safetensors.numpy import save
    _replace(path, save(arrays) if arrays else save({}), sync)


def _replace(path, data, sync=True):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


# ---- loading -------------------------------------------------------------------------------
def _fill(container, path, metadata, folder):
    """Load into `container` (a dict or list) the entries under `path`."""
    kind = "key" if isinstance(container, dict) else "index"
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for k, value in list(items):
        here = path + ((kind, k),)
        if _is_stateful(value):
            inner = value.state_dict()
            _fill(inner, here, metadata, folder)
            value.load_state_dict(inner)
        elif isinstance(value, dict) and value:
            _fill(value, here, metadata, folder)
        elif isinstance(value, list) and any(isinstance(v, (Tensor, dict, list))
                                             for v in value):
            _fill(value, here, metadata, folder)
        elif isinstance(value, Tensor):
            _read_tensor(value, _key(here), metadata, folder)
        else:
            key = _key(here)
            if key not in metadata["values"]:
                raise RuntimeError(f"dcp.load: the checkpoint in {folder} has no {key!r}")
            container[k] = _unplain(metadata["values"][key])


def _read_tensor(t, key, metadata, folder):
    from safetensors import safe_open
    saved = metadata["tensors"].get(key)
    if saved is None:
        raise RuntimeError(f"dcp.load: the checkpoint in {folder} has no tensor {key!r}")
    if list(t.shape) != saved["shape"]:
        raise RuntimeError(f"dcp.load: {key} has shape {saved['shape']} in the checkpoint but "
                           f"{list(t.shape)} here")
    lo, hi = t._box() if hasattr(t, "_box") else ([0] * t.ndim, list(t.shape))  # ours
    dtype = np.dtype(saved["dtype"])
    # the chunks tile the tensor exactly (`_check_chunks`), so `out` is written everywhere
    out = np.empty([b - a for a, b in zip(lo, hi)], dtype)
    covered = 0
    for i, c in enumerate(saved["chunks"]):
        start = [max(a, o) for a, o in zip(lo, c["offsets"])]
        stop = [min(b, o + n) for b, o, n in zip(hi, c["offsets"], c["shape"])]
        if any(a >= b for a, b in zip(start, stop)) and t.ndim:
            continue
        where = f"tensors[{key!r}].chunks[{i}]"
        with safe_open(os.path.join(folder, c["file"]), framework="np") as f:
            if key not in f.keys():
                raise _damaged(folder, where, f"names {c['file']}, which holds no {key!r}")
            view = f.get_slice(key)
            stored = list(view.get_shape())
            if stored != c["shape"] and not (t.ndim == 0 and stored in ([], [1])):
                raise _damaged(folder, where, f"has shape {c['shape']} but {c['file']} holds "
                                              f"{key!r} with shape {stored}")
            part = view[tuple(slice(a - o, b - o) for a, b, o in
                              zip(start, stop, c["offsets"]))] if t.ndim else \
                f.get_tensor(key).reshape(())     # safetensors keeps a 0-d tensor as (1,)
        if part.dtype != dtype:
            raise _damaged(folder, where, f"{c['file']} holds {key!r} as {part.dtype}, but the "
                                          f"metadata says {dtype}")
        out[tuple(slice(a - l, b - l) for a, b, l in zip(start, stop, lo))] = part
        covered += math.prod(b - a for a, b in zip(start, stop))
    if covered != out.size:                     # cannot happen after `_check_chunks`
        raise RuntimeError(f"dcp.load: the chunks of {key} in {folder} cover {covered} of "
                           f"the {out.size} elements this rank needs (a damaged checkpoint)")
    data = t._data
    data[...] = to_device(out, t.device).astype(data.dtype, copy=False)
    t._version[0] += 1


# ---- checking the metadata -----------------------------------------------------------------
# Loading trusts nothing in `.metadata` that it has not checked here: every file it opens is
# one of this save's own, in the folder; every chunk lies inside its tensor, and a tensor's
# chunks cover it exactly once, so no element of the output is left unwritten.
def _damaged(folder, where, what):
    return ValueError(f"dcp.load: the {METADATA} of the checkpoint in {folder} is damaged: "
                      f"{where} {what}; save the checkpoint again")


def _check_metadata(metadata, folder):
    """Raise one ValueError naming the key and the fault unless `metadata` is as `save`
    writes it."""
    def need(value, kind, where):
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise _damaged(folder, where, f"is {reprlib.repr(value)} "
                                          f"({type(value).__name__}), not a {kind.__name__}")
        return value

    def field(entry, name, kind, where):
        if name not in entry:
            raise _damaged(folder, where or "the top level", f"has no {name!r}")
        return need(entry[name], kind, f"{where}.{name}" if where else name)

    need(metadata, dict, "the top level")
    version = field(metadata, "version", int, "")
    if version != VERSION:
        raise _damaged(folder, "version", f"is {version}; this Phalanx reads version "
                                          f"{VERSION}")
    nonce = field(metadata, "save", str, "")
    if not re.fullmatch(r"[0-9a-f]+", nonce):
        raise _damaged(folder, "save", f"is {reprlib.repr(nonce)}, not a save id (hex digits)")
    files = field(metadata, "files", list, "")
    for i, name in enumerate(files):
        match = _FILE_NAME.fullmatch(need(name, str, f"files[{i}]"))
        if match is None or match.group(1) != nonce:
            raise _damaged(folder, f"files[{i}]", f"is {reprlib.repr(name)}, not a file "
                                                  f"name of save {nonce} "
                                                  f"(__<rank>_{nonce}.safetensors)")
    files = set(files)
    for key, entry in field(metadata, "tensors", dict, "").items():
        where = f"tensors[{key!r}]"
        need(entry, dict, where)
        whole = _check_ints(field(entry, "shape", list, where), f"{where}.shape", folder)
        dtype = field(entry, "dtype", str, where)
        if dtype not in _DTYPES:
            raise _damaged(folder, f"{where}.dtype", f"is {reprlib.repr(dtype)}, not one of "
                                                     f"{sorted(_DTYPES)}")
        chunks = field(entry, "chunks", list, where)
        for i, c in enumerate(chunks):
            here = f"{where}.chunks[{i}]"
            need(c, dict, here)
            name = field(c, "file", str, here)
            if name not in files:
                raise _damaged(folder, f"{here}.file", f"is {reprlib.repr(name)}, not one of "
                                                       f"the files listed in 'files'")
            offsets = _check_ints(field(c, "offsets", list, here), f"{here}.offsets", folder)
            shape = _check_ints(field(c, "shape", list, here), f"{here}.shape", folder)
            if len(offsets) != len(whole) or \
                    len(shape) != len(whole) and not (not whole and shape == [1]):
                raise _damaged(folder, here, f"has offsets {offsets} and shape {shape}, but "
                                             f"the tensor has {len(whole)} dimensions")
            if any(o + n > w for o, n, w in zip(offsets, shape, whole)):
                raise _damaged(folder, here, f"(offsets {offsets}, shape {shape}) reaches "
                                             f"outside the tensor's shape {whole}")
        _check_chunks(chunks, whole, where, folder)
    _check_values(field(metadata, "values", dict, ""), folder)
    if "paths" in metadata:                    # older saves have none
        _check_paths(need(metadata["paths"], dict, "paths"), metadata, folder)


def _check_paths(paths, metadata, folder):
    """Each leaf's path: [["key", str or int] or ["index", int], ...], for every tensor and
    value the checkpoint holds, and nothing else."""
    leaves = set(metadata["tensors"]) | set(metadata["values"])
    if set(paths) != leaves:
        odd = sorted(set(paths) ^ leaves)[:3]
        raise _damaged(folder, "paths", f"does not name the checkpoint's entries ({odd})")
    for key, path in paths.items():
        ok = isinstance(path, list) and all(
            isinstance(step, list) and len(step) == 2 and (
                step[0] == "key" and isinstance(step[1], (str, int)) or
                step[0] == "index" and isinstance(step[1], int) and step[1] >= 0)
            and not isinstance(step[1], bool) for step in path)
        if not ok or _key(path) != key:
            raise _damaged(folder, f"paths[{key!r}]", f"is {reprlib.repr(path)}, not the "
                                                      f"path of {key!r}")


def _check_ints(values, where, folder):
    for i, v in enumerate(values):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _MAX_DIM:
            raise _damaged(folder, f"{where}[{i}]", f"is {reprlib.repr(v)}, not a "
                                                    f"non-negative integer")
    return values


def _check_chunks(chunks, whole, where, folder):
    """The chunks (inside the tensor already) cover it exactly: no two overlap, and their
    sizes add up to the tensor's."""
    if whole:                                   # (a 0-d tensor has one chunk)
        lo = np.array([c["offsets"] for c in chunks], np.int64).reshape(-1, len(whole))
        hi = lo + np.array([c["shape"] for c in chunks], np.int64).reshape(lo.shape)
        for i in range(len(chunks) - 1):
            overlap = np.all(np.maximum(lo[i], lo[i + 1:]) < np.minimum(hi[i], hi[i + 1:]),
                             axis=1)
            if overlap.any():
                j = i + 1 + int(np.argmax(overlap))
                raise _damaged(folder, f"{where}.chunks[{i}]",
                               f"and chunks[{j}] overlap (offsets {chunks[i]['offsets']} "
                               f"and {chunks[j]['offsets']})")
    total = sum(math.prod(c["shape"]) for c in chunks)
    if total != math.prod(whole):
        raise _damaged(folder, f"{where}.chunks", f"hold {total} elements in all, but the "
                                                  f"tensor of shape {whole} has "
                                                  f"{math.prod(whole)}")


def _check_values(values, folder):
    """The non-tensor values are as `_plain` writes them: JSON scalars and lists, and dicts
    only as {"__tuple__": [...]} or {"__dict__": {...}}."""
    todo = [(f"values[{k!r}]", v) for k, v in values.items()]
    while todo:
        where, value = todo.pop()
        if isinstance(value, list):
            todo.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, dict):
            if set(value) == {"__tuple__"} and isinstance(value["__tuple__"], list):
                todo.extend((f"{where}[{i}]", v) for i, v in enumerate(value["__tuple__"]))
            elif set(value) == {"__dict__"} and isinstance(value["__dict__"], dict):
                todo.extend((f"{where}[{k!r}]", v) for k, v in value["__dict__"].items())
            else:
                raise _damaged(folder, where, f"is {reprlib.repr(value)}, not a value save "
                                              f"writes (a dict is {{'__tuple__': [...]}} or "
                                              f"{{'__dict__': {{...}}}})")


# ---- arguments -----------------------------------------------------------------------------
def _folder(checkpoint_id, storage, kind, what):
    if storage is not None and not isinstance(storage, kind):
        raise NotImplementedError(f"dcp: {what}={type(storage).__name__}: Phalanx reads and "
                                  f"writes folders only (pass checkpoint_id or a "
                                  f"{kind.__name__})")
    if checkpoint_id is None and storage is None:
        raise RuntimeError("dcp: pass checkpoint_id (a folder) or a storage "
                           "writer/reader")
    return os.fspath(checkpoint_id if checkpoint_id is not None else storage.path), storage


def _no_planner(planner, use_collectives):
    if planner is not None:
        raise NotImplementedError("dcp: custom planners are not supported; pass planner=None")
    if not use_collectives:
        raise NotImplementedError("dcp.save(use_collectives=False) is not supported: rank 0 "
                                  "gathers the chunks' layout to write the metadata")


def _group(process_group, no_dist):
    """(the process group, this rank in it); (None, 0) alone."""
    from ..world import is_initialized, resolve
    if no_dist or not is_initialized():
        return None, 0
    group = resolve(process_group)
    return group, group.rank


def _barrier(group):
    if group is not None:
        group.barrier().wait()
