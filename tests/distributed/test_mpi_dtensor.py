"""Autograd through DTensor's conversions over the mpi backend (2 and 3 ranks), as PyTorch's
DTensor differentiates them: `to_local`, `full_tensor`, `from_local` and `redistribute`
pass gradients back laid out as their inputs. Each test checks the gradient against the
same function computed on the whole tensor in one process (float64)."""
import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
from phalanx.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


def _whole(shape, seed):
    """The same float64 array on every rank."""
    return np.random.default_rng(seed).standard_normal(shape)


def _chunk(arr, dim, rank, size):
    """Rank's part of `arr` along `dim`, as torch.chunk splits it."""
    n = arr.shape[dim]
    step = -(-n // size)
    start = min(rank * step, n)
    return arr.take(range(start, min(start + step, n)), axis=dim)


def _leaf(arr, placement):
    return distribute_tensor(px.tensor(arr), placements=[placement]).requires_grad_()


@pytest.mark.parametrize("placement", [Shard(0), Shard(1), Replicate()],
                         ids=["shard0", "shard1", "replicate"])
def test_full_tensor_and_to_local_pass_gradients_back_in_the_inputs_layout(world,
                                                                          placement):
    rank, size = world
    x, w = _whole((2 * size + 1, 3), 0), _whole((2 * size + 1, 3), 1)
    leaf = _leaf(x, placement)
    whole = leaf.full_tensor()
    assert whole.requires_grad and not isinstance(whole, DTensor)
    (whole * px.tensor(w)).sum().backward()
    assert isinstance(leaf.grad, DTensor) and leaf.grad.placements == (placement,)
    np.testing.assert_array_equal(leaf.grad.full_tensor().numpy(), w)   # d(sum x*w)/dx

    leaf.grad = None
    local = leaf.to_local()
    assert local.requires_grad and local.grad_fn is not None
    (local ** 2).sum().backward()
    np.testing.assert_allclose(leaf.grad.full_tensor().numpy(), 2 * x, rtol=1e-15)


def test_from_local_takes_the_gradient_of_this_ranks_part(world):
    rank, size = world
    x, w = _whole((size * 2, 4), 2), _whole((size * 2, 4), 3)
    mine = px.tensor(_chunk(x, 0, rank, size)).requires_grad_()
    dt = DTensor.from_local(mine, placements=[Shard(0)])
    assert dt.requires_grad and not dt.is_leaf and dt.shape == x.shape
    (dt.full_tensor() * px.tensor(w)).sum().backward()
    np.testing.assert_array_equal(mine.grad.numpy(), _chunk(w, 0, rank, size))


@pytest.mark.parametrize("op", ["sum", "avg"])
def test_the_gradient_of_a_partial_sum_reaches_every_term(world, op):
    """y = sum (or mean) of every rank's x: each x gets the whole gradient (or 1/n of it)."""
    rank, size = world
    mine = px.tensor(_whole((3,), 10 + rank)).requires_grad_()
    dt = DTensor.from_local(mine, placements=[Partial(op)])
    total = dt.full_tensor()
    terms = np.stack([_whole((3,), 10 + r) for r in range(size)])
    np.testing.assert_allclose(total.detach().numpy(),
                               terms.sum(0) if op == "sum" else terms.mean(0), rtol=1e-14)
    w = _whole((3,), 4)
    (total * px.tensor(w)).sum().backward()
    np.testing.assert_allclose(mine.grad.numpy(), w if op == "sum" else w / size, rtol=1e-15)


def test_redistribute_moves_the_gradient_back(world):
    rank, size = world
    x, w = _whole((size + 1, 2 * size), 5), _whole((size + 1, 2 * size), 6)
    leaf = _leaf(x, Shard(0))
    by_columns = leaf.redistribute(placements=[Shard(1)])
    assert by_columns.placements == (Shard(1),) and by_columns.requires_grad
    part = by_columns.to_local()
    np.testing.assert_array_equal(part.detach().numpy(), _chunk(x, 1, rank, size))
    (part * px.tensor(_chunk(w, 1, rank, size))).sum().backward()
    assert leaf.grad.placements == (Shard(0),)
    np.testing.assert_array_equal(leaf.grad.full_tensor().numpy(), w)

    leaf.grad = None                  # Replicate -> Shard cuts forward, gathers backward
    copy = _leaf(x, Replicate())
    cut = copy.redistribute(placements=[Shard(0)]).to_local()
    (cut * 3.0).sum().backward()
    assert copy.grad.placements == (Replicate(),)
    np.testing.assert_array_equal(copy.grad.to_local().numpy(), np.full_like(x, 3.0))


def test_grad_placements_say_how_the_gradient_is_laid_out(world):
    """to_local(grad_placements=[Partial()]): each rank's gradient is a partial sum. A leaf
    takes the sum in its own layout (where PyTorch keeps the Partial gradient and its
    optimizer's DTensor ops reduce it): its local part is what optimizers update."""
    rank, size = world
    x = _whole((size, 2), 7)
    total = size * (size + 1) / 2
    leaf = _leaf(x, Replicate())
    local = leaf.to_local(grad_placements=[Partial()])
    (local * float(rank + 1)).sum().backward()
    assert leaf.grad.placements == (Replicate(),)
    np.testing.assert_array_equal(leaf.grad.to_local().numpy(), np.full_like(x, total))


def test_conversions_outside_autograd_stay_plain(world):
    rank, size = world
    x = _whole((size, 2), 8)
    leaf = _leaf(x, Shard(0))
    with px.no_grad():
        local = leaf.to_local()
    assert not local.requires_grad and local.grad_fn is None
    local.detach().mul_(0)                 # to_local shares memory with the DTensor
    assert not leaf.detach().full_tensor().numpy()[rank].any()
    assert "DTensor(local_tensor=" in repr(leaf)      # printing records no graph
    with pytest.raises(RuntimeError, match="Partial is a result of ops"):
        leaf.redistribute(placements=[Partial()])
    for read in (lambda: leaf.detach().numpy(), lambda: leaf.tolist(),
                 lambda: np.asarray(leaf)):           # never one rank's part as the whole
        with pytest.raises(RuntimeError, match="full_tensor"):
            read()
    data = leaf.data
    assert isinstance(data, DTensor) and data.shape == leaf.shape and not data.requires_grad
    one = distribute_tensor(px.tensor([float(size)]), placements=[Shard(0)])
    assert one.item() == size                    # only rank 0 holds it: gathered


def test_elementwise_and_rearranging_ops_differentiate_on_the_local_parts(world):
    """Elementwise ops, reshapes that keep the sharded dim whole and permutes run on each
    rank's part under autograd; the result equals the op on the whole tensor."""
    rank, size = world
    x, w = _whole((2, 3, 2 * size + 1), 11), _whole((2 * size + 1, 6), 12)
    leaf = _leaf(x, Shard(2))
    y = px.nn.functional.gelu(leaf * 3.0).tanh() + leaf
    z = y.flatten(0, 1).transpose(0, 1)             # (classes, rows): sharded on dim 0
    assert isinstance(z, DTensor) and z.placements == (Shard(0),)
    assert z.shape == (2 * size + 1, 6)
    (z.full_tensor() * px.tensor(w)).sum().backward()

    whole = px.tensor(x).requires_grad_()
    ref = (px.nn.functional.gelu(whole * 3.0).tanh() + whole).flatten(0, 1).transpose(0, 1)
    np.testing.assert_allclose(z.full_tensor().detach().numpy(), ref.detach().numpy(),
                               rtol=1e-14)
    (ref * px.tensor(w)).sum().backward()
    np.testing.assert_allclose(leaf.grad.full_tensor().numpy(), whole.grad.numpy(),
                               rtol=1e-13)
    with pytest.raises(NotImplementedError, match="splits or merges that dim"):
        leaf.flatten(1, 2)
    with pytest.raises(NotImplementedError, match="Sum on a DTensor"):
        leaf.sum()


def test_rounding_keeps_the_layout_and_comparisons_agree_on_every_rank(world):
    rank, size = world
    x = _whole((size + 1, 2), 13) * 3
    dt = distribute_tensor(px.tensor(x), placements=[Shard(0)])
    for op, ref in ((px.floor, np.floor), (px.ceil, np.ceil), (px.trunc, np.trunc),
                    (px.round, np.round)):
        out = op(dt)
        assert isinstance(out, DTensor) and out.placements == (Shard(0),)
        np.testing.assert_array_equal(out.full_tensor().numpy(), ref(x))
    other = dt.clone()
    if rank == 0:                         # one rank's part differs: every rank says so
        other.to_local().detach().add_(1.0)
    assert not px.equal(dt, other) and not px.allclose(dt, other)
    assert px.equal(dt, dt.clone()) and px.allclose(dt, dt.clone())
