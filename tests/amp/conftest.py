import pytest

from phalanx.tensor import bf16_compute


@pytest.fixture(autouse=True)
def _leave_dispatch_as_found():
    """bfloat16 installs an interceptor for the rest of the process; other test folders check
    that nothing is attached, so each test here takes it out again."""
    yield
    bf16_compute.uninstall()
