"""Single process: environment detection, backend choice and the world of one (`local`).

These run in the plain test run (no mpiexec) and are skipped inside the MPI suites.
"""
import copy

import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.distributed.env import detect

pytestmark = [pytest.mark.mpi_skip, pytest.mark.timeout(60)]


@pytest.mark.parametrize("environ, expected", [
    ({}, (0, 1, 0, 1, "none", False)),
    ({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
      "OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "8"}, (3, 8, 1, 2, "phalanx", True)),
    ({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4",
      "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"},
     (2, 4, 0, 2, "openmpi", True)),
    ({"PMI_RANK": "1", "PMI_SIZE": "3", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "3"},
     (1, 3, 1, 3, "mpich", True)),
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_LOCALID": "1", "SLURM_NODEID": "2",
      "SLURM_STEP_TASKS_PER_NODE": "2(x3)"}, (5, 6, 1, 2, "slurm", True)),
    ({"SLURM_PROCID": "4", "SLURM_NTASKS": "5", "SLURM_LOCALID": "0", "SLURM_NODEID": "1",
      "SLURM_STEP_TASKS_PER_NODE": "4,1"}, (4, 5, 0, 1, "slurm", True)),
])
def test_environment_detection_order(environ, expected):
    e = detect(environ)
    assert (e.rank, e.world_size, e.local_rank, e.local_world_size, e.source,
            e.under_mpi) == expected


def test_environment_errors_name_the_variable():
    with pytest.raises(ValueError, match="RANK=4"):
        detect({"RANK": "4", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="PMI_SIZE"):
        detect({"PMI_RANK": "0", "PMI_SIZE": "two"})


def test_backend_choice_errors(no_launcher, monkeypatch):
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(RuntimeError, match="nccl"):
        dist.init_process_group("nccl")
    with pytest.raises(ValueError, match="unknown backend"):
        dist.init_process_group("carrier-pigeon")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="phalanx run"):
        dist.init_process_group()
    assert not dist.is_initialized()


def test_world_of_one_collectives_are_correct_no_ops(world_of_one):
    assert dist.get_backend() == "local"
    assert (dist.get_rank(), dist.get_world_size(), dist.get_local_rank()) == (0, 1, 0)
    t = px.tensor([1.0, 2.0])
    for op in dist.ReduceOp:
        dist.all_reduce(t, op=op)
    assert t.tolist() == [1.0, 2.0]
    dist.broadcast(t, src=0)
    dist.reduce(t, dst=0)
    out = [px.zeros(2)]
    dist.all_gather(out, t)
    assert out[0].tolist() == [1.0, 2.0]
    cat = px.zeros(2)
    dist.all_gather_into_tensor(cat, t)
    assert cat.tolist() == [1.0, 2.0]
    rs = px.zeros(2)
    dist.reduce_scatter(rs, [t])
    assert rs.tolist() == [1.0, 2.0]
    sc = px.zeros(2)
    dist.scatter(sc, [t], src=0)
    assert sc.tolist() == [1.0, 2.0]
    g = [px.zeros(2)]
    dist.gather(t, g, dst=0)
    assert g[0].tolist() == [1.0, 2.0]
    a2a = px.zeros(2)
    dist.all_to_all_single(a2a, t)
    assert a2a.tolist() == [1.0, 2.0]
    work = dist.all_reduce(t, async_op=True)
    assert work.is_completed() and work.wait()
    dist.barrier()
    objs = [None]
    dist.all_gather_object(objs, {"a": 1})
    assert objs == [{"a": 1}]
    with pytest.raises(RuntimeError, match="no peer"):
        dist.send(t, dst=0)
    assert dist.get_world_size(dist.new_group([0])) == 1


def test_world_of_one_ddp_equals_plain_training(world_of_one):
    px.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)).double()
    ref = copy.deepcopy(model)
    ddp = dist.DistributedDataParallel(dist.SyncBatchNorm.convert_sync_batchnorm(model))
    zero = dist.ZeroRedundancyOptimizer(ddp.parameters(), px.optim.Adam, lr=0.01)
    opt = px.optim.Adam(ref.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = px.tensor(rng.standard_normal((6, 4)))
        y = px.tensor(rng.integers(0, 2, 6))
        for m, o in ((ddp, zero), (ref, opt)):
            o.zero_grad()
            F.cross_entropy(m(x), y).backward()
            o.step()
    for p, q in zip(ddp.module.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=0, atol=1e-12)
    assert list(ddp.state_dict()) == list(ref.state_dict())


def test_debug_mode_is_read_from_the_environment_at_init(no_launcher, monkeypatch):
    monkeypatch.setenv("PHALANX_DEBUG", "1")
    dist.init_process_group()
    try:
        assert dist.debug.enabled()
        dist.all_reduce(px.tensor([1.0]))       # a world of one has nobody to disagree with
    finally:
        dist.destroy_process_group()
        dist.debug.set_enabled(False)
