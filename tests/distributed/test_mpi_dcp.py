"""`distributed.checkpoint.save` / `load` (DCP) over the mpi backend (2 and 3 ranks): a sharded
model and its optimizer, saved through a Stateful as PyTorch's DCP tutorial does, load back
exactly; a checkpoint loads into another layout (unsharded, one process) and an unsharded
one into shards; a folder without metadata, a missing key, a wrong shape and an object that
would need pickling are refused."""
import os

import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.distributed.checkpoint as dcp
import phalanx.nn as nn
from phalanx.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from phalanx.distributed.fsdp import fully_shard
from phalanx.distributed.tensor import DTensor

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


@pytest.fixture
def folder(world, tmp_path):
    """One folder all ranks share: in rank 0's pytest temporary tree (each rank has its own
    --basetemp), so pytest removes it even if a test is killed."""
    where = [str(tmp_path) if world[0] == 0 else None]
    dist.broadcast_object_list(where, src=0)
    yield os.path.join(where[0], "ckpt")
    dist.barrier()


class AppState(dcp.Stateful):
    """The DCP tutorial's wrapper: the model's and optimizer's state in one form."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer

    def state_dict(self):
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        return {"model": model_sd, "optim": optim_sd}

    def load_state_dict(self, state_dict):
        set_state_dict(self.model, self.optimizer, model_state_dict=state_dict["model"],
                       optim_state_dict=state_dict["optim"])


def _model(shard=True, seed=0, mesh=None):
    px.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    if shard:
        fully_shard(model[0], mesh=mesh)
        fully_shard(model, mesh=mesh)
    return model, px.optim.AdamW(model.parameters(), lr=0.05)


def _train(model, opt, steps=2):
    x = px.tensor(np.random.default_rng(3).standard_normal((6, 5)))
    for _ in range(steps):
        model(x).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()


def _whole(t):
    return (t.full_tensor() if isinstance(t, DTensor) else t).numpy()


def test_sharded_model_and_optimizer_round_trip(world, folder):
    rank, size = world
    model, opt = _model()
    _train(model, opt)
    dcp.save({"app": AppState(model, opt), "epoch": 4, "betas": (0.9, 0.99)},
             checkpoint_id=folder)
    files = sorted(os.listdir(folder))
    assert len(files) == size + 1 and files[0] == ".metadata", files
    assert [f.split("_")[2] for f in files[1:]] == [str(r) for r in range(size)], files
    fresh, fresh_opt = _model(seed=1)
    state = {"app": AppState(fresh, fresh_opt), "epoch": 0, "betas": None}
    dcp.load(state, checkpoint_id=folder)
    assert state["epoch"] == 4 and state["betas"] == (0.9, 0.99)
    for a, b in zip(model.parameters(), fresh.parameters()):
        np.testing.assert_array_equal(a.to_local().detach().numpy(), b.to_local().detach().numpy())
    _train(model, opt, 1)
    _train(fresh, fresh_opt, 1)           # the moments and step count came back too
    for a, b in zip(model.parameters(), fresh.parameters()):
        np.testing.assert_array_equal(a.to_local().detach().numpy(), b.to_local().detach().numpy())


def test_loads_into_other_layouts(world, folder):
    rank, size = world
    model, opt = _model()
    _train(model, opt)
    dcp.save({"model": model.state_dict()}, checkpoint_id=folder)
    whole = {k: _whole(v) for k, v in model.state_dict().items()}
    if rank == 0:                         # one process, unsharded: every chunk read
        plain, _ = _model(shard=False, seed=5)
        dcp.load({"model": plain.state_dict()}, checkpoint_id=folder, no_dist=True)
        for k, v in plain.state_dict().items():
            np.testing.assert_array_equal(v.numpy(), whole[k])
    dist.barrier()
    # the other way: a checkpoint of whole tensors (rank 0 writes them) into shards
    plain, _ = _model(shard=False, seed=6)
    dcp.save({"model": plain.state_dict()}, checkpoint_id=folder)
    sharded, _ = _model(seed=7)
    dcp.load({"model": sharded.state_dict()}, checkpoint_id=folder)
    for k, v in sharded.state_dict().items():
        np.testing.assert_array_equal(_whole(v), plain.state_dict()[k].numpy())


def test_replicas_write_each_chunk_once(world, folder):
    """HSDP's replicas hold the same chunks: the metadata lists each once, and the checkpoint
    loads into one unsharded process and back into the hybrid layout."""
    from phalanx.distributed.device_mesh import init_device_mesh
    rank, size = world
    shape = (2, size // 2) if size % 2 == 0 else (size, 1)
    mesh = init_device_mesh("cpu", shape)
    model, opt = _model(mesh=mesh)
    _train(model, opt)
    metadata = dcp.save({"model": model.state_dict()}, checkpoint_id=folder)
    chunks = metadata["tensors"]["model.0.weight"]["chunks"]
    assert len(chunks) == shape[1] and sum(c["shape"][0] for c in chunks) == 7
    whole = {k: _whole(v) for k, v in model.state_dict().items()}   # collective: all ranks
    if rank == 0:
        plain, _ = _model(shard=False, seed=5)
        dcp.load({"model": plain.state_dict()}, checkpoint_id=folder, no_dist=True)
        for k, v in plain.state_dict().items():
            np.testing.assert_array_equal(v.numpy(), whole[k])
    dist.barrier()
    again, _ = _model(seed=8, mesh=mesh)
    dcp.load({"model": again.state_dict()}, checkpoint_id=folder)
    for a, b in zip(model.parameters(), again.parameters()):
        np.testing.assert_array_equal(a.to_local().detach().numpy(), b.to_local().detach().numpy())


def test_async_save_writes_what_the_tensors_held_when_called(world, folder):
    """async_save stages the values at the call: training may change them at once; the
    Future completes on every rank once the checkpoint is whole, and a second save into the
    folder leaves only its own files."""
    rank, size = world
    model, opt = _model()
    _train(model, opt)
    saved = {k: _whole(v) for k, v in model.state_dict().items()}
    future = dcp.async_save({"app": AppState(model, opt)}, checkpoint_id=folder)
    _train(model, opt)                         # the weights change while it writes
    metadata = future.result(timeout=60)
    assert os.path.exists(os.path.join(folder, ".metadata"))
    fresh, fresh_opt = _model(seed=3)
    dcp.load({"app": AppState(fresh, fresh_opt)}, checkpoint_id=folder)
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(_whole(v), saved[k])
    dist.barrier()
    dcp.save({"model": model.state_dict()}, checkpoint_id=folder)
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    assert len(files) == size and metadata["save"] not in "".join(files)


def test_bad_checkpoints_and_values_are_refused(world, folder):
    rank, size = world
    model, _ = _model()
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        dcp.load({"model": model.state_dict()}, checkpoint_id=folder)
    dcp.save({"model": model.state_dict()}, checkpoint_id=folder)
    assert not [f for f in os.listdir(folder) if ".tmp" in f]
    with pytest.raises(RuntimeError, match="has no tensor 'model.extra'"):
        dcp.load({"model": {**model.state_dict(), "extra": px.zeros(2)}},
                 checkpoint_id=folder)
    other = nn.Sequential(nn.Linear(5, 8)).double()
    with pytest.raises(RuntimeError, match=r"model.0.weight has shape \[7, 5\]"):
        dcp.load({"model": other.state_dict()}, checkpoint_id=folder)
    with pytest.raises(TypeError, match="no pickled objects"):
        dcp.save({"model": model.state_dict(), "rng": object()}, checkpoint_id=folder)
    dist.barrier()


def test_empty_tensors_and_a_failed_save_keep_the_checkpoint(world, folder, monkeypatch):
    """A tensor with a zero-length dimension is saved; a save that fails midway leaves the
    previous checkpoint loadable (found by review: both were lost)."""
    from phalanx.distributed.checkpoint import saver
    state = {"empty": px.zeros(0, 5), "w": px.ones(3)}
    dcp.save(state, checkpoint_id=folder)
    target = {"empty": px.ones(0, 5), "w": px.zeros(3)}
    dcp.load(target, checkpoint_id=folder)
    assert target["empty"].shape == (0, 5) and target["w"].tolist() == [1.0] * 3

    def broken(*args):
        raise OSError("disk full")
    monkeypatch.setattr(saver, "_write_atomic", broken)
    with pytest.raises(OSError, match="disk full"):
        dcp.save({"w": px.full((3,), 7.0)}, checkpoint_id=folder)
    monkeypatch.undo()
    dist.barrier()
    again = {"w": px.zeros(3)}
    dcp.load(again, checkpoint_id=folder)
    assert again["w"].tolist() == [1.0] * 3



def test_damaged_metadata_fails_on_every_rank(world, folder):
    """Every rank reads and checks the whole metadata before it reads a tensor, so a forged
    chunk (a path outside the folder, a chunk listed twice) raises the same ValueError on
    every rank, also on those whose shard would not read the chunk (found by review: the
    path was followed and the duplicate left uninitialised memory in the tensor)."""
    import json
    rank, size = world
    model, _ = _model()
    dcp.save({"model": model.state_dict()}, checkpoint_id=folder)
    path = os.path.join(folder, ".metadata")
    if rank == 0:
        with open(path) as f:
            saved = json.load(f)
    for forge, fragment in [(lambda c: c.__setitem__(0, {**c[0], "file": "../x.safetensors"}),
                             "not one of the files listed"),
                            (lambda c: c.append(dict(c[-1])), "overlap")]:
        if rank == 0:
            forged = json.loads(json.dumps(saved))
            forge(forged["tensors"]["model.0.weight"]["chunks"])
            with open(path, "w") as f:
                json.dump(forged, f)
        dist.barrier()
        fresh, _ = _model(seed=2)
        with pytest.raises(ValueError, match=fragment):
            dcp.load({"model": fresh.state_dict()}, checkpoint_id=folder)
        dist.barrier()


def test_a_sharded_checkpoint_becomes_one_file_and_back(world, folder):
    """format_utils: rank 0 gathers the sharded save of the model and optimizer into one
    phalanx.save file (the nesting as saved, dotted names and integer keys kept), which a
    plain model loads; converted back to DCP it resumes the sharded model exactly."""
    from phalanx.distributed.checkpoint.format_utils import dcp_to_torch_save, \
        torch_save_to_dcp
    from phalanx.distributed.checkpoint.state_dict import (StateDictOptions,
                                                           get_model_state_dict)
    rank, size = world
    model, opt = _model()
    _train(model, opt)
    dcp.save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 4},
             checkpoint_id=folder)
    whole = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    one_file, again = folder + ".pt", folder + "_again"
    if rank == 0:
        dcp_to_torch_save(folder, one_file)
        loaded = px.load(one_file)
        assert sorted(loaded) == ["epoch", "model", "optim"] and loaded["epoch"] == 4
        assert sorted(loaded["optim"]["state"]) == list(range(4))   # int keys, as saved
        plain, _ = _model(shard=False)
        plain.load_state_dict(loaded["model"])
        for k, v in plain.state_dict().items():
            np.testing.assert_array_equal(v.numpy(), whole[k].detach().numpy(), err_msg=k)
        torch_save_to_dcp(one_file, again)
    dist.barrier()
    fresh, fresh_opt = _model(seed=1)
    _train(fresh, fresh_opt, 1)        # an optimizer state of the saved form to load into
    state = {"model": fresh.state_dict(), "optim": fresh_opt.state_dict(), "epoch": 0}
    dcp.load(state, checkpoint_id=again)
    fresh.load_state_dict(state["model"])
    fresh_opt.load_state_dict(state["optim"])
    for m, o in ((model, opt), (fresh, fresh_opt)):
        _train(m, o, 1)
    for a, b in zip(model.parameters(), fresh.parameters()):
        np.testing.assert_array_equal(_whole(a.detach()), _whole(b.detach()))
