"""`phalanx.backends.cuda`: whether the CUDA path is there (`is_built()`: CuPy imports and sees
a GPU), PyTorch's TF32 switch (a permission; Phalanx's products stay full float32) and the
scaled_dot_product_attention kernel switches."""
from .. import cuda as _cuda


def is_built():
    return _cuda.is_available()


class _MatmulFlags:
    """`phalanx.backends.cuda.matmul`: PyTorch's permissions for faster, less precise GEMMs.
    `allow_tf32` *allows* TensorFloat-32 (it is `set_float32_matmul_precision`'s "high" in
    PyTorch's legacy spelling, and reads back from it); Phalanx computes float32 products at
    full precision, which every setting permits, as it does float16/bfloat16 reductions."""

    allow_fp16_reduced_precision_reduction = True
    allow_bf16_reduced_precision_reduction = True

    @property
    def allow_tf32(self):
        from ..tensor.settings import get_float32_matmul_precision
        return get_float32_matmul_precision() != "highest"

    @allow_tf32.setter
    def allow_tf32(self, value):
        from ..tensor.settings import set_float32_matmul_precision
        set_float32_matmul_precision("high" if value else "highest")


matmul = _MatmulFlags()


# --- scaled_dot_product_attention's kernels ---------------------------------------------------
# PyTorch's switches for which kernels `scaled_dot_product_attention` may use (global, as
# there). Phalanx has one kernel, which computes what PyTorch's math kernel does;
# `phalanx.nn.functional.scaled_dot_product_attention` runs it wherever PyTorch would find an
# enabled kernel, and raises where PyTorch would find none (see phalanx.nn.attention).
_sdp_enabled = {"flash": True, "mem_efficient": True, "math": True, "cudnn": True,
                "overrideable": True}


def _sdp_switches(name):
    def enable(enabled):
        _sdp_enabled[name] = bool(enabled)

    def enabled():
        return _sdp_enabled[name]
    enable.__name__, enabled.__name__ = f"enable_{name}_sdp", f"{name}_sdp_enabled"
    enable.__doc__ = f"Allow (or forbid) scaled_dot_product_attention's {name} kernel."
    enabled.__doc__ = f"Whether scaled_dot_product_attention may use its {name} kernel."
    return enable, enabled


enable_flash_sdp, flash_sdp_enabled = _sdp_switches("flash")
enable_mem_efficient_sdp, mem_efficient_sdp_enabled = _sdp_switches("mem_efficient")
enable_math_sdp, math_sdp_enabled = _sdp_switches("math")
enable_cudnn_sdp, cudnn_sdp_enabled = _sdp_switches("cudnn")


def sdp_kernel(enable_flash=True, enable_math=True, enable_mem_efficient=True,
               enable_cudnn=True):
    """PyTorch's older spelling of `phalanx.nn.attention.sdpa_kernel` (deprecated there too)."""
    import warnings

    from ..nn.attention import SDPBackend, sdpa_kernel
    warnings.warn("`phalanx.backends.cuda.sdp_kernel()` is deprecated, as in PyTorch; use "
                  "`phalanx.nn.attention.sdpa_kernel()`", FutureWarning, stacklevel=2)
    wanted = ((enable_flash, SDPBackend.FLASH_ATTENTION),
              (enable_mem_efficient, SDPBackend.EFFICIENT_ATTENTION),
              (enable_math, SDPBackend.MATH), (enable_cudnn, SDPBackend.CUDNN_ATTENTION))
    return sdpa_kernel([backend for on, backend in wanted if on])
