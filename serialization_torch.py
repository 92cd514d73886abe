"""Read checkpoints written by `torch.save` (its zip format) without PyTorch and without
running code from the file, as PyTorch's own `torch.load(weights_only=True)` does.

A torch.save file is a zip archive: `<name>/data.pkl` pickles the object, and every tensor's
storage is a raw little-endian byte file `<name>/data/<key>`, referenced from the pickle by a
persistent id. The pickle is read by an unpickler whose `find_class` knows only an allow-list
(the functions PyTorch pickles tensors, parameters, storages, sizes, dtypes and devices with,
`OrderedDict`, and a few safe builtins) and maps each to a Phalanx equivalent; any other global
(`os.system`, a module class, a NumPy array, ...) is refused with an error naming it, before
anything is called. Tensors that share a storage in the file (views, tied weights) share
memory after loading, as in PyTorch, when they land on the CPU.
"""
import collections
import io
import pickle
import zipfile

import numpy as np

from .nn.parameter import Parameter
from .tensor import Size, Tensor, backend, dtypes

ZIP_MAGIC = b"PK\x03\x04"

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


class _TorchUnpickler(pickle.Unpickler):
    """The allow-list; with `trusted` (torch.load's weights_only=False, asked for by the user)
    also any global outside torch, as pickle would find it (such a file can run code)."""

    def __init__(self, file, loader, trusted=False, **pickle_load_args):
        super().__init__(file, **pickle_load_args)
        self._loader, self._trusted = loader, trusted

    def find_class(self, module, name):
        found = self._loader.allowed(module, name)
        if found is not None:
            return found
        if self._trusted and module.split(".")[0] != "torch":
            return super().find_class(module, name)
        if self._trusted:
            raise WeightsOnlyUnpicklingError(
                f"{self._loader.path}: {module}.{name} is one of PyTorch's own classes, which "
                f"Phalanx cannot rebuild; load the file in PyTorch and save its state_dict()")
        raise WeightsOnlyUnpicklingError(self._loader.refusal(f"the global {module}.{name}"))

    def persistent_load(self, pid):
        return self._loader.storage(pid)


class _Loader:
    def __init__(self, archive, prefix, path, map_location):
        self.archive, self.prefix, self.path = archive, prefix, path
        self.map_location = map_location
        self.little_endian = True
        self._storages = {}
        self._allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset,
            ("torch._utils", "_rebuild_tensor"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): self._rebuild_parameter_with_state,
            ("torch._tensor", "_rebuild_from_type_v2"): self._rebuild_from_type_v2,
            ("torch", "Tensor"): Tensor,
            ("torch.nn.parameter", "Parameter"): Parameter,
            ("torch", "Size"): Size,
            ("torch", "device"): self._device,
        }

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

    def _corrupt(self, what):
        return ValueError(f"{self.path} is corrupt or not a torch.save checkpoint: {what}")

    # ---- storages ---------------------------------------------------------------------
    def storage(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise WeightsOnlyUnpicklingError(self.refusal(f"the persistent id {pid!r:.80}"))
        _, kind, key, location, numel = pid
        if not isinstance(kind, _StorageType):
            raise WeightsOnlyUnpicklingError(self.refusal(f"a storage of type {kind!r:.80}"))
        if not (isinstance(key, str) and isinstance(location, str) and isinstance(numel, int)):
            raise self._corrupt(f"malformed storage reference {pid!r:.80}")
        cached = self._storages.get(key)
        if cached is not None:
            return cached
        try:
            raw = self.archive.read(f"{self.prefix}data/{key}")
        except KeyError:
            raise self._corrupt(f"storage {key!r} is missing from the archive") from None
        # bfloat16 (ml_dtypes) has no byte-order variants: read its 16 bits as uint16
        bf16 = kind.np_dtype == dtypes.bfloat16.np
        wire = np.dtype(np.uint16) if bf16 else kind.np_dtype
        dtype = wire.newbyteorder("<" if self.little_endian else ">")
        if len(raw) != numel * dtype.itemsize:
            raise self._corrupt(f"storage {key!r} has {len(raw)} bytes, expected {numel} "
                                f"elements of {dtype.itemsize} bytes")
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
        ints = [offset, *size, *stride]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints) \
                or len(size) != len(stride):
            raise self._corrupt(f"bad tensor geometry offset={offset!r}, size={size!r}, "
                                f"stride={stride!r}")
        flat = storage.array
        if 0 not in size:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= flat.size:
                raise self._corrupt(f"a tensor of size {list(size)}, stride {list(stride)} and "
                                    f"offset {offset} reaches past its storage of "
                                    f"{flat.size} elements")
        else:
            return np.empty(tuple(size), flat.dtype)
        item = flat.itemsize
        return np.lib.stride_tricks.as_strided(flat[offset:], shape=tuple(size),
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

    def _tensor(self, storage, offset, size, stride, requires_grad, hooks):
        if hooks:
            raise WeightsOnlyUnpicklingError(self.refusal("a tensor with backward hooks"))
        t = self._place(self._view(storage, offset, tuple(size), tuple(stride)),
                        storage.location)
        if requires_grad:
            if not t.dtype.is_floating_point:
                raise self._corrupt(f"an integer tensor ({t.dtype}) requires grad")
            t.requires_grad_(True)
        return t

    def _rebuild_tensor(self, storage, storage_offset, size, stride):
        return self._tensor(storage, storage_offset, size, stride, False, None)

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad,
                           backward_hooks, metadata=None):
        if metadata:
            raise WeightsOnlyUnpicklingError(
                self.refusal("tensor metadata (a tensor subclass or conjugate view)"))
        return self._tensor(storage, storage_offset, size, stride, bool(requires_grad),
                            backward_hooks)

    def _rebuild_parameter(self, data, requires_grad, backward_hooks):
        if not isinstance(data, Tensor) or backward_hooks:
            raise WeightsOnlyUnpicklingError(self.refusal("a parameter that is not a plain tensor"))
        return Parameter(data, bool(requires_grad))

    def _rebuild_parameter_with_state(self, data, requires_grad, backward_hooks, state):
        if state:
            raise WeightsOnlyUnpicklingError(self.refusal("a parameter with extra attributes"))
        return self._rebuild_parameter(data, requires_grad, backward_hooks)

    def _rebuild_from_type_v2(self, func, new_type, args, state):
        if func not in (self._rebuild_tensor_v2, self._rebuild_parameter,
                        self._rebuild_tensor) or new_type not in (Tensor, Parameter) or state:
            raise WeightsOnlyUnpicklingError(self.refusal(f"a tensor subclass ({new_type!r:.60})"))
        out = func(*args)
        return Parameter(out, out.requires_grad) if new_type is Parameter and \
            not isinstance(out, Parameter) else out

    def _device(self, type_or_str, index=None):
        text = str(type_or_str) if index is None else f"{type_or_str}:{int(index)}"
        try:
            return backend.Device(text)
        except (ValueError, RuntimeError):
            raise WeightsOnlyUnpicklingError(self.refusal(f"the device {text!r}")) from None


def load(data, path, map_location=None, trusted=False, **pickle_load_args):
    """The object a torch.save zip file holds, with Phalanx tensors in place of PyTorch's
    (`trusted`: globals outside torch too, see `_TorchUnpickler`)."""
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
        order = archive.read(f"{prefix}byteorder").decode(errors="replace").strip()
        if order not in ("little", "big"):
            raise loader._corrupt(f"unknown byte order {order!r}")
        loader.little_endian = order == "little"
    unpickler = _TorchUnpickler(io.BytesIO(archive.read(pickles[0])), loader, trusted,
                                **pickle_load_args)
    try:
        return unpickler.load()
    except (WeightsOnlyUnpicklingError, _MapLocationError, ValueError, RuntimeError):
        raise
    except (pickle.UnpicklingError, TypeError, EOFError, IndexError, KeyError,
            AttributeError) as e:
        raise loader._corrupt(f"{type(e).__name__}: {e}") from None
