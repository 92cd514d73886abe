"""Read checkpoints written by `torch.save` (its zip format) without PyTorch and without
running code from the file, as PyTorch's own `torch.load(weights_only=True)` does.

A torch.save file is a zip archive: `<name>/data.pkl` pickles the object, and every tensor's
storage is a raw little-endian byte file `<name>/data/<key>`, referenced from the pickle by a
persistent id. Every entry's size is checked against what it should hold before a byte of it
is decompressed, so a small file cannot make us inflate gigabytes.

The pickle is read by `_WeightsOnlyUnpickler`, which keeps process state out of the file's
reach with two rules:

  globals      `find_class` knows only an allow-list (the functions PyTorch pickles tensors,
               parameters, storages, sizes, dtypes and devices with, `OrderedDict`, sets) and
               maps each to a Phalanx equivalent; any other global (`os.system`, a module
               class, a NumPy array, ...) is refused with an error naming it.
  opcodes      the opcodes that call, construct or change an object (REDUCE, INST, OBJ,
               NEWOBJ, NEWOBJ_EX, BUILD, APPEND(S), SETITEM(S), ADDITEMS, EXT*) are replaced:
               only the allow-listed functions and container constructors may be called; only
               an OrderedDict (state_dict()'s `_metadata`) or a tensor this load built may take
               state (BUILD); only lists, dicts and sets are filled. So a file can never set an
               attribute of a class, a dtype or any object it did not build.

Tensors that share a storage in the file (views, tied weights) share memory after loading, as
in PyTorch, when they land on the CPU.
"""
import collections
import io
import math
import pickle
import zipfile
import zlib

import numpy as np

from .nn.parameter import Parameter
from .tensor import Size, Tensor, backend, dtypes

ZIP_MAGIC = b"PK\x03\x04"
# data.pkl holds only the structure (a few hundred bytes a tensor; the tensors' bytes are
# entries of their own), so even a checkpoint of millions of tensors is far below 1 GiB: a
# bigger one is a decompression bomb, not a checkpoint
MAX_PICKLE_BYTES = 1 << 30
_MAX_BYTEORDER_BYTES = 16        # "little" or "big"
_INT64_END = 1 << 63             # sizes, strides, offsets and byte counts stay below this
_MAX_DIMS = 64                   # NumPy's limit

# storage class name -> NumPy dtype (complex32 and quantized storages are not listed: Phalanx
# has no such dtypes)
_STORAGES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": dtypes.bfloat16.np,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64, "ComplexDoubleStorage": np.complex128,
}
_DTYPES = {"float64": "float64", "double": "float64", "float32": "float32", "float": "float32",
           "float16": "float16", "half": "float16", "int64": "int64", "long": "int64",
           "int32": "int32", "int": "int32", "int16": "int16", "short": "int16",
           "int8": "int8", "uint8": "uint8", "bool": "bool", "bfloat16": "bfloat16",
           "complex64": "complex64", "cfloat": "complex64", "complex128": "complex128",
           "cdouble": "complex128"}
_UNSUPPORTED_DTYPES = {"complex32", "chalf", "ComplexHalfStorage"}
# what set/frozenset/OrderedDict may be built from: containers the pickle itself spelled out
# (iterating anything else, e.g. a stride-0 tensor of 10**12 rows, could run without end)
_CONTAINERS = (list, tuple, dict, set, frozenset, collections.OrderedDict)


def _empty(value):
    """None or an empty container: what torch.save writes for no hooks, metadata or state
    (tested without bool(), which a tensor would answer elementwise)."""
    return value is None or isinstance(value, _CONTAINERS) and len(value) == 0


def is_torch_zip(data):
    # a safetensors file's JSON header starts at byte 8, whatever its length's bytes look like
    return bytes(data[:4]) == ZIP_MAGIC and bytes(data[8:9]) != b"{"


class _StorageType:
    """What `torch.FloatStorage` and friends unpickle to: only a dtype."""

    def __init__(self, name, np_dtype):
        self.name, self.np_dtype = name, np.dtype(np_dtype)


class _Storage:
    """One storage of the file: a flat CPU array and the device it was saved from."""

    def __init__(self, array, location):
        self.array, self.location = array, location


class WeightsOnlyUnpicklingError(pickle.UnpicklingError):
    pass


class _MapLocationError(TypeError):
    pass


class _TrustedUnpickler(pickle.Unpickler):
    """torch.load's weights_only=False, asked for by the user: the allow-list first, then any
    global outside torch as pickle would find it, with all of pickle's opcodes (such a file
    can run code)."""

    def __init__(self, file, loader, **pickle_load_args):
        super().__init__(file, **pickle_load_args)
        self._loader = loader

    def find_class(self, module, name):
        found = self._loader.allowed(module, name)
        if found is not None:
            return found
        if module.split(".")[0] != "torch":
            return super().find_class(module, name)
        raise WeightsOnlyUnpicklingError(
            f"{self._loader.path}: {module}.{name} is one of PyTorch's own classes, which "
            f"Phalanx cannot rebuild; load the file in PyTorch and save its state_dict()")

    def persistent_load(self, pid):
        return self._loader.storage(pid)


class _WeightsOnlyUnpickler(pickle._Unpickler):
    """pickle's own (pure Python) unpickler with every opcode that calls, constructs or
    changes an object replaced by one that asks the loader first; see the module docstring.
    The pure Python unpickler is the one whose opcodes can be replaced one by one; the file's
    pickle holds only the structure (the tensors' bytes are entries of their own), so its
    speed stays a small part of a load."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, loader, **pickle_load_args):
        super().__init__(file, **pickle_load_args)
        self._loader = loader

    def find_class(self, module, name):
        found = self._loader.allowed(module, name)
        if found is None:
            raise WeightsOnlyUnpicklingError(self._loader.refusal(f"the global {module}.{name}"))
        return found

    def persistent_load(self, pid):
        return self._loader.storage(pid)

    def _refuse(self, what):
        raise WeightsOnlyUnpicklingError(self._loader.refusal(what))

    # ---- calls and constructions: only the allow-listed callables ----------------------
    def load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = self._loader.call(self.stack[-1], args, "REDUCE")
    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_inst(self):
        module = self.readline()[:-1].decode("ascii")
        name = self.readline()[:-1].decode("ascii")
        cls = self.find_class(module, name)
        self.append(self._loader.call(cls, tuple(self.pop_mark()), "INST"))
    dispatch[pickle.INST[0]] = load_inst

    def load_obj(self):
        args = self.pop_mark()
        cls = args.pop(0)
        self.append(self._loader.call(cls, tuple(args), "OBJ"))
    dispatch[pickle.OBJ[0]] = load_obj

    # NEWOBJ is cls.__new__(cls, *args): for the classes allowed it is the same as the call
    # (an OrderedDict or set is filled afterwards), and a Tensor is never half-built
    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._loader.call(cls, args, "NEWOBJ", new=True))
    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if not _empty(kwargs):
            self._refuse(f"keyword arguments {kwargs!r:.60} to {self._loader.describe(cls)} "
                         f"(pickle NEWOBJ_EX)")
        self.append(self._loader.call(cls, args, "NEWOBJ_EX", new=True))
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def _load_ext(self):
        self._refuse("a global by extension code (pickle EXT1/EXT2/EXT4)")
    for _op in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op[0]] = _load_ext

    # ---- state and items: only objects this load built ---------------------------------
    def load_build(self):
        state = self.stack.pop()
        self._loader.set_state(self.stack[-1], state)
    dispatch[pickle.BUILD[0]] = load_build

    def _target(self, types, opcode):
        target = self.stack[-1]
        if type(target) not in types:
            self._refuse(f"pickle {opcode} into {self._loader.describe(target)}; only "
                         f"{' and '.join(t.__name__ for t in types)} objects take items")
        return target

    def load_append(self):
        item = self.stack.pop()
        self._target((list,), "APPEND").append(item)
    dispatch[pickle.APPEND[0]] = load_append

    def load_appends(self):
        items = self.pop_mark()
        self._target((list,), "APPENDS").extend(items)
    dispatch[pickle.APPENDS[0]] = load_appends

    def load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._target((dict, collections.OrderedDict), "SETITEM")[key] = value
    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self):
        items = self.pop_mark()
        target = self._target((dict, collections.OrderedDict), "SETITEMS")
        if len(items) % 2:
            raise pickle.UnpicklingError("SETITEMS with an odd number of items")
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]
    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_additems(self):
        items = self.pop_mark()
        self._target((set,), "ADDITEMS").update(items)
    dispatch[pickle.ADDITEMS[0]] = load_additems
    del _op


class _Loader:
    def __init__(self, archive, prefix, path, map_location):
        self.archive, self.prefix, self.path = archive, prefix, path
        self.map_location = map_location
        self.little_endian = True
        self._storages = {}
        self._built = {}   # id -> the tensors this load built: the only ones BUILD may change
        # each bound method made once, so the pickle's references compare by identity
        functions = {("torch._utils", "_rebuild_tensor"): self._rebuild_tensor,
                     ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
                     ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
                     ("torch._utils", "_rebuild_parameter_with_state"):
                         self._rebuild_parameter_with_state,
                     ("torch._tensor", "_rebuild_from_type_v2"): self._rebuild_from_type_v2,
                     ("torch", "device"): self._device}
        self._allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset,
            ("torch", "Tensor"): Tensor,
            ("torch.nn.parameter", "Parameter"): Parameter,
            ("torch", "Size"): Size,
            **functions,
        }
        self._names = {id(v): f"{m}.{n}" for (m, n), v in self._allowed.items()}
        # what the file may construct with NEWOBJ (classes, each with its checked builder)
        self._classes = {id(c): (c, build) for c, build in (
            (collections.OrderedDict, self._container(collections.OrderedDict)),
            (set, self._container(set)), (frozenset, self._container(frozenset)),
            (Size, self._size))}
        # ... and call (REDUCE, INST, OBJ). Tensor and Parameter are only passed to
        # _rebuild_from_type_v2, never called: torch.save never does, and a call would make
        # a tensor of a size the file picks with no storage behind it (or, with NEWOBJ, one
        # with no data at all)
        self._calls = {id(f): (f, f) for f in functions.values()}
        self._calls.update(self._classes)

    # ---- the allow-list -----------------------------------------------------------------
    def allowed(self, module, name):
        if module == "__builtin__":  # protocol 2 writes Python 2's name for builtins
            module = "builtins"
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if module in ("torch", "torch.storage") and name in _STORAGES:
            return _StorageType(name, _STORAGES[name])
        if module == "torch" and name in _DTYPES:
            return dtypes._by_name(_DTYPES[name])
        if module == "torch" and name in _UNSUPPORTED_DTYPES:
            raise WeightsOnlyUnpicklingError(
                f"{self.path} holds torch.{name} data, which Phalanx has no dtype for; "
                f"convert those tensors in PyTorch (e.g. .cfloat() for complex32) and save "
                f"again")
        return None

    def refusal(self, what):
        return (f"{self.path}: refusing to load {what}. Phalanx reads torch.save files the way "
                f"torch.load(weights_only=True) does: tensors, storages, dicts, lists, tuples "
                f"and plain values only, so loading cannot run code from the file. If you "
                f"trust the file, pass weights_only=False (as to torch.load), or load it in "
                f"PyTorch and save its state_dict()")

    def describe(self, obj):
        name = self._names.get(id(obj))
        if isinstance(obj, type):
            return f"the class {name or f'{obj.__module__}.{obj.__qualname__}'}"
        if name is not None:
            return name
        if isinstance(obj, Tensor):  # not its repr: that could read 10**12 elements
            return f"a Tensor of size {list(obj.shape)}"
        if isinstance(obj, (dtypes.dtype, backend.Device, str, bytes, int, float)):
            return f"a {type(obj).__name__} ({obj!r:.40})"
        return f"a {type(obj).__name__}"

    def _corrupt(self, what):
        return ValueError(f"{self.path} is corrupt or not a torch.save checkpoint: {what}")

    # ---- what the pickle may do besides building containers ----------------------------
    def call(self, func, args, opcode, new=False):
        """`func(*args)` for REDUCE/INST/OBJ, `cls.__new__(cls, *args)` for NEWOBJ (`new`)."""
        table = self._classes if new else self._calls
        entry = table.get(id(func))
        if entry is None or entry[0] is not func:
            what = "construction" if new else "call"
            raise WeightsOnlyUnpicklingError(
                self.refusal(f"a {what} of {self.describe(func)} (pickle {opcode})"))
        if not isinstance(args, tuple):
            raise self._corrupt(f"pickle {opcode} with arguments {args!r:.60}, not a tuple")
        return entry[1](*args)

    def _container(self, cls):
        def build(*args):
            if len(args) > 1 or args and not isinstance(args[0], _CONTAINERS):
                raise self._corrupt(f"{cls.__name__} built from {args!r:.60}")
            return cls(*args)
        return build

    def _size(self, dims=()):
        if not (isinstance(dims, (tuple, list)) and all(
                type(d) is int and -_INT64_END <= d < _INT64_END for d in dims)):
            raise self._corrupt(f"a torch.Size of {dims!r:.60}")
        return Size(dims)

    def set_state(self, obj, state):
        """pickle's BUILD, where torch.load(weights_only=True) allows it: an OrderedDict takes
        attributes (state_dict()'s `_metadata`), and a tensor this load built takes
        Tensor.__setstate__'s (requires_grad, _, backward_hooks); nothing else takes state."""
        if type(obj) is collections.OrderedDict:
            # an attribute named like an OrderedDict method would shadow it on this object
            if not (type(state) is dict and all(type(k) is str and
                                                not hasattr(collections.OrderedDict, k)
                                                for k in state)):
                raise WeightsOnlyUnpicklingError(self.refusal(
                    f"the OrderedDict state {state!r:.60} (pickle BUILD); an OrderedDict "
                    f"takes only a dict of new attribute names"))
            obj.__dict__.update(state)
        elif type(obj) in (Tensor, Parameter) and self._built.get(id(obj)) is obj:
            if not (type(state) is tuple and len(state) == 3):
                raise WeightsOnlyUnpicklingError(self.refusal(
                    f"the tensor state {state!r:.60} (pickle BUILD); a tensor takes only "
                    f"(requires_grad, _, backward_hooks)"))
            requires_grad, _, hooks = state
            self._check_hooks(hooks)
            self._requires_grad(obj, requires_grad)
        else:
            raise WeightsOnlyUnpicklingError(self.refusal(
                f"state for {self.describe(obj)} (pickle BUILD); as in torch.load"
                f"(weights_only=True), only an OrderedDict or a tensor this file built may "
                f"take state"))

    # ---- archive entries --------------------------------------------------------------
    def read(self, name, what, size=None, limit=None):
        """The bytes of the entry `name`, its size (exactly `size`, at most `limit`) checked
        from the zip directory before any of it is decompressed. torch.save stores entries
        uncompressed; deflated ones load too, as in torch.load (other methods it can't read)."""
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise self._corrupt(f"{what} is missing from the archive") from None
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self._corrupt(f"{what} is compressed with zip method {info.compress_type}; "
                                f"torch.save files are stored (or deflated)")
        if size is not None and info.file_size != size:
            raise self._corrupt(f"{what} has {info.file_size} bytes, expected {size}")
        if limit is not None and info.file_size > limit:
            raise self._corrupt(f"{what} has {info.file_size} bytes, more than the {limit} "
                                f"such an entry can need")
        try:
            with self.archive.open(info) as f:
                raw = f.read(info.file_size)  # never more than the directory says
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, ValueError) as e:
            raise self._corrupt(f"{what} can't be read ({type(e).__name__}: {e})") from None
        if len(raw) != info.file_size:
            raise self._corrupt(f"{what} is truncated: {len(raw)} of {info.file_size} bytes")
        return raw

    # ---- storages ---------------------------------------------------------------------
    def storage(self, pid):
        if not (type(pid) is tuple and len(pid) == 5 and type(pid[0]) is str
                and pid[0] == "storage"):
            raise WeightsOnlyUnpicklingError(self.refusal(f"the persistent id {pid!r:.80}"))
        _, kind, key, location, numel = pid
        if not isinstance(kind, _StorageType):
            raise WeightsOnlyUnpicklingError(self.refusal(f"a storage of type {kind!r:.80}"))
        if not (isinstance(key, str) and isinstance(location, str) and type(numel) is int
                and 0 <= numel and numel * kind.np_dtype.itemsize < _INT64_END):
            raise self._corrupt(f"malformed storage reference {pid!r:.80}")
        cached = self._storages.get(key)
        if cached is not None:
            return cached
        # bfloat16 (ml_dtypes) has no byte-order variants: read its 16 bits as uint16
        bf16 = kind.np_dtype == dtypes.bfloat16.np
        wire = np.dtype(np.uint16) if bf16 else kind.np_dtype
        dtype = wire.newbyteorder("<" if self.little_endian else ">")
        raw = self.read(f"{self.prefix}data/{key}",
                        f"storage {key!r} ({numel} elements of {dtype.itemsize} bytes)",
                        size=numel * dtype.itemsize)
        array = np.frombuffer(raw, dtype=dtype).astype(wire.newbyteorder("="))
        if bf16:
            array = array.view(dtypes.to_numpy_dtype(dtypes.bfloat16))
        storage = self._storages[key] = _Storage(array, location)
        return storage

    # ---- tensors ----------------------------------------------------------------------
    def _view(self, storage, offset, size, stride):
        """A strided view of the storage, bounds-checked so no view reaches past its end."""
        if not isinstance(storage, _Storage):
            raise WeightsOnlyUnpicklingError(
                self.refusal(f"a tensor over {type(storage).__name__}"))
        if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))):
            raise self._corrupt(f"a tensor of size {size!r:.60} and stride {stride!r:.60}")
        size, stride = tuple(size), tuple(stride)
        ints = [offset, *size, *stride]
        flat = storage.array
        if not all(type(v) is int and 0 <= v < _INT64_END for v in ints) \
                or len(size) != len(stride) or len(size) > _MAX_DIMS \
                or math.prod(n for n in size if n) * flat.itemsize >= _INT64_END:
            raise self._corrupt(f"bad tensor geometry offset={offset!r:.30}, size={size!r:.100}, "
                                f"stride={stride!r:.100}")
        if 0 not in size:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= flat.size:
                raise self._corrupt(f"a tensor of size {list(size)}, stride {list(stride)} and "
                                    f"offset {offset} reaches past its storage of "
                                    f"{flat.size} elements")
        else:
            return np.empty(size, flat.dtype)
        item = flat.itemsize
        return np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                               strides=tuple(s * item for s in stride))

    def _place(self, array, saved):
        loc = self.map_location
        if callable(loc):
            t = loc(Tensor._make(array), saved)
            if not isinstance(t, Tensor):
                raise _MapLocationError(f"map_location callable returned {type(t).__name__}; "
                                        f"it must return a Tensor (called as "
                                        f"map_location(tensor, saved_device))")
            return t
        if isinstance(loc, dict):
            loc = loc.get(saved, saved)
        target = saved if loc is None else loc
        try:
            return Tensor._make(backend.to_device(array, target))
        except (RuntimeError, ImportError) as e:
            raise RuntimeError(f"{self.path}: can't place a tensor saved on {saved} on "
                               f"{target}: {e}. Pass map_location='cpu' to load it on the "
                               f"CPU") from e

    def _check_hooks(self, hooks):
        if not _empty(hooks):
            raise WeightsOnlyUnpicklingError(self.refusal("a tensor with backward hooks"))

    def _requires_grad(self, t, requires_grad):
        if type(requires_grad) not in (bool, int):
            raise self._corrupt(f"requires_grad={requires_grad!r:.40}")
        if requires_grad:
            try:
                t.requires_grad_(True)
            except RuntimeError:  # PyTorch can't save such a tensor either
                raise self._corrupt(f"a tensor of dtype {t.dtype} requires grad") from None

    def _keep(self, t):
        self._built[id(t)] = t
        return t

    def _tensor(self, storage, offset, size, stride, requires_grad, hooks):
        self._check_hooks(hooks)
        t = self._place(self._view(storage, offset, size, stride), storage.location)
        self._requires_grad(t, requires_grad)
        return self._keep(t)

    def _rebuild_tensor(self, storage, storage_offset, size, stride):
        return self._tensor(storage, storage_offset, size, stride, False, None)

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad,
                           backward_hooks, metadata=None):
        if not _empty(metadata):
            raise WeightsOnlyUnpicklingError(
                self.refusal("tensor metadata (a tensor subclass or conjugate view)"))
        return self._tensor(storage, storage_offset, size, stride, requires_grad,
                            backward_hooks)

    def _rebuild_parameter(self, data, requires_grad, backward_hooks):
        if not isinstance(data, Tensor) or not _empty(backward_hooks):
            raise WeightsOnlyUnpicklingError(self.refusal("a parameter that is not a plain tensor"))
        param = Parameter(data, False)
        self._requires_grad(param, requires_grad)
        return self._keep(param)

    def _rebuild_parameter_with_state(self, data, requires_grad, backward_hooks, state):
        if not _empty(state):
            raise WeightsOnlyUnpicklingError(self.refusal("a parameter with extra attributes"))
        return self._rebuild_parameter(data, requires_grad, backward_hooks)

    def _rebuild_from_type_v2(self, func, new_type, args, state):
        # by identity: `in` would compare with ==, which a tensor answers elementwise
        rebuilds = (_Loader._rebuild_tensor_v2, _Loader._rebuild_parameter,
                    _Loader._rebuild_tensor)
        if not (getattr(func, "__self__", None) is self
                and any(func.__func__ is f for f in rebuilds)) \
                or not any(new_type is c for c in (Tensor, Parameter)) or not _empty(state):
            raise WeightsOnlyUnpicklingError(self.refusal(f"a tensor subclass ({new_type!r:.60})"))
        if not isinstance(args, tuple):
            raise self._corrupt(f"tensor arguments {args!r:.60}")
        out = func(*args)
        if new_type is Parameter and not isinstance(out, Parameter):
            out = self._keep(Parameter(out, out.requires_grad))
        return out

    def _device(self, type_or_str, index=None):
        if not (isinstance(type_or_str, str) and (index is None or type(index) is int)):
            raise self._corrupt(f"a torch.device of {type_or_str!r:.40}, {index!r:.40}")
        text = type_or_str if index is None else f"{type_or_str}:{index}"
        try:
            return backend.Device(text)
        except (ValueError, RuntimeError):
            raise WeightsOnlyUnpicklingError(self.refusal(f"the device {text!r:.60}")) from None


def load(data, path, map_location=None, trusted=False, **pickle_load_args):
    """The object a torch.save zip file holds, with Phalanx tensors in place of PyTorch's
    (`trusted`: globals outside torch too, see `_TrustedUnpickler`)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path} starts like a zip file (as torch.save writes) but is not a "
                         f"readable pickle/zip file: {e}") from None
    pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise ValueError(f"{path} is a zip file but not a torch.save checkpoint (it holds "
                         f"{len(pickles)} data.pkl entries, expected one)")
    prefix = pickles[0][:-len("data.pkl")]
    loader = _Loader(archive, prefix, path, map_location)
    if f"{prefix}byteorder" in names:
        order = loader.read(f"{prefix}byteorder", "the byteorder record",
                            limit=_MAX_BYTEORDER_BYTES).decode(errors="replace").strip()
        if order not in ("little", "big"):
            raise loader._corrupt(f"unknown byte order {order!r}")
        loader.little_endian = order == "little"
    pickled = io.BytesIO(loader.read(pickles[0], pickles[0], limit=MAX_PICKLE_BYTES))
    unpickler = (_TrustedUnpickler if trusted else _WeightsOnlyUnpickler)(
        pickled, loader, **pickle_load_args)
    try:
        return unpickler.load()
    except (WeightsOnlyUnpicklingError, _MapLocationError, ValueError, RuntimeError):
        raise
    except (pickle.UnpicklingError, TypeError, EOFError, IndexError, KeyError,
            AttributeError, OverflowError) as e:
        raise loader._corrupt(f"{type(e).__name__}: {e}") from None
