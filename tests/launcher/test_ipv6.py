"""`phalanx run` with its rendezvous on a non-loopback IPv6 address: the store and the ranks'
ZeroMQ transport bind that interface (in brackets) and every collective runs over it."""
import os
import socket

import pytest

COLLECTIVES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers",
                           "zmq_collectives.py")


@pytest.mark.timeout(120)
def test_a_job_meets_at_an_ipv6_rendezvous(launcher, non_loopback_ipv6):
    address = non_loopback_ipv6
    with socket.socket(socket.AF_INET6) as s:
        s.bind((address, 0))
        port = s.getsockname()[1]
    env = launcher.env()
    env.pop("PHALANX_ZMQ_HOST", None)
    code, out = launcher.run("--nproc-per-node", 2, "--rdzv-endpoint", f"[{address}]:{port}",
                             COLLECTIVES, env=env, timeout=100)
    assert code == 0, out
    assert "rank 0: all collectives ok" in out and "rank 1: all collectives ok" in out, out
