"""Padding layers (PyTorch's names): constant/zero, reflection, replication and circular
padding of the last 1, 2 or 3 dims, over `F.pad`."""
from ..functional import pad
from .module import Module
from .utils import _ntuple


class _PadNd(Module):
    _mode, _n = "constant", 1

    def __init__(self, padding, value=0.0):
        super().__init__()
        self.padding = _ntuple(2 * self._n)(padding)
        if len(self.padding) != 2 * self._n:
            raise ValueError(f"{type(self).__name__}: padding must be an int or a "
                             f"{2 * self._n}-tuple, got {padding!r}")
        self.value = value

    def forward(self, input):
        if input.ndim not in (self._n + 1, self._n + 2):
            raise ValueError(f"{type(self).__name__}: expected {self._n + 1}D or "
                             f"{self._n + 2}D input, got shape {list(input.shape)}")
        return pad(input, self.padding, self._mode, self.value)

    def extra_repr(self):
        if self._mode == "constant" and type(self).__name__.startswith("Constant"):
            return f"padding={self.padding}, value={self.value}"
        return f"{self.padding}"


def _layer(name, mode, n, constant=False):
    if constant:
        def __init__(self, padding, value):
            _PadNd.__init__(self, padding, value)
    else:
        def __init__(self, padding):
            _PadNd.__init__(self, padding)
    return type(name, (_PadNd,), {"_mode": mode, "_n": n, "__init__": __init__,
                                   "__module__": __name__, "__qualname__": name})


ConstantPad1d = _layer("ConstantPad1d", "constant", 1, constant=True)
ConstantPad2d = _layer("ConstantPad2d", "constant", 2, constant=True)
ConstantPad3d = _layer("ConstantPad3d", "constant", 3, constant=True)
ZeroPad1d = _layer("ZeroPad1d", "constant", 1)
ZeroPad2d = _layer("ZeroPad2d", "constant", 2)
ZeroPad3d = _layer("ZeroPad3d", "constant", 3)
ReflectionPad1d = _layer("ReflectionPad1d", "reflect", 1)
ReflectionPad2d = _layer("ReflectionPad2d", "reflect", 2)
ReflectionPad3d = _layer("ReflectionPad3d", "reflect", 3)
ReplicationPad1d = _layer("ReplicationPad1d", "replicate", 1)
ReplicationPad2d = _layer("ReplicationPad2d", "replicate", 2)
ReplicationPad3d = _layer("ReplicationPad3d", "replicate", 3)
CircularPad1d = _layer("CircularPad1d", "circular", 1)
CircularPad2d = _layer("CircularPad2d", "circular", 2)
CircularPad3d = _layer("CircularPad3d", "circular", 3)
