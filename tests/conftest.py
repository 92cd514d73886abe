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


LAUNCHER_VARS = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "PMI_RANK", "PMI_SIZE",
                 "PMIX_RANK", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_RANK",
                 "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                 "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
                 "PHALANX_STORE_ENDPOINT", "PHALANX_STORE_TOKEN", "PHALANX_DEBUG", "MASTER_ADDR",
                 "MASTER_PORT"]


@pytest.fixture
def no_launcher(monkeypatch):
    """This process as a script started without a launcher sees it: every launcher's
    variables cleared, no process group."""
    import phalanx.distributed as dist
    for name in LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.fixture
def world_of_one(no_launcher):
    """A process group of this process alone, torn down afterwards."""
    import phalanx.distributed as dist
    dist.init_process_group()
    yield
    dist.destroy_process_group()


@pytest.fixture
def non_loopback_ipv6():
    """An IPv6 address of this host's that is neither loopback nor link-local; skips the
    test where there is none."""
    import ipaddress
    import socket

    import psutil
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family == socket.AF_INET6:
                ip = ipaddress.ip_address(a.address.split("%")[0])
                if not (ip.is_loopback or ip.is_link_local):
                    return str(ip)
    pytest.skip("this host has no non-loopback IPv6 address")
