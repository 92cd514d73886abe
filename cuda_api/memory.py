"""GPU memory counters over CuPy's default memory pool.

Without a usable GPU nothing has been allocated, so the counters are 0 and `empty_cache()`
does nothing (PyTorch answers the same). CuPy's pool keeps no peak counters, so the peak
queries raise NotImplementedError on a GPU instead of answering wrongly.
"""
from ._state import device_index, probe


def _pool(device):
    """CuPy's memory pool (None without a GPU) and the device index asked about."""
    cp = probe()[0]
    if cp is None:
        return None, None
    return cp.get_default_memory_pool(), device_index(device, "phalanx.cuda memory query")


def memory_allocated(device=None):
    """Bytes held by live GPU arrays on `device`."""
    pool, idx = _pool(device)
    if pool is None:
        return 0
    with probe()[0].cuda.Device(idx):
        return int(pool.used_bytes())


def memory_reserved(device=None):
    """Bytes the caching allocator holds on `device` (live arrays plus cached blocks)."""
    pool, idx = _pool(device)
    if pool is None:
        return 0
    with probe()[0].cuda.Device(idx):
        return int(pool.total_bytes())


def _no_peaks(name):
    def query(device=None):
        pool, _ = _pool(device)
        if pool is None:
            return 0
        raise NotImplementedError(f"phalanx.cuda.{name}: CuPy's memory pool keeps no peak "
                                  f"counter; use memory_allocated()/memory_reserved()")
    query.__name__ = name
    query.__doc__ = f"PyTorch's `torch.cuda.{name}` (0 without a GPU)."
    return query


max_memory_allocated = _no_peaks("max_memory_allocated")
max_memory_reserved = _no_peaks("max_memory_reserved")


def reset_peak_memory_stats(device=None):
    _no_peaks("reset_peak_memory_stats")(device)


def reset_max_memory_allocated(device=None):
    _no_peaks("reset_max_memory_allocated")(device)


def empty_cache():
    """Return the cached, unused blocks of CuPy's pools to the driver."""
    cp = probe()[0]
    if cp is None:
        return
    cp.get_default_memory_pool().free_all_blocks()
    cp.get_default_pinned_memory_pool().free_all_blocks()


def mem_get_info(device=None):
    """(free, total) bytes on `device`, from the driver."""
    idx = device_index(device, "phalanx.cuda.mem_get_info()")  # raises without a GPU
    cp = probe()[0]
    with cp.cuda.Device(idx):
        return cp.cuda.runtime.memGetInfo()


class OutOfMemoryError(RuntimeError):
    """The GPU ran out of memory (PyTorch's torch.cuda.OutOfMemoryError, also
    torch.OutOfMemoryError): an op whose CuPy allocation failed raises it, CuPy's error
    chained as its cause."""
