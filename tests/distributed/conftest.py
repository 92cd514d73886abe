"""Fixtures of the single-process distributed tests."""
import socket

import pytest


@pytest.fixture
def torch_world():
    """PyTorch's default process group, a gloo world of one (the oracle's side)."""
    import torch.distributed as tdist
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0,
                             world_size=1)
    yield
    tdist.destroy_process_group()
