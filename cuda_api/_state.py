"""Whether a CUDA device is usable here, and the one error every GPU-only call raises without.

`is_available()` is True only when CuPy imports and sees at least one GPU; the answer is
probed once (importing CuPy and asking the driver costs ~a second) and kept.
"""
import os

from ..tensor import backend

_probe = []  # [(cupy module or None, reason it is unusable or None)] once probed


def probe():
    """(cupy, None) when a GPU is usable, else (None, why not)."""
    if not _probe:
        try:
            import cupy as cp
        except ImportError:
            _probe.append((None, f"CuPy is not installed ({backend.INSTALL_HINT})"))
            return _probe[0]
        try:
            n = cp.cuda.runtime.getDeviceCount()
        except Exception as e:  # no driver, no device, broken install
            _probe.append((None, f"CuPy finds no usable GPU ({e})"))
            return _probe[0]
        if n == 0:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            _probe.append((None, "no GPU is visible" + (
                f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")))
        else:
            _probe.append((cp, None))
    return _probe[0]


def is_available():
    """True when CuPy imports and at least one CUDA device is usable."""
    return probe()[0] is not None


def device_count():
    """The number of visible CUDA devices (0 without a usable GPU)."""
    cp = probe()[0]
    return 0 if cp is None else cp.cuda.runtime.getDeviceCount()


def require(what):
    """CuPy, or the error naming `what` needed a GPU and why there is none."""
    cp, why = probe()
    if cp is None:
        raise RuntimeError(f"no CUDA device available: {what} needs an NVIDIA GPU, but {why}. "
                           f"Check phalanx.cuda.is_available() first, or run on the CPU.")
    backend.cupy()  # registers CuPy with the array backend
    return cp


def parse_index(device, what="this call"):
    """An int index from an int, 'cuda', 'cuda:N' or a phalanx.device (no GPU needed)."""
    if isinstance(device, int):
        return device
    d = backend.Device(device)
    if d.type != "cuda":
        raise ValueError(f"{what}: expected a CUDA device, got {d}")
    return d.index


def device_index(device=None, what="this call"):
    """The index of `device`, or of the current GPU when None (needs a GPU)."""
    cp = require(what)
    return cp.cuda.runtime.getDevice() if device is None else parse_index(device, what)
