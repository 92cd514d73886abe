"""Memory formats (torch.contiguous_format, preserve_format, channels_last,
channels_last_3d) and the one check every `memory_format=` argument goes through.

Phalanx keeps tensors row-major: `contiguous_format` is what every op produces and
`preserve_format` (keep the input's layout) asks for nothing else of a row-major tensor.
The channels-last formats would give tensors the same values with other strides; they are
refused with NotImplementedError rather than accepted and ignored.
"""


class NamedConstant:
    """A named singleton like `phalanx.channels_last`: prints and pickles as its name."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"phalanx.{self.name}"

    def __reduce__(self):
        return self.name


class memory_format(NamedConstant):
    """A tensor's memory format (torch.memory_format)."""


contiguous_format = memory_format("contiguous_format")
preserve_format = memory_format("preserve_format")
channels_last = memory_format("channels_last")
channels_last_3d = memory_format("channels_last_3d")


def check_memory_format(fmt, where, allow_preserve=True):
    """Accept None, contiguous_format and (where it means something) preserve_format."""
    if fmt is None or fmt is contiguous_format or (allow_preserve and fmt is preserve_format):
        return
    if fmt is preserve_format:
        raise RuntimeError(f"{where}: preserve memory format is unsupported by the contiguous "
                           f"operator")
    if isinstance(fmt, memory_format):
        raise NotImplementedError(f"{where}(memory_format={fmt!r}): channels-last layouts are "
                                  f"not supported; Phalanx keeps tensors row-major "
                                  f"(contiguous_format), which gives the same values")
    raise TypeError(f"{where}: memory_format must be a phalanx.memory_format, got {fmt!r}")


def is_contiguous(self, memory_format=contiguous_format):
    """Row-major contiguity, or (channels_last / channels_last_3d) whether the strides are
    those of a channels-last tensor of this shape (size-1 dims ignored), as PyTorch says."""
    if memory_format is None or memory_format is contiguous_format:
        return bool(self._data.flags.c_contiguous)
    if memory_format is preserve_format:
        raise RuntimeError("is_contiguous: preserve memory format is unsupported by the "
                           "contiguous operator")
    rank = {channels_last: 4, channels_last_3d: 5}.get(memory_format)
    if rank is None:
        raise TypeError(f"is_contiguous: memory_format must be a phalanx.memory_format, got "
                        f"{memory_format!r}")
    if self.ndim != rank:
        return False
    order = (1,) + tuple(range(rank - 1, 1, -1)) + (0,)   # innermost first: C, W, H, (D), N
    expected, step = {}, 1
    for dim in order:
        expected[dim] = step
        step *= self.shape[dim]
    strides = self.stride()
    return all(self.shape[d] == 1 or strides[d] == expected[d] for d in range(rank))
