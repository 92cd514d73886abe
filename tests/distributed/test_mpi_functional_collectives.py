"""torch.distributed.nn.functional over the mpi backend: each collective's gradient equals the
single-process gradient of the sum of every rank's loss (computed here on every rank, from
every rank's data, which each rank can rebuild from its seed)."""
import warnings

import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
from phalanx.distributed.nn import functional as F

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(60),
              pytest.mark.filterwarnings("ignore::FutureWarning")]


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


def data(r, shape=(2, 3)):
    return np.random.default_rng(10 + r).standard_normal(shape)


def weights(r, shape):
    return np.random.default_rng(100 + r).standard_normal(shape)


def test_all_gather_sends_every_ranks_gradient_home(world):
    rank, size = world
    x = px.tensor(data(rank), requires_grad=True)
    everyone = px.cat(F.all_gather(x))
    np.testing.assert_allclose(everyone.detach().numpy(),
                               np.concatenate([data(r) for r in range(size)]))
    (everyone.tanh() * px.tensor(weights(rank, (2 * size, 3)))).sum().backward()
    # the whole job's loss, by one process: sum over r of (tanh(all) * w_r).sum()
    xs = [px.tensor(data(r), requires_grad=True) for r in range(size)]
    total = sum((px.cat(xs).tanh() * px.tensor(weights(r, (2 * size, 3)))).sum()
                for r in range(size))
    total.backward()
    np.testing.assert_allclose(x.grad.numpy(), xs[rank].grad.numpy(), rtol=1e-12)


def test_all_reduce_broadcast_and_reduce(world):
    rank, size = world
    w = weights(rank, (2, 3))
    x = px.tensor(data(rank), requires_grad=True)
    y = F.all_reduce(x)
    np.testing.assert_allclose(y.detach().numpy(), sum(data(r) for r in range(size)))
    (y * px.tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), sum(weights(r, (2, 3)) for r in range(size)))

    x = px.tensor(data(rank), requires_grad=True)
    y = F.broadcast(x, src=1)
    np.testing.assert_allclose(y.detach().numpy(), data(1))
    (y * px.tensor(w)).sum().backward()
    expected = sum(weights(r, (2, 3)) for r in range(size)) if rank == 1 else np.zeros((2, 3))
    np.testing.assert_allclose(x.grad.numpy(), expected)

    x = px.tensor(data(rank), requires_grad=True)
    y = F.reduce(x, dst=0)
    if rank == 0:
        np.testing.assert_allclose(y.detach().numpy(), sum(data(r) for r in range(size)))
    (y * px.tensor(weights(0, (2, 3)))).sum().backward()   # only rank 0's output counts...
    # ...but every rank's y took part: each x gets rank 0's weights, broadcast back
    np.testing.assert_allclose(x.grad.numpy(), weights(0, (2, 3)))


def test_reduce_scatter_and_all_to_all_single(world):
    rank, size = world
    parts = [px.tensor(data(rank * 10 + j, (3,)), requires_grad=True) for j in range(size)]
    mine = F.reduce_scatter(px.zeros(3, dtype=px.float64), parts)
    np.testing.assert_allclose(mine.detach().numpy(),
                               sum(data(r * 10 + rank, (3,)) for r in range(size)))
    (mine * px.tensor(weights(rank, (3,)))).sum().backward()
    for j, p in enumerate(parts):                    # slot j was reduced onto rank j
        np.testing.assert_allclose(p.grad.numpy(), weights(j, (3,)))

    x = px.tensor(data(rank, (size, 2)), requires_grad=True)
    y = F.all_to_all_single(px.zeros(size, 2, dtype=px.float64), x)
    np.testing.assert_allclose(y.detach().numpy(), np.stack([data(r, (size, 2))[rank]
                                                             for r in range(size)]))
    (y * px.tensor(weights(rank, (size, 2)))).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.stack([weights(j, (size, 2))[rank]
                                                         for j in range(size)]))


def test_gather_and_scatter(world):
    rank, size = world
    x = px.tensor(data(rank, (2,)), requires_grad=True)
    got = F.gather(x, dst=0)
    if rank == 0:
        np.testing.assert_allclose(px.stack(got).detach().numpy(),
                                   np.stack([data(r, (2,)) for r in range(size)]))
        loss = sum((g * px.tensor(weights(r, (2,)))).sum() for r, g in enumerate(got))
    else:
        loss = sum(g.sum() * 0 for g in got)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), weights(rank, (2,)))

    pieces = [px.tensor(data(20 + j, (2,)), requires_grad=True) for j in range(size)]
    mine = F.scatter(pieces, src=0)
    np.testing.assert_allclose(mine.detach().numpy(), data(20 + rank, (2,)))
    (mine * px.tensor(weights(rank, (2,)))).sum().backward()
    if rank == 0:
        for j, p in enumerate(pieces):
            np.testing.assert_allclose(p.grad.numpy(), weights(j, (2,)))


def test_the_deprecation_warning_is_pytorchs(world):
    with pytest.warns(FutureWarning, match="distributed.nn.functional.all_reduce is "
                                           "deprecated"):
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            F.all_reduce(px.ones(1))
