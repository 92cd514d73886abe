"""Tensor parallelism (`parallelize_module` with ColwiseParallel / RowwiseParallel) over the
mpi backend (2 and 3 ranks): every rank trains on the same batch, and the model's weights
follow one process's exactly (float64); uneven splits included."""
import copy

import numpy as np
import pytest

import phalanx as px
import phalanx.distributed as dist
import phalanx.nn as nn
import phalanx.nn.functional as F
from phalanx.distributed.device_mesh import init_device_mesh
from phalanx.distributed.tensor import DTensor, Replicate, Shard
from phalanx.distributed.tensor.parallel import (ColwiseParallel, RowwiseParallel,
                                                 parallelize_module)

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]

VOCAB, DIM, HIDDEN = 11, 7, 10


@pytest.fixture(scope="module", autouse=True)
def world():
    if not dist.is_initialized():
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


class Net(nn.Module):
    def __init__(self, colwise_embedding):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.up = nn.Linear(DIM, HIDDEN)
        self.down = nn.Linear(HIDDEN, DIM)
        self.norm = nn.LayerNorm(DIM)                 # replicated: every rank computes it
        self.head = nn.Linear(DIM, VOCAB)
        self.colwise_embedding = colwise_embedding

    def forward(self, tokens):
        h = self.embed(tokens)
        h = h + self.down(F.gelu(self.up(h)))
        return self.head(self.norm(h))


PLANS = {
    "mlp": lambda: {"up": ColwiseParallel(), "down": RowwiseParallel(),
                    "head": ColwiseParallel(output_layouts=Replicate()),
                    "embed": RowwiseParallel(input_layouts=Replicate())},
    "colwise embedding": lambda: {"embed": ColwiseParallel(output_layouts=Replicate()),
                                  "up": ColwiseParallel(), "down": RowwiseParallel(),
                                  "head": ColwiseParallel(output_layouts=Replicate())},
    "rowwise from replicated": lambda: {"up": ColwiseParallel(output_layouts=Replicate()),
                                        "down": RowwiseParallel(input_layouts=Replicate())},
}


@pytest.mark.parametrize("plan", list(PLANS))
def test_training_matches_one_process(world, plan):
    rank, size = world
    px.manual_seed(0)
    model = Net(plan == "colwise embedding").double()
    reference = copy.deepcopy(model)
    parallelize_module(model, init_device_mesh("cpu", (size,)), PLANS[plan]())
    assert isinstance(model.up.weight, DTensor) and model.up.weight.placements == (Shard(0),)
    assert model.down.weight.placements == (Shard(1),)
    assert model.down.bias.placements == (Replicate(),)
    opt = px.optim.AdamW(model.parameters(), lr=0.05)
    ref_opt = px.optim.AdamW(reference.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    for step in range(3):
        tokens = px.tensor(rng.integers(0, VOCAB, (4, 5)))   # the same on every rank
        target = tokens.roll(1, 1).reshape(-1)
        loss = F.cross_entropy(model(tokens).reshape(-1, VOCAB), target)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        ref_loss = F.cross_entropy(reference(tokens).reshape(-1, VOCAB), target)
        ref_loss.backward()
        ref_norm = nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
        np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-12)
        np.testing.assert_allclose(norm.item(), ref_norm.item(), rtol=1e-12)
        assert isinstance(model.up.weight.grad, DTensor)
        opt.step()
        ref_opt.step()
        opt.zero_grad()
        ref_opt.zero_grad()
    for name, value in model.state_dict().items():
        whole = value.full_tensor() if isinstance(value, DTensor) else value
        np.testing.assert_allclose(whole.numpy(), reference.state_dict()[name].numpy(),
                                   rtol=1e-10, atol=1e-12, err_msg=name)


def test_unsupported_layouts_and_modules_are_refused(world):
    with pytest.raises(NotImplementedError, match="use_local_output=False"):
        ColwiseParallel(use_local_output=False)
    with pytest.raises(NotImplementedError, match="output_layouts"):
        RowwiseParallel(output_layouts=Shard(-1))
    with pytest.raises(NotImplementedError, match="Linear and nn.Embedding"):
        parallelize_module(nn.Conv2d(1, 2, 3), None, ColwiseParallel())
    with pytest.raises(ValueError, match="matches 'nope'"):
        parallelize_module(Net(False), None, {"nope": ColwiseParallel()})
    size = dist.get_world_size()            # a rank would hold no rows: refused, no hang
    with pytest.raises(ValueError, match="too few"):
        parallelize_module(nn.Embedding(size - 1, 4), None, RowwiseParallel())
    with pytest.raises(NotImplementedError, match="scale_grad_by_freq"):
        parallelize_module(nn.Embedding(8, 4, scale_grad_by_freq=True), None,
                           RowwiseParallel())
