"""fully_shard training under `phalanx run` (the zmq backend): each layer and the root sharded
over the ranks, AdamW with clipping; every rank also trains the one-process reference on the
whole batch, and the gathered weights must equal its weights (float64). Prints "fsdp ok"."""
import copy

import numpy as np

import phalanx as px
import phalanx.distributed as dist
from phalanx import nn
from phalanx.distributed.fsdp import fully_shard
from phalanx.nn import functional as F

B = 4
dist.init_process_group()
rank, size = dist.get_rank(), dist.get_world_size()
px.manual_seed(99)
model = nn.Sequential(nn.Linear(10, 33), nn.Tanh(), nn.Linear(33, 4)).double()
ref = copy.deepcopy(model)
fully_shard(model[0])
fully_shard(model)
opt = px.optim.AdamW(model.parameters(), lr=0.05)
opt_ref = px.optim.AdamW(ref.parameters(), lr=0.05)
rng = np.random.default_rng(1)
for step in range(3):
    x = px.tensor(rng.standard_normal((size * B, 10)))
    y = px.tensor(rng.integers(0, 4, size * B))
    F.cross_entropy(model(x[rank * B:(rank + 1) * B]), y[rank * B:(rank + 1) * B]).backward()
    nn.utils.clip_grad_norm_(model.parameters(), 0.5)
    opt.step()
    opt.zero_grad()
    F.cross_entropy(ref(x), y).backward()
    nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
    opt_ref.step()
    opt_ref.zero_grad()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        assert p.to_local().numel() < q.numel(), name          # each rank holds a chunk
        diff = float((p.full_tensor() - q).abs().max())
        assert diff < 1e-10, f"rank {rank} step {step}: {name} differs by {diff}"
print(f"rank {rank}: fsdp ok")
dist.destroy_process_group()
