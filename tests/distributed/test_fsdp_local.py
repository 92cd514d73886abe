"""`fully_shard` and `DTensor` in one process (a world of one) next to PyTorch's FSDP2 on
gloo: the same training trajectory (plain and mixed precision), the same printed forms, and
clear refusals where Phalanx does not follow (DCP's deprecated names, non-elementwise
optimizers on sharded parameters, ops on DTensors other than elementwise ones)."""
import numpy as np
import pytest
import torch
from torch.distributed.fsdp import MixedPrecisionPolicy as TorchMixedPrecision
from torch.distributed.fsdp import fully_shard as torch_fully_shard

import phalanx as px
import phalanx.distributed.checkpoint as dcp
import phalanx.distributed.fsdp as fsdp
import phalanx.nn as nn
from phalanx.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from phalanx.distributed.tensor import DTensor, Shard, distribute_tensor


def _models(lib):
    return lib.nn.Sequential(lib.nn.Linear(5, 7), lib.nn.Tanh(), lib.nn.LayerNorm(7),
                             lib.nn.Linear(7, 3)).double()


def _pair():
    torch.manual_seed(0)
    theirs = _models(torch)
    ours = _models(px)
    ours.load_state_dict({k: px.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    return ours, theirs


@pytest.mark.parametrize("mixed", [False, True], ids=["float64", "param_dtype float32"])
def test_training_follows_pytorch_fsdp2(world_of_one, torch_world, mixed):
    ours, theirs = _pair()
    for lib, shard, policy, model in ((px, fully_shard, MixedPrecisionPolicy, ours),
                                      (torch, torch_fully_shard, TorchMixedPrecision, theirs)):
        kwargs = dict(mp_policy=policy(param_dtype=lib.float32, reduce_dtype=lib.float64)) \
            if mixed else {}
        shard(model[0], **kwargs)
        shard(model, **kwargs)
    opt = px.optim.AdamW(ours.parameters(), lr=0.1)
    topt = torch.optim.AdamW(theirs.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal((4, 5))
        out, tout = ours(px.tensor(x)), theirs(torch.tensor(x))
        assert out.dtype == (px.float32 if mixed else px.float64)
        assert str(tout.dtype).split(".")[1] == str(out.dtype).split(".")[1]
        out.pow(2).sum().backward()
        tout.pow(2).sum().backward()
        norm = nn.utils.clip_grad_norm_(ours.parameters(), 1.0)
        tnorm = torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        np.testing.assert_allclose(norm.item(), tnorm.full_tensor().item(),
                                   rtol=1e-5 if mixed else 1e-12)
        opt.step()
        topt.step()
        opt.zero_grad()
        topt.zero_grad()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert isinstance(p, DTensor) and p.dtype == px.float64
        np.testing.assert_allclose(p.detach().full_tensor().numpy(),
                                   q.detach().full_tensor().numpy(),
                                   rtol=1e-4 if mixed else 1e-11, atol=1e-7 if mixed else 0,
                                   err_msg=name)


def test_printed_like_pytorch(world_of_one, torch_world):
    ours, theirs = _pair()
    fully_shard(ours)
    torch_fully_shard(theirs)
    assert repr(ours) == repr(theirs)
    assert type(ours).__name__ == type(theirs).__name__ == "FSDPSequential"
    local = repr(ours[0].weight).split(", device_mesh=")[0]
    assert local.startswith("DTensor(local_tensor=tensor([[")
    assert repr(ours[0].weight.placements) == repr(theirs[0].weight.placements)
    assert ours[0].weight.shape == (7, 5) and ours[0].weight.to_local().shape == (7, 5)


def test_refusals_name_the_way_out(world_of_one):
    model = _models(px)
    fully_shard(model)
    for optimizer in (px.optim.LBFGS, px.optim.Adafactor):
        with pytest.raises(NotImplementedError, match="sharded parameter"):
            optimizer(model.parameters())
    with pytest.raises(NotImplementedError, match=r"Matmul on a DTensor|Mm on a DTensor"):
        model[0].weight.detach() @ px.ones(5, 1, dtype=px.float64)
    dt = distribute_tensor(px.arange(4.0), placements=[Shard(0)])
    assert dt.device_mesh.size() == 1 and dt.full_tensor().tolist() == [0, 1, 2, 3]
    assert issubclass(fsdp.FullyShardedDataParallel, nn.Module)    # FSDP1: test_fsdp1_local.py
    with pytest.raises(AttributeError, match="deprecated in PyTorch"):
        dcp.save_state_dict
    with pytest.raises(NotImplementedError, match="reshard_after_forward=2"):
        fully_shard(_models(px), reshard_after_forward=2)
    with pytest.raises(TypeError, match="not pickled"):
        import pickle
        pickle.dumps(model)
    tied = px.nn.Sequential(px.nn.Embedding(5, 4), px.nn.Linear(4, 5, bias=False))
    tied[1].weight = tied[0].weight
    fully_shard(tied[1])                # shards the tied weight on its own: the tie would
    with pytest.raises(ValueError, match=r"Embedding.weight is the parameter Linear.weight "
                       r"\(tied\).*not on Linear alone"):
        fully_shard(tied)               # break here, two copies trained apart
    siblings = px.nn.Sequential(px.nn.Embedding(5, 4), px.nn.Linear(4, 5, bias=False))
    siblings[1].weight = siblings[0].weight
    fully_shard(siblings[0])            # the head, a sibling, still holds the original
    with pytest.raises(ValueError, match=r"Linear.weight is the parameter Embedding.weight "
                       r"\(tied\).*common parent.*not on Embedding alone"):
        fully_shard(siblings[1])


def test_saving_a_shard_as_if_whole_is_refused(world_of_one, tmp_path):
    model = _models(px)
    fully_shard(model)
    with pytest.raises(TypeError, match=r"obj\['0.weight'\] is a DTensor.*full_state_dict"):
        px.save(model.state_dict(), tmp_path / "sharded.pt")
    assert not (tmp_path / "sharded.pt").exists()
    from phalanx.distributed.checkpoint.state_dict import (StateDictOptions,
                                                           get_model_state_dict)
    whole = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    px.save(whole, tmp_path / "whole.pt")
    assert px.load(tmp_path / "whole.pt").keys() == whole.keys()
