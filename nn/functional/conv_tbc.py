"""conv_tbc: the 1-D convolution of time-major sequences (fairseq's layout), as conv1d of the
(batch, channels, time) view, so its gradients are conv1d's."""
from .conv import conv1d

__all__ = ["conv_tbc"]


def conv_tbc(input, weight, bias, pad=0):
    """(T, B, C_in) input, (k, C_in, C_out) weight, (C_out,) bias -> (T', B, C_out)."""
    if input.ndim != 3 or weight.ndim != 3:
        raise RuntimeError(f"conv_tbc: expected a 3-D input (time, batch, channels) and a 3-D "
                           f"weight (kernel, in, out), got shapes {list(input.shape)} and "
                           f"{list(weight.shape)}")
    out = conv1d(input.permute(1, 2, 0), weight.permute(2, 1, 0), bias, padding=pad)
    return out.permute(2, 0, 1)
