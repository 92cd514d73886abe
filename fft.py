"""`phalanx.fft`: discrete Fourier transforms, as `torch.fft` (the ops live in
tensor/ops/fft.py; this module is their public home, so `import phalanx.fft` works)."""
from .tensor.ops.fft import (fft, fft2, fftfreq, fftn, fftshift, hfft, ifft, ifft2,  # noqa: F401
                             ifftn, ifftshift, ihfft, irfft, irfft2, irfftn, rfft, rfft2,
                             rfftfreq, rfftn)

__all__ = ["fft", "ifft", "fft2", "ifft2", "fftn", "ifftn", "rfft", "irfft", "rfft2", "irfft2",
           "rfftn", "irfftn", "hfft", "ihfft", "fftfreq", "rfftfreq", "fftshift", "ifftshift"]
