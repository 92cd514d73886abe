"""`DeviceMesh` in one process (a world of one), its errors next to PyTorch's (gloo, world of
one), and DDP's `device_mesh` argument."""
import pytest
import torch
from torch.distributed.device_mesh import init_device_mesh as torch_init_device_mesh

import phalanx.distributed as dist
import phalanx.nn as nn
from phalanx.distributed.device_mesh import DeviceMesh, init_device_mesh


def test_the_same_answers_as_pytorch(world_of_one, torch_world):
    for init in (init_device_mesh, torch_init_device_mesh):
        mesh = init("cpu", (1, 1), mesh_dim_names=("dp", "tp"))
        assert (mesh.ndim, mesh.shape, mesh.size(), mesh.size(1)) == (2, (1, 1), 1, 1)
        assert mesh.mesh.tolist() == [[0]] and mesh.get_coordinate() in ((0, 0), [0, 0])
        assert mesh.get_local_rank("tp") == 0 and mesh.get_rank() == 0
        assert mesh["tp"].mesh_dim_names == ("tp",) and mesh["tp"].get_local_rank() == 0
        with pytest.raises(RuntimeError, match="mesh_dim"):
            mesh.get_group()
        with pytest.raises(RuntimeError, match="mesh_dim"):
            mesh.get_local_rank()
        with pytest.raises(KeyError, match="Invalid mesh_dim_names"):
            mesh["pp"]
        with pytest.raises(RuntimeError, match="same length"):
            init("cpu", (1,), mesh_dim_names=("a", "b"))
        with pytest.raises(RuntimeError, match="1"):
            init("cpu", (2,))                     # the world has one rank


def test_a_mesh_initialises_the_world_when_needed(no_launcher):
    assert not dist.is_initialized()
    try:
        mesh = init_device_mesh("cpu", (1,))
        assert dist.is_initialized() and mesh.get_group() is dist.group.WORLD
    finally:
        dist.destroy_process_group()


def test_bad_meshes_are_refused(world_of_one):
    with pytest.raises(RuntimeError, match="distinct ranks"):
        DeviceMesh("cpu", [0, 0])
    with pytest.raises(RuntimeError, match="distinct ranks"):
        DeviceMesh("cpu", [1])
    with pytest.raises(ValueError, match="integer ranks"):
        DeviceMesh("cpu", [0.5])
    with pytest.raises(ValueError, match="device_type"):
        DeviceMesh("tpu", [0])
    with pytest.raises(NotImplementedError, match="backend_override"):
        DeviceMesh("cpu", [0], backend_override=(("mpi", None),))
    assert DeviceMesh("cpu", [0]) == DeviceMesh("cpu", torch.tensor([0]))
    assert "DeviceMesh((dp=1), 'cpu'" in repr(DeviceMesh("cpu", [0], mesh_dim_names=("dp",)))


def test_from_group(world_of_one):
    mesh = DeviceMesh.from_group(dist.group.WORLD, "cpu", mesh_dim_names=("dp",))
    assert mesh.get_group() is dist.group.WORLD and mesh.mesh.tolist() == [0]


def test_ddp_takes_a_one_dimensional_mesh(world_of_one):
    mesh = init_device_mesh("cpu", (1, 1), mesh_dim_names=("dp", "tp"))
    ddp = dist.DistributedDataParallel(nn.Linear(2, 2), device_mesh=mesh["dp"])
    assert ddp.process_group is mesh.get_group("dp")
    with pytest.raises(RuntimeError, match="Only 1D device mesh"):
        dist.DistributedDataParallel(nn.Linear(2, 2), device_mesh=mesh)
    with pytest.raises(RuntimeError, match="both process_group and device_mesh"):
        dist.DistributedDataParallel(nn.Linear(2, 2), device_mesh=mesh["dp"],
                                     process_group=dist.group.WORLD)
