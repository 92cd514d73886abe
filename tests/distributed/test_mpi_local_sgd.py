"""Local SGD on N ranks (`post_localSGD_hook`, the model averagers, `PostLocalSGDOptimizer`)
against every rank's replica simulated in one process: plain DDP for the first steps, then
each replica steps on its own shard's gradient, and the replicas are replaced by their mean
on the averager's schedule."""
import copy
from collections import OrderedDict

import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.distributed import DistributedDataParallel as DDP
from phalanx.distributed.algorithms.ddp_comm_hooks import post_localSGD_hook as local_sgd
from phalanx.distributed.algorithms.model_averaging import averagers, utils
from phalanx.distributed.algorithms.model_averaging.hierarchical_model_averager import \
    HierarchicalModelAverager
from phalanx.distributed.optim import DistributedOptimizer, PostLocalSGDOptimizer

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(90)]
B = 4


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


def shards(steps, size, seed=0):
    rng = np.random.default_rng(seed)
    return [[(px.tensor(rng.standard_normal((B, 5))), px.tensor(rng.integers(0, 3, B)))
             for _ in range(size)] for _ in range(steps)]


def model():
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def mean_into(replicas):
    for ps in zip(*[r.parameters() for r in replicas]):
        mean = sum(p.detach().numpy() for p in ps) / len(ps)
        for p in ps:
            p.data = px.tensor(mean.copy())


@pytest.mark.parametrize("averager", ["periodic", "hierarchical"])
def test_local_sgd_matches_its_simulation(world, averager):
    rank, size = world
    start, steps = 2, 9
    px.manual_seed(11 + rank)                  # DDP takes rank 0's weights
    ddp = DDP(model())
    alone, _ = dist.new_subgroups(group_size=1)
    ddp.register_comm_hook(local_sgd.PostLocalSGDState(None, alone, start), local_sgd.
                           post_localSGD_hook)
    if averager == "periodic":
        avg = averagers.PeriodicModelAverager(period=3, warmup_steps=start)
        due = [k >= start and (k - start) % 3 == 0 for k in range(steps)]
    else:                                      # every 2 steps: alone (nothing); every 4: all
        avg = HierarchicalModelAverager(OrderedDict([(2, 1), (4, size)]), warmup_steps=start)
        due = [k >= start and k % 4 == 0 for k in range(steps)]
    opt = PostLocalSGDOptimizer(px.optim.SGD(ddp.parameters(), lr=0.2, momentum=0.5), avg)
    replicas = [copy.deepcopy(ddp.module) for _ in range(size)]
    opts = [px.optim.SGD(r.parameters(), lr=0.2, momentum=0.5) for r in replicas]
    for k, batch in enumerate(shards(steps, size)):
        opt.zero_grad()
        x, y = batch[rank]
        F.cross_entropy(ddp(x), y).backward()
        opt.step()
        for r, o, (xr, yr) in zip(replicas, opts, batch):
            o.zero_grad()
            F.cross_entropy(r(xr), yr).backward()
        if k < start:                          # plain DDP: every replica gets the mean
            for ps in zip(*[r.parameters() for r in replicas]):
                mean = sum(p.grad.numpy() for p in ps) / size
                for p in ps:
                    p.grad = px.tensor(mean.copy())
        for o in opts:
            o.step()
        if due[k]:
            mean_into(replicas)
        for (name, p), q in zip(replicas[rank].named_parameters(), ddp.module.parameters()):
            np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=1e-10,
                                       atol=1e-12, err_msg=f"step {k}: {name}")
    state = opt.state_dict()
    assert state["step"] == steps == avg.step
    avg.step = 0
    opt.load_state_dict(state)
    assert avg.step == steps


def test_average_parameters_of_groups_with_gradients_only(world):
    rank, size = world
    a = nn.Parameter(px.tensor([float(rank), 2.0 * rank]))
    b = nn.Parameter(px.tensor([float(rank)]))
    a.grad = px.zeros(2)                        # b has no gradient: it is left alone
    utils.average_parameters_or_parameter_groups([{"params": [a, b]}], None)
    mean = (size - 1) / 2
    assert a.detach().numpy().tolist() == [mean, 2 * mean]
    assert b.detach().numpy().tolist() == [float(rank)]
    with pytest.raises(ValueError, match="period"):
        averagers.PeriodicModelAverager(period=0)
    with pytest.raises(NotImplementedError, match="rpc"):
        DistributedOptimizer(px.optim.SGD, [])
