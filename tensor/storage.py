"""`Tensor.untyped_storage()` and the deprecated `Tensor.storage()`: the memory block a
tensor lies in (shared by its views), as PyTorch's storages describe it: its address, size
and contents. Code compares `data_ptr()`s to tell whether tensors share memory."""
import numpy as np

from . import backend, dtypes
from .user_warnings import warn_user


def data_address(array):
    """The address of the array's first element."""
    if backend.is_cupy_array(array):
        return array.data.ptr
    host = backend.to_host(array)       # a NumPy array already: itself, no copy
    return host.__array_interface__["data"][0]


def memory_root(array):
    """(address of the block, its size in bytes, the host array owning it or None)."""
    if backend.is_cupy_array(array):
        return array.data.mem.ptr, array.data.mem.size, None
    root = backend.to_host(array)
    while isinstance(root.base, np.ndarray):
        root = root.base
    return root.__array_interface__["data"][0], root.nbytes, root


class UntypedStorage:
    """The bytes of a memory block."""

    def __init__(self, array, device):
        self._ptr, self._nbytes, self._root = memory_root(array)
        self._array, self.device = array, device

    def data_ptr(self):
        return self._ptr

    def nbytes(self):
        return self._nbytes

    size = nbytes
    __len__ = nbytes

    def element_size(self):
        return 1

    def _bytes(self):
        root = self._root if self._root is not None else backend.to_host(self._array)
        return np.frombuffer(np.ascontiguousarray(root).tobytes(), dtype=np.uint8)

    def tolist(self):
        return self._bytes().tolist()

    def __getitem__(self, index):
        return self._bytes()[index].tolist()

    def __repr__(self):
        values = "\n".join(f" {v}" for v in self.tolist())
        return f"{values}\n[phalanx.storage.UntypedStorage(device={self.device}) of size " \
               f"{self._nbytes}]"


class TypedStorage:
    """The elements of a memory block, in the tensor's dtype (PyTorch deprecates it)."""

    def __init__(self, array, device, dtype):
        self._untyped = UntypedStorage(array, device)
        self.device, self.dtype = device, dtype

    def untyped(self):
        return self._untyped

    _untyped_storage = property(untyped)

    def data_ptr(self):
        return self._untyped.data_ptr()

    def element_size(self):
        return self.dtype.itemsize

    def size(self):
        return self._untyped.nbytes() // self.element_size()

    __len__ = size

    def _values(self):
        raw = self._untyped._bytes()
        return raw.view(dtypes.to_numpy_dtype(self.dtype))

    def tolist(self):
        return self._values().tolist()

    def __getitem__(self, index):
        return self._values()[index].tolist()

    def __repr__(self):
        values = "\n".join(f" {v}" for v in self.tolist())
        return f"{values}\n[phalanx.storage.TypedStorage(dtype={self.dtype}, " \
               f"device={self.device}) of size {self.size()}]"


def untyped_storage(self):
    return UntypedStorage(self._data, self.device)


def storage(self):
    warn_user("TypedStorage is deprecated. It will be removed in the future and "
              "UntypedStorage will be the only storage class. To access UntypedStorage "
              "directly, use tensor.untyped_storage() instead of tensor.storage()")
    return TypedStorage(self._data, self.device, self.dtype)
