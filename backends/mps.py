"""`phalanx.backends.mps`: Apple's Metal GPUs, which Phalanx does not support."""


def is_available():
    return False


def is_built():
    return False
