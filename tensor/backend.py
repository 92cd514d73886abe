"""The array backend: NumPy on the CPU, CuPy on a CUDA device, chosen by the arrays themselves.

Ops call `array_module(arr)`; nothing else in the tensor library asks which device it runs on.
CuPy is imported only when a CUDA device is first asked for.
"""
import ctypes
import os
import sys

import numpy as np

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
    return _cupy


def array_module(arr):
    """numpy or cupy: the module that owns `arr`."""
    if type(arr) is np.ndarray or _cupy is None:
        return np
    return _cupy.get_array_module(arr)


def is_cupy_array(arr):
    return _cupy is not None and isinstance(arr, _cupy.ndarray)


class Device:
    """`cpu` or `cuda:N`. Compares equal to its string form, like torch.device."""

    __slots__ = ("type", "index")

    def __init__(self, type_or_str="cpu", index=None):
        if isinstance(type_or_str, Device):
            type_or_str, index = type_or_str.type, type_or_str.index
        s = str(type_or_str)
        if ":" in s:
            s, idx = s.split(":", 1)
            index = int(idx)
        if s not in ("cpu", "cuda"):
            raise ValueError(f"unknown device type {s!r}; expected 'cpu', 'cuda' or 'cuda:N'")
        if s == "cuda" and index is None:
            index = 0
        self.type = s
        self.index = index if s == "cuda" else None

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None
                                               else f", index={self.index}") + ")"

    def __eq__(self, other):
        if isinstance(other, (str, Device)):
            try:
                other = Device(other)
            except ValueError:
                return False
            return self.type == other.type and self.index == other.index
        return NotImplemented

    def __hash__(self):
        return hash((self.type, self.index))


CPU = Device("cpu")


def device_of(arr):
    if type(arr) is np.ndarray:
        return CPU
    if is_cupy_array(arr):
        return Device("cuda", arr.device.id)
    return CPU


def to_device(arr, device):
    """Move (or keep) an array on `device`; copies only when the device changes."""
    device = Device(device)
    if device.type == "cpu":
        if type(arr) is np.ndarray:
            return arr
        if is_cupy_array(arr):
            return arr.get()
        return np.asarray(arr)
    cp = cupy()
    if device.index >= cp.cuda.runtime.getDeviceCount():
        raise RuntimeError(f"device {device} requested but only "
                           f"{cp.cuda.runtime.getDeviceCount()} GPU(s) are visible")
    with cp.cuda.Device(device.index):
        if isinstance(arr, cp.ndarray) and arr.device.id == device.index:
            return arr
        return cp.asarray(arr)


def module_for_device(device):
    return np if Device(device).type == "cpu" else cupy()


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
    if xp is np:
        np.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)
