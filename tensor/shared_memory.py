"""Tensors in shared memory: `Tensor.share_memory_()`, `Module.share_memory()`, as PyTorch's,
for Hogwild-style training where several processes update one model.

`share_memory_()` moves a CPU tensor's values into a file in /dev/shm mapped shared; the
process that did it owns the file and removes it when the array is freed (or at exit). Such an
array crosses to another process as a view of the same memory: inherited as it is by a forked
child, and, through multiprocessing's pickler (Process arguments under spawn, Queues, Pools),
as the file's name, which the receiver maps again. Every other array is copied, as before.
Plain `pickle` copies shared arrays too. The files are named like DDP's shared buffers
(`distributed/shm_files.py`), so `phalanx run` removes those a killed process leaves behind.
"""
import mmap
import os
import tempfile
import weakref

import numpy as np

_segments = {}        # address of a mapping -> (path, bytes)
_reducer_registered = False


def share(array):
    """A C-contiguous copy of `array` in a new shared file of this process."""
    from ..distributed import shm_files
    directory = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    path = os.path.join(directory, shm_files.file_name())
    nbytes = max(array.nbytes, 1)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, nbytes)
        mapping = mmap.mmap(fd, nbytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    shared = np.ndarray(array.shape, array.dtype, buffer=mapping)
    shared[...] = array
    _register(shared, path, nbytes, owner=True)
    return shared


def is_shared(array):
    return _segment_of(array) is not None


def _register(base, path, nbytes, owner):
    address = base.__array_interface__["data"][0]
    _segments[address] = (path, nbytes)
    weakref.finalize(base, _release, address, path if owner else None)
    global _reducer_registered
    if not _reducer_registered:     # from now on multiprocessing passes shared arrays by name
        from multiprocessing.reduction import ForkingPickler
        ForkingPickler.register(np.ndarray, _reduce)
        _reducer_registered = True


def _release(address, path):
    _segments.pop(address, None)
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _segment_of(array):
    """(path, bytes, offset) of the shared file `array` lies in, else None."""
    if type(array) is not np.ndarray or not _segments:
        return None
    address = array.__array_interface__["data"][0]
    for base, (path, nbytes) in _segments.items():
        if base <= address < base + nbytes:
            return path, nbytes, address - base
    return None


def _reduce(array):
    found = _segment_of(array)
    if found is None:
        return array.__reduce__()
    path, nbytes, offset = found
    return _attach, (path, nbytes, offset, array.shape, array.strides, array.dtype.str)


def _attach(path, nbytes, offset, shape, strides, dtype):
    """The array another process shared, mapped again from its file."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        raise RuntimeError(f"the shared memory of a tensor ({path}) is gone: the process that "
                           f"called share_memory_() freed the tensor or exited; keep it alive "
                           f"while other processes receive it") from None
    try:
        mapping = mmap.mmap(fd, nbytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    base = np.ndarray((nbytes,), np.uint8, buffer=mapping)
    _register(base, path, nbytes, owner=False)
    return np.ndarray(shape, np.dtype(dtype), buffer=base, offset=offset, strides=strides)
