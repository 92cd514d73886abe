"""The array backend: NumPy on the CPU, CuPy on a CUDA device, chosen by the arrays themselves.

Ops call `array_module(arr)`; nothing else in the tensor library asks which device it runs on.
CuPy is imported only when a CUDA device is first asked for.
"""
import contextlib
import ctypes
import math
import os
import sys

import numpy as np

from ..autograd import function as _function

_cupy = None


def _keep_freed_memory():
    """Ask glibc to keep freed blocks instead of returning them to the OS at once.

    Every training step frees and reallocates the same large activation arrays; by default
    glibc unmaps them and the next step page-faults them back in, which costs a CNN step
    about a third of its time here. Skipped when the user tunes malloc (MALLOC_* variables)
    or sets PHALANX_MALLOC_TUNING=0, and on systems without glibc.
    """
    if os.environ.get("PHALANX_MALLOC_TUNING", "1") == "0" or any(
            k.startswith("MALLOC_") for k in os.environ):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 * 2 ** 20)  # glibc's largest allowed value
        libc.mallopt(m_trim_threshold, 512 * 2 ** 20)
    except (OSError, AttributeError):
        pass


_keep_freed_memory()

INSTALL_HINT = ("install CuPy for your CUDA version: pip install 'phalanx[cuda12]' or "
                "pip install 'phalanx[cuda13]'")


def cupy():
    """Import CuPy on first use, with an error that names the fix."""
    global _cupy
    if _cupy is None:
        try:
            import cupy as cp
        except ImportError as e:
            raise RuntimeError(f"a CUDA device was requested but CuPy is not installed; "
                               f"{INSTALL_HINT}") from e
        try:
            n = cp.cuda.runtime.getDeviceCount()
        except Exception as e:  # no driver, no device
            raise RuntimeError(f"a CUDA device was requested but CuPy finds no usable GPU "
                               f"({e}). Run on the CPU (device='cpu') or on a machine with an "
                               f"NVIDIA GPU and driver.") from e
        if n == 0:
            raise RuntimeError("a CUDA device was requested but no GPU is visible "
                               "(CUDA_VISIBLE_DEVICES?)")
        _cupy = cp
        _function.gpu_guard = _gpu_guard
    return _cupy


def _gpu_guard(args):
    """`cupy.cuda.Device(i)` when the first CuPy array among the tensors `args` lives on GPU i
    and another GPU is current, else None (see autograd.function.gpu_guard)."""
    cp = _cupy
    for a in args:
        d = getattr(a, "_data", None)
        if d is not None and type(d) is cp.ndarray:
            idx = d.device.id
            return None if idx == cp.cuda.runtime.getDevice() else cp.cuda.Device(idx)
    return None


def array_module(arr):
    """numpy or cupy: the module that owns `arr` (a CuPy array made outside Phalanx, before
    any device was asked for, loads CuPy here)."""
    if type(arr) is np.ndarray:
        return np
    if _cupy is None:
        if not type(arr).__module__.startswith("cupy"):
            return np
        cupy()
    return _cupy.get_array_module(arr)


def is_cupy_array(arr):
    return _cupy is not None and isinstance(arr, _cupy.ndarray)


def writeable(arr):
    """Whether `arr` may be written in place. NumPy marks broadcast views and foreign buffers
    read-only; CuPy keeps no such flag, so there a view with a zero stride over a dimension
    longer than one (several elements on one memory location) counts as read-only."""
    flags = arr.flags
    if hasattr(flags, "writeable"):
        return flags.writeable
    return all(st != 0 or n <= 1 for st, n in zip(arr.strides, arr.shape))


# ---- device -> host: the one door ----------------------------------------------------------
# Reading a GPU array's values on the host waits for every kernel queued before it; in the
# training step that stall is the cost to avoid. Every such read in Phalanx goes through
# `to_host` / `host_scalar`, which count them per device, so a test can assert that the
# steady-state step makes none (`transfer_counts`, `reset_transfer_counts`).
transfer_counts = {}


def on_host(arr):
    """True for a plain NumPy array or scalar: its values are read without waiting for a
    device."""
    return type(arr) is np.ndarray or isinstance(arr, (np.generic, int, float, complex))


def to_host(arr):
    """A NumPy array with the values of `arr` (itself when it is one already)."""
    if type(arr) is np.ndarray:
        return arr
    if isinstance(arr, np.generic):
        return np.asarray(arr)
    key = str(device_of(arr)) if is_cupy_array(arr) else type(arr).__name__
    transfer_counts[key] = transfer_counts.get(key, 0) + 1
    if is_cupy_array(arr):
        return arr.get()
    if isinstance(arr, np.ndarray):          # an ndarray subclass standing in for a device
        return arr.view(np.ndarray)
    return np.asarray(arr)


def host_scalar(arr):
    """The Python number held by the one-element array `arr` (a transfer when on a device)."""
    if isinstance(arr, (int, float, bool, complex)):
        return arr
    return to_host(arr).reshape(()).item()


def reset_transfer_counts():
    transfer_counts.clear()


# Checks that read values of device arrays (a target out of range, a NaN, a malformed mask)
# would synchronise every step, so on a GPU they run only in debug mode, as PyTorch's
# device-side asserts do; on the CPU the values are at hand and the checks always run.
_debug_checks = os.environ.get("PHALANX_DEBUG", "0").lower() not in (
    "", "0", "false", "no", "off")


def set_debug_checks(flag=True):
    """Run value checks on device arrays too (PHALANX_DEBUG=1 switches this on at start)."""
    global _debug_checks
    _debug_checks = bool(flag)


def debug_checks():
    return _debug_checks


def can_check(arr):
    """Whether a check that reads `arr`'s values may run now: always on the host, only in
    debug mode on a device (where reading values waits for the GPU)."""
    return _debug_checks or on_host(arr)


_device_stack = []       # the defaults that `with device(...)` blocks replaced


class Device:
    """`cpu` or `cuda:N`. Compares equal to its string form, like torch.device. A bare "cuda"
    means the current GPU (`phalanx.cuda.set_device`), as in PyTorch."""

    __slots__ = ("type", "index")

    def __init__(self, type_or_str="cpu", index=None):
        if isinstance(type_or_str, Device):
            type_or_str, index = type_or_str.type, type_or_str.index
        elif isinstance(type_or_str, int) and not isinstance(type_or_str, bool):
            if type_or_str < 0:  # an ordinal names a GPU, as in torch.device(0)
                raise RuntimeError(f"Device index must not be negative (got {type_or_str})")
            type_or_str, index = "cuda", type_or_str
        s = str(type_or_str)
        if ":" in s:
            s, idx = s.split(":", 1)
            index = int(idx)
        if s not in ("cpu", "cuda", "meta"):   # RuntimeError, as PyTorch raises
            raise RuntimeError(f"unknown device type {s!r}: Expected one of cpu, cuda, meta "
                               f"device type at start of device string: {s}")
        if s == "cuda" and index is None:
            index = 0 if _cupy is None else _cupy.cuda.runtime.getDevice()
        self.type = s
        self.index = index if s == "cuda" else None

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __enter__(self):
        """`with phalanx.device(d):` makes `d` the default device of the block (factory
        functions without device=); see settings.set_default_device."""
        from .settings import get_default_device, set_default_device
        previous = get_default_device()
        set_default_device(self)
        _device_stack.append(previous)
        return self

    def __exit__(self, *exc):
        from .settings import set_default_device
        set_default_device(_device_stack.pop())

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None
                                               else f", index={self.index}") + ")"

    def __eq__(self, other):
        if isinstance(other, (str, Device)):
            try:
                other = Device(other)
            except (ValueError, RuntimeError):
                return False
            return self.type == other.type and self.index == other.index
        return NotImplemented

    def __hash__(self):
        return hash((self.type, self.index))


CPU = Device("cpu")
META = Device("meta")


def device_of(arr):
    if type(arr) is np.ndarray:
        return CPU
    if is_cupy_array(arr):
        return Device("cuda", arr.device.id)
    if type(arr).__name__ == "MetaArray":
        return META
    return CPU


def to_device(arr, device, non_blocking=False):
    """Move (or keep) an array on `device`; copies only when the device changes.

    `non_blocking=True` copies a pinned host array (see `pin`) to a GPU asynchronously on the
    current stream, as PyTorch does; any other copy completes before this returns."""
    device = Device(device)
    if device.type == "meta" or type(arr).__name__ == "MetaArray":
        from .meta import meta_array, no_data
        if device.type != "meta":
            raise no_data("Cannot copy out of meta tensor; no data!", NotImplementedError)
        return meta_array(arr.shape, arr.dtype)
    if device.type == "cpu":
        return to_host(arr)
    cp = cupy()
    if device.index >= cp.cuda.runtime.getDeviceCount():
        raise RuntimeError(f"device {device} requested but only "
                           f"{cp.cuda.runtime.getDeviceCount()} GPU(s) are visible")
    with cp.cuda.Device(device.index):
        if isinstance(arr, cp.ndarray) and arr.device.id == device.index:
            return arr
        if non_blocking and isinstance(arr, np.ndarray) and is_pinned(arr) \
                and arr.flags.c_contiguous:
            out = cp.empty(arr.shape, arr.dtype)
            stream = cp.cuda.get_current_stream()
            out.set(arr, stream=stream)
            _keep_until_copied(arr, stream)
            return out
        return cp.asarray(arr)


_in_flight = []   # [(event, host array)]: pinned sources of asynchronous copies still running


def _keep_until_copied(host_arr, stream):
    """Hold `host_arr` until the copy queued on `stream` has read it: the pinned pool could
    otherwise hand its memory to the next batch while the GPU still reads it."""
    _in_flight[:] = [(e, a) for e, a in _in_flight if not e.done]  # a query, not a wait
    _in_flight.append((stream.record(), host_arr))


def is_pinned(arr):
    """Whether the host array `arr` lives in page-locked memory made by CuPy (`pin`)."""
    if _cupy is None or not isinstance(arr, np.ndarray):
        return False
    base = arr
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, _cupy.cuda.PinnedMemoryPointer)


def pin(arr):
    """A copy of the host array `arr` in page-locked memory, from which a GPU copies
    asynchronously (PyTorch's `pin_memory()`); needs a GPU."""
    if is_pinned(arr):
        return arr
    import cupyx
    cupy()
    out = cupyx.empty_pinned(arr.shape, arr.dtype)
    out[...] = arr
    return out


def module_for_device(device):
    return np if Device(device).type in ("cpu", "meta") else cupy()


def placed_on(device):
    """(array module, context) for making arrays on `device` (None: the CPU): inside the
    context a GPU's allocations land on that GPU directly, not on the current one."""
    if device is None or Device(device).type == "cpu":
        return np, contextlib.nullcontext()
    if Device(device).type == "meta":
        from .meta import MetaModule
        return MetaModule(), contextlib.nullcontext()
    cp = cupy()
    return cp, cp.cuda.Device(Device(device).index)


def cupy_loaded():
    return "cupy" in sys.modules and _cupy is not None


def special(xp):
    """scipy.special for NumPy arrays, cupyx.scipy.special for CuPy arrays (erf for GELU)."""
    if xp is np:
        import scipy.special as sp
        return sp
    import cupyx.scipy.special as csp
    return csp


def add_at(xp, target, index, values):
    """target[index] += values with repeated indices accumulated (unbuffered)."""
    flat = _flat_positions(target, index) if xp is np else None
    if flat is None:
        ufunc_at(xp, "add", target, index, values)
        return
    np.add.at(target.reshape(-1), flat.reshape(-1),
              np.broadcast_to(np.asarray(values), flat.shape).reshape(-1))


def _flat_positions(target, index):
    """The flat positions in a C-contiguous NumPy `target` that `index` addresses (`rows`,
    `(:, ..., :, rows)` with or without a trailing `...`, or an integer array per dim, all
    within bounds), else None. NumPy's add.at
    adds whole rows, or at tuples of indices, several times slower than it adds at flat
    positions (embedding's backward, scatter_add)."""
    if type(target) is not np.ndarray or not target.flags.c_contiguous or target.ndim < 2:
        return None
    full = index[:-1] if isinstance(index, tuple) and index and index[-1] is Ellipsis \
        else index
    if isinstance(full, tuple) and len(full) == target.ndim > 1 and \
            all(type(i) is np.ndarray and i.dtype.kind in "iu" for i in full):
        try:
            return np.ravel_multi_index(np.broadcast_arrays(*full), target.shape)
        except ValueError:
            return None     # negative or out of range: NumPy's own path says so
    # whole leading dims, then one integer array (`x[:, :, rows]`, index_add along a dim)
    full = full if isinstance(full, tuple) else (full,)
    k = 0
    while k < len(full) - 1 and isinstance(full[k], slice) and full[k] == slice(None):
        k += 1
    rows = full[k] if len(full) == k + 1 else None
    if type(rows) is not np.ndarray or rows.dtype.kind not in "iu" or k >= target.ndim or \
            (rows.size and (rows.min() < 0 or rows.max() >= target.shape[k])):
        return None                  # other forms, or out of range: NumPy's own path
    lead, rest = target.shape[:k], target.shape[k + 1:]
    inner = math.prod(rest)
    starts = (np.arange(math.prod(lead)) * (target.shape[k] * inner)).reshape(
        lead + (1,) * (rows.ndim + len(rest)))
    within = np.arange(inner).reshape(rest)
    return starts + rows.reshape(rows.shape + (1,) * len(rest)) * inner + within


def ufunc_at(xp, name, target, index, values):
    """`xp.<name>.at(target, index, values)`: target[index] = name(target[index], values) with
    repeated indices combined (unbuffered), for the associative ufuncs add, multiply, maximum
    and minimum. CuPy's `ufunc.at` runs on atomics that exist for some ops and dtypes only (no
    multiply; maximum/minimum not on float16; add not on 8/16-bit integers, bool or complex):
    the others combine the repeats by a segmented scan instead."""
    ufunc = getattr(xp, name)
    try:
        ufunc.at(target, index, values)
    except (NotImplementedError, TypeError):  # CuPy refuses before any kernel runs
        if xp is np:     # NumPy's ufunc.at takes every op and dtype: the error is the caller's
            raise
        scan_at(xp, ufunc, target, index, values)


def scan_at(xp, ufunc, target, index, values):
    """ufunc.at without atomics: sort the updates by the element they update, combine each
    run of equal elements by a segmented inclusive scan (log2(n) whole-array steps, no host
    synchronisation), then apply each run's total to its element once."""
    element = xp.arange(target.size).reshape(target.shape)[index]   # what each update hits
    vals = xp.broadcast_to(xp.asarray(values, dtype=target.dtype), element.shape).reshape(-1)
    element = element.reshape(-1)
    n = element.size
    if n == 0:
        return
    order = xp.argsort(element, kind="stable")
    element, vals = element[order], vals[order]
    step = 1
    while step < n:   # vals[i] becomes the combination of its run from the run's start to i
        same = element[step:] == element[:-step]
        combined = vals.copy()
        combined[step:] = xp.where(same, ufunc(vals[:-step], vals[step:]), vals[step:])
        vals, step = combined, step * 2
    last = xp.ones(n, dtype=bool)
    last[:-1] = element[1:] != element[:-1]
    at = xp.unravel_index(element[last], target.shape)
    target[at] = ufunc(target[at], vals[last])
