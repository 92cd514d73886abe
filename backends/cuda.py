"""`phalanx.backends.cuda`: whether the CUDA path is there (`is_built()`: CuPy imports and sees
a GPU) and PyTorch's TF32 switch, which CuPy's matmuls do not read."""
from .. import cuda as _cuda


def is_built():
    return _cuda.is_available()


class _MatmulFlags:
    """`phalanx.backends.cuda.matmul.allow_tf32`: only False (full float32) is honoured."""

    def __init__(self):
        self._allow_tf32 = False

    @property
    def allow_tf32(self):
        return self._allow_tf32

    @allow_tf32.setter
    def allow_tf32(self, value):
        if value:
            raise NotImplementedError("phalanx.backends.cuda.matmul.allow_tf32 = True: Phalanx "
                                      "always multiplies float32 matrices in full float32")
        self._allow_tf32 = False


matmul = _MatmulFlags()
