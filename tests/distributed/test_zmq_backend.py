"""ZmqProcessGroup with real processes (2, 3 and 4 ranks) started by the test itself around an
in-process store; not an MPI test. The worker script checks every verb against NumPy."""
import os
import subprocess
import sys

import numpy as np
import pytest

import phalanx
from phalanx.distributed.store import Store, StoreServer
from phalanx.distributed.zmq_backend import ZmqProcessGroup

from .spawned import join

WORKER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launcher",
                      "workers", "zmq_collectives.py")


def _spawn(server, size, script, *args):
    parent = os.path.dirname(os.path.abspath(list(phalanx.__path__)[0]))
    env = dict(os.environ, PHALANX_STORE_ENDPOINT=server.endpoint,
               PHALANX_STORE_TOKEN=server.token, WORLD_SIZE=str(size),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [parent, os.environ.get("PYTHONPATH")])))
    return [subprocess.Popen([sys.executable, script, *args], env=dict(env, RANK=str(r)),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for r in range(size)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", [2, 3, 4])
def test_every_collective_matches_numpy(size):
    with StoreServer() as server:
        codes, outs = join(_spawn(server, size, WORKER), timeout=100)
    assert codes == [0] * size, "\n".join(outs)
    assert all("all collectives ok" in out for out in outs)


@pytest.mark.timeout(30)
def test_world_of_one_needs_no_peers():
    with StoreServer() as server:
        pg = ZmqProcessGroup.from_store(Store(server.endpoint, server.token), 0, 1, timeout=5)
        x = np.arange(10.0)
        pg.allreduce(x).wait()
        pg.broadcast(x).wait()
        out = np.zeros((1, 10))
        pg.allgather(out, x).wait()
        pg.barrier().wait()
        assert np.array_equal(out[0], np.arange(10.0))
        assert pg.allgather_object("me") == ["me"]
        pg.shutdown()


@pytest.mark.timeout(30)
def test_bad_arguments_are_explained():
    with StoreServer() as server:
        pg = ZmqProcessGroup.from_store(Store(server.endpoint, server.token), 0, 1, timeout=5)
        with pytest.raises(ValueError, match="C-contiguous"):
            pg.allreduce(np.zeros((4, 4))[:, 1])
        with pytest.raises(TypeError, match="NumPy arrays"):
            pg.allreduce([1.0, 2.0])
        with pytest.raises(TypeError, match="floating dtype"):
            pg.allreduce(np.zeros(3, dtype=np.int64), "avg")
        with pytest.raises(ValueError, match=r"shape \(1, 3\)"):
            pg.allgather(np.zeros((2, 3)), np.zeros(3))
        pg.shutdown()


@pytest.mark.timeout(30)
def test_a_missing_peer_times_out_naming_the_rank():
    with StoreServer() as server:
        store = Store(server.endpoint, server.token, timeout=5)
        store.set("lonely/addr/1", "tcp://127.0.0.1:1")     # a peer that never answers
        pg = ZmqProcessGroup(store, 0, 2, timeout=0.5, prefix="lonely")
        with pytest.raises(RuntimeError, match="rank 1"):
            pg.allreduce(np.zeros(4)).wait()
        with pytest.raises(RuntimeError, match="broken"):      # later calls fail fast
            pg.barrier().wait()
        pg.shutdown()


@pytest.mark.timeout(30)
def test_a_reused_prefix_is_refused():
    with StoreServer() as server:
        store = Store(server.endpoint, server.token)
        pg = ZmqProcessGroup.from_store(store, 0, 1, timeout=5, prefix="twice")
        with pytest.raises(ValueError, match="'twice' is already used"):
            ZmqProcessGroup.from_store(store, 0, 1, timeout=5, prefix="twice")
        pg.shutdown()
