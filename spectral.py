"""Short-time Fourier transforms: `stft` and `istft`, as `torch.stft` / `torch.istft`.

Both are compositions of differentiable ops (padding, `unfold` into frames, the window, the
FFTs of `phalanx.fft`, and `fold` to overlap-add), so gradients come for free, on either
backend. The layout is PyTorch's: a spectrogram is (batch?, frequencies, frames).
"""
import math
import warnings

from . import fft
from .nn import functional as F
from .tensor import creation
from .tensor.ops.complex import complex as _complex, view_as_real


def _frames_setup(name, n_fft, hop_length, win_length, window, like):
    """hop, and the window zero-padded to n_fft (centred), checked as PyTorch checks them."""
    if not isinstance(n_fft, int) or n_fft <= 0:
        raise RuntimeError(f"{name}: expected 0 < n_fft, but got n_fft={n_fft}")
    hop = n_fft // 4 if hop_length is None else hop_length
    if hop <= 0:
        raise RuntimeError(f"{name}: expected hop_length > 0, but got hop_length={hop}")
    win = n_fft if win_length is None else win_length
    if not 0 < win <= n_fft:
        raise RuntimeError(f"{name}: expected 0 < win_length <= n_fft, but got "
                           f"win_length={win}")
    if window is None:
        warnings.warn(f"{name}: a window was not provided, so a rectangular one is used, which "
                      f"causes spectral leakage; pass e.g. window=phalanx.hann_window({win}) "
                      f"(or window=phalanx.ones({win}) to keep the rectangle quietly)",
                      UserWarning, stacklevel=3)
        window = creation.ones(win, dtype=like.real.dtype if like.is_complex() else like.dtype,
                               device=like.device)
    if window.ndim != 1 or window.shape[0] != win:
        raise RuntimeError(f"{name}: expected a 1D window tensor of size equal to "
                           f"win_length={win}, but got window with size {list(window.shape)}")
    left = (n_fft - win) // 2
    if left or n_fft - win - left:
        window = F.pad(window, (left, n_fft - win - left))
    return hop, window


def stft(input, n_fft, hop_length=None, win_length=None, window=None, center=True,
         pad_mode="reflect", normalized=False, onesided=None, return_complex=None,
         align_to_window=None):
    """The STFT of a 1-D (L) or 2-D (B, L) signal: (B?, n_fft // 2 + 1 or n_fft, frames)."""
    if align_to_window is not None:
        raise NotImplementedError("stft(align_to_window=...) is not supported; leave it None "
                                  "(frames start at multiples of hop_length)")
    if return_complex is None and not (input.is_complex() or
                                       (window is not None and window.is_complex())):
        raise RuntimeError("stft requires the return_complex parameter be given for real "
                           "inputs; pass return_complex=True (or False for the deprecated "
                           "real view, (..., 2))")
    if input.ndim not in (1, 2):
        raise RuntimeError(f"stft: expected a 1D or 2D tensor, got shape {list(input.shape)}")
    x = input if input.ndim == 2 else input.unsqueeze(0)
    hop, window = _frames_setup("stft", n_fft, hop_length, win_length, window, x)
    if center:
        half = n_fft // 2
        x = F.pad(x.unsqueeze(1), (half, half), mode=pad_mode).squeeze(1)
    if not 0 < n_fft <= x.shape[-1]:
        raise RuntimeError(f"stft: expected 0 < n_fft <= {x.shape[-1]} (the padded signal's "
                           f"length), but got n_fft={n_fft}")
    frames = x.unfold(-1, n_fft, hop) * window                    # (B, frames, n_fft)
    real = not (x.is_complex() or window.is_complex())
    if onesided is None:
        onesided = real
    if onesided and not real:
        raise RuntimeError("stft: cannot have onesided output if the window or input is "
                           "complex")
    spec = fft.rfft(frames, dim=-1) if onesided else fft.fft(frames, dim=-1)
    if normalized:
        spec = spec * (1.0 / math.sqrt(n_fft))
    spec = spec.transpose(-1, -2)                                 # (B, freq, frames)
    if return_complex is False:
        warnings.warn("stft with return_complex=False is deprecated; use return_complex=True "
                      "and phalanx.view_as_real for the (..., 2) form", UserWarning,
                      stacklevel=2)
        spec = view_as_real(spec)
    return spec if input.ndim == 2 else spec.squeeze(0)


def istft(input, n_fft, hop_length=None, win_length=None, window=None, center=True,
          normalized=False, onesided=None, length=None, return_complex=False):
    """The signal whose STFT (with the same arguments) is `input`, (B?, freq, frames): the
    frames' inverse FFTs, windowed, overlap-added and divided by the window's squared sum."""
    if not input.is_complex():
        raise RuntimeError("istft requires a complex-valued input tensor (an STFT with "
                           "return_complex=True)")
    if input.ndim not in (2, 3):
        raise RuntimeError(f"istft: expected a tensor of 2 or 3 dims (batch?, frequencies, "
                           f"frames), got shape {list(input.shape)}")
    spec = input if input.ndim == 3 else input.unsqueeze(0)
    n_freq, n_frames = spec.shape[-2:]
    hop, window = _frames_setup("istft", n_fft, hop_length, win_length, window, spec)
    if onesided is None:
        onesided = n_freq != n_fft
    if onesided and n_freq != n_fft // 2 + 1:
        raise RuntimeError(f"istft: expected the frequency dimension (dim -2) of the input to "
                           f"be n_fft // 2 + 1 = {n_fft // 2 + 1} when onesided=True, but got "
                           f"{n_freq}")
    if not onesided and n_freq != n_fft:
        raise RuntimeError(f"istft: expected the frequency dimension (dim -2) of the input to "
                           f"be n_fft = {n_fft} when onesided=False, but got {n_freq}")
    if return_complex and onesided:
        raise RuntimeError("istft: cannot have onesided output if the result is complex "
                           "(return_complex=True); pass onesided=False")
    spec = spec.transpose(-1, -2)                                 # (B, frames, freq)
    if normalized:
        spec = spec * math.sqrt(n_fft)
    if return_complex:
        frames = fft.ifft(spec, dim=-1)
    else:   # a real signal: its spectrum's first half says everything (the rest is ignored)
        frames = fft.irfft(spec[..., :n_fft // 2 + 1], n=n_fft, dim=-1)
    frames = frames * window                                      # (B, frames, n_fft)
    total = n_fft + hop * (n_frames - 1)
    y = _overlap_add(frames, total, n_fft, hop)
    envelope = _overlap_add(window.abs().pow(2).expand(1, n_frames, n_fft), total, n_fft,
                            hop)[0]
    start = n_fft // 2 if center else 0
    end = (total - n_fft // 2 if center else total) if length is None else \
        min(start + length, total)
    y, envelope = y[:, start:end], envelope[start:end]
    smallest = float(envelope.detach().abs().min().item()) if end > start else 1.0
    if smallest < 1e-11:
        raise RuntimeError(f"istft: window overlap add min: {smallest:g} (the window and "
                           f"hop_length do not cover every sample: nonzero overlap-add "
                           f"condition violated); use a window that overlaps itself at this "
                           f"hop, or a smaller hop_length")
    y = y / envelope
    if length is not None and y.shape[-1] < length:
        warnings.warn(f"istft: the frames give {y.shape[-1]} samples, fewer than "
                      f"length={length}; the tail is zero-padded (check center and hop_length)",
                      UserWarning, stacklevel=2)
        y = F.pad(y, (0, length - y.shape[-1]))
    return y if input.ndim == 3 else y.squeeze(0)


def _overlap_add(frames, total, n_fft, hop):
    """(B, frames, n_fft) -> (B, total): frame m added at m * hop (complex: parts apart)."""
    if frames.is_complex():
        return _complex(_overlap_add(frames.real, total, n_fft, hop),
                        _overlap_add(frames.imag, total, n_fft, hop))
    out = F.fold(frames.transpose(1, 2), output_size=(1, total), kernel_size=(1, n_fft),
                 stride=(1, hop))
    return out.reshape(frames.shape[0], total)


__all__ = ["stft", "istft"]
