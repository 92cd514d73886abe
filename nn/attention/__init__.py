"""`phalanx.nn.attention`: PyTorch's switches for `scaled_dot_product_attention`'s kernels.

`sdpa_kernel(backends)` allows only the named kernels inside its block, as in PyTorch (the flags
are `phalanx.backends.cuda`'s, global). Phalanx has one kernel, computing what PyTorch's math
kernel computes, and runs it wherever PyTorch would find an allowed kernel: on the CPU that is
MATH, or FLASH_ATTENTION for 4-D inputs with one head size and no dropout (PyTorch's CPU flash
kernel); on a GPU any of MATH, FLASH_ATTENTION, EFFICIENT_ATTENTION and CUDNN_ATTENTION (their
results agree up to rounding; PyTorch's CUDA eligibility rules are not reproduced). Where
PyTorch would find no allowed kernel, Phalanx raises as it does.
"""
import contextlib
import enum

from ...backends import cuda as _cuda

__all__ = ["SDPBackend", "sdpa_kernel", "WARN_FOR_UNFUSED_KERNELS"]

WARN_FOR_UNFUSED_KERNELS = False


class SDPBackend(enum.IntEnum):
    """The kernels `scaled_dot_product_attention` may choose from (PyTorch's values)."""
    ERROR = -1
    MATH = 0
    FLASH_ATTENTION = 1
    EFFICIENT_ATTENTION = 2
    CUDNN_ATTENTION = 3
    OVERRIDEABLE = 4


_SWITCH = {SDPBackend.MATH: "math", SDPBackend.FLASH_ATTENTION: "flash",
           SDPBackend.EFFICIENT_ATTENTION: "mem_efficient",
           SDPBackend.CUDNN_ATTENTION: "cudnn", SDPBackend.OVERRIDEABLE: "overrideable"}


@contextlib.contextmanager
def sdpa_kernel(backends, set_priority=False):
    """Allow only `backends` (one SDPBackend or a list) inside the block; the previous switches
    come back after it. `set_priority` orders PyTorch's choice among kernels that compute the
    same; Phalanx has one."""
    if not isinstance(backends, (list, SDPBackend)):
        raise AssertionError(f"Backend must be an instance of SDPBackend or a list of "
                             f"SDPBackend instances, got {type(backends).__name__}")
    chosen = [backends] if isinstance(backends, SDPBackend) else backends
    for b in chosen:
        if not isinstance(b, SDPBackend) or b is SDPBackend.ERROR:
            raise TypeError(f"sdpa_kernel: {b!r} is not a kernel; use SDPBackend.MATH, "
                            f"FLASH_ATTENTION, EFFICIENT_ATTENTION, CUDNN_ATTENTION or "
                            f"OVERRIDEABLE")
    before = dict(_cuda._sdp_enabled)
    try:
        for b, name in _SWITCH.items():
            _cuda._sdp_enabled[name] = b in chosen
        yield {}
    finally:
        _cuda._sdp_enabled.update(before)


def _check_kernel(q_shape, k_shape, v_shape, dropout_p, on_gpu):
    """Raise as PyTorch does where none of the allowed kernels could run an attention of
    query, key and value of these shapes."""
    enabled = _cuda._sdp_enabled
    if enabled["math"]:
        return
    fused = ("flash", "mem_efficient", "cudnn") if on_gpu else ("flash",)
    if not any(enabled[name] for name in fused):
        raise RuntimeError("No viable backend for scaled_dot_product_attention was found. "
                           "This is likely due to turning off both the math kernel and the "
                           "fused kernels. Allow SDPBackend.MATH (phalanx.nn.attention."
                           "sdpa_kernel) to run it.")
    if on_gpu:
        return
    why = None
    if not len(q_shape) == len(k_shape) == len(v_shape) == 4:
        why = (f"the flash kernel needs 4-D query, key and value, got {len(q_shape)}-D, "
               f"{len(k_shape)}-D and {len(v_shape)}-D")
    elif dropout_p > 0:
        why = f"the flash kernel does not support dropout, got dropout_p={dropout_p}"
    elif not q_shape[-1] == k_shape[-1] == v_shape[-1]:
        why = (f"the flash kernel needs one last dimension for query, key and value, got "
               f"{q_shape[-1]}, {k_shape[-1]} and {v_shape[-1]}")
    if why is not None:
        raise RuntimeError(f"No available kernel. Aborting execution. ({why}; allow "
                           f"SDPBackend.MATH to run it.)")
