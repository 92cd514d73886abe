"""`phalanx.backends.cudnn`: PyTorch's cuDNN switches.

Phalanx does not call cuDNN (convolutions are im2col + matmul on NumPy/CuPy), so
`is_available()` is False everywhere and `version()` is None. The flags are plain attributes
that scripts may set: no kernel here is autotuned, so `benchmark` has nothing to choose; on
the CPU every kernel is deterministic, while on a GPU CuPy's atomic scatter-adds (the backward
of embedding and indexing) sum in no fixed order whatever `deterministic` says.
"""
enabled = True
benchmark = False
benchmark_limit = 10
deterministic = False
allow_tf32 = True


def is_available():
    return False


def version():
    return None


def is_acceptable(tensor):
    return False
