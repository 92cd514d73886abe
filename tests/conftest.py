"""Suite-wide setup: the PyTorch oracle must be present (tests compare against it)."""
import pytest


def pytest_configure(config):
    try:
        import torch  # noqa: F401
    except ImportError:
        raise pytest.UsageError(
            "the test suite compares against PyTorch CPU, which is not installed: "
            "pip install torch==2.13.0") from None
