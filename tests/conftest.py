"""Suite-wide setup: the PyTorch oracle must be present (tests compare against it)."""
import pytest


def pytest_configure(config):
    try:
        import torch  # noqa: F401
    except ImportError:
        raise pytest.UsageError(
            "the test suite compares against PyTorch CPU, which is not installed: "
            "pip install torch==2.13.0") from None


NO_GPU = "no usable CUDA device here (phalanx.cuda.is_available() is False)"


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """Run a test on the CPU and, when a GPU is usable, on "cuda" too (compare with the CPU or
    with PyTorch CPU at float32 tolerances there); without one the cuda case skips."""
    if request.param == "cuda":
        import phalanx as px
        if not px.cuda.is_available():
            pytest.skip(NO_GPU)
    return request.param
