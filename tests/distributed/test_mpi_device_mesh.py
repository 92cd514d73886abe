"""`init_device_mesh` / `DeviceMesh` over the mpi backend (2, 3 and 4 ranks): each dimension's
groups reduce over exactly the ranks of their line, slicing keeps this rank's line, and DDP
on a mesh dimension averages over that dimension only."""
import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
from phalanx.distributed.device_mesh import init_device_mesh

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(60)]


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


def _shape(size):
    return (2, size // 2) if size % 2 == 0 else (size, 1)


def _sum_over(group, value):
    t = px.tensor([float(value)])
    dist.all_reduce(t, group=group)
    return t.item()


def test_one_dimensional_mesh_is_the_world(world):
    rank, size = world
    mesh = init_device_mesh("cpu", (size,))
    assert mesh.ndim == 1 and mesh.shape == (size,) and mesh.size() == size
    assert mesh.mesh.tolist() == list(range(size)) and mesh.mesh.dtype == px.int32
    assert mesh.get_local_rank() == rank and mesh.get_coordinate() == (rank,)
    assert mesh.get_group() is dist.group.WORLD
    assert _sum_over(mesh.get_group(), rank) == sum(range(size))


def test_each_dimension_reduces_over_its_line(world):
    rank, size = world
    shape = _shape(size)
    mesh = init_device_mesh("cpu", shape, mesh_dim_names=("dp", "tp"))
    layout = np.arange(size).reshape(shape)
    row, col = (int(i) for i in np.argwhere(layout == rank)[0])
    assert mesh.get_coordinate() == (row, col)
    assert (mesh.get_local_rank("dp"), mesh.get_local_rank(1)) == (row, col)
    # "dp" runs down a column (ranks with this rank's tp coordinate), "tp" along a row
    column, line = layout[:, col].tolist(), layout[row, :].tolist()
    assert dist.get_process_group_ranks(mesh.get_group("dp")) == column
    assert dist.get_process_group_ranks(mesh.get_group("tp")) == line
    assert _sum_over(mesh.get_group("dp"), rank) == sum(column)
    assert _sum_over(mesh.get_group(1), rank + 1) == sum(line) + len(line)
    assert mesh.size(0) == shape[0] and mesh.size() == size
    assert mesh.get_all_groups() == [mesh.get_group(0), mesh.get_group(1)]


def test_slicing_keeps_this_ranks_line_and_its_groups(world):
    rank, size = world
    shape = _shape(size)
    mesh = init_device_mesh("cpu", shape, mesh_dim_names=("dp", "tp"))
    layout = np.arange(size).reshape(shape)
    row, col = (int(i) for i in np.argwhere(layout == rank)[0])
    tp = mesh["tp"]
    assert tp.mesh.tolist() == layout[row].tolist() and tp.mesh_dim_names == ("tp",)
    assert tp.get_group() is mesh.get_group("tp") and tp.get_local_rank() == col
    swapped = mesh["tp", "dp"]
    assert swapped.mesh.tolist() == layout.T.tolist()
    assert swapped.get_group(0) is mesh.get_group("tp")
    assert swapped.get_coordinate() == (col, row)
    assert mesh["dp", "tp"] == mesh and hash(mesh["dp", "tp"]) == hash(mesh)


def test_ddp_on_a_mesh_dimension_averages_over_it_only(world):
    """Each "dp" group trains on its ranks' batches: the gradient equals the single-process
    gradient of the dp line's concatenated batch, whatever the other lines do."""
    rank, size = world
    shape = _shape(size)
    mesh = init_device_mesh("cpu", shape, mesh_dim_names=("dp", "tp"))
    layout = np.arange(size).reshape(shape)
    column = layout[:, np.argwhere(layout == rank)[0][1]].tolist()

    def batch(r):
        return np.random.default_rng(100 + r).standard_normal((3, 4))

    px.manual_seed(0)
    model = nn.Linear(4, 2).double()
    reference = nn.Linear(4, 2).double()
    reference.load_state_dict(model.state_dict())
    ddp = dist.DistributedDataParallel(model, device_mesh=mesh["dp"])
    assert ddp.process_group is mesh.get_group("dp") and ddp.device_mesh == mesh["dp"]
    ddp(px.tensor(batch(rank))).pow(2).mean().backward()
    whole = np.concatenate([batch(r) for r in column])
    reference(px.tensor(whole)).pow(2).mean().backward()
    np.testing.assert_allclose(model.weight.grad.numpy(), reference.weight.grad.numpy(),
                               rtol=1e-12)
