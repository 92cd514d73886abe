"""DDP + ZeroRedundancyOptimizer on uneven inputs under `phalanx run` (the zmq backend): rank r
trains 1 + 2 r batches inside `Join`, every rank also trains the one-process reference on the
shards of the ranks still training at each step, and all must end with its weights (float64).
Prints "join ok" on success."""
import numpy as np

import phalanx as px
import phalanx.distributed as dist
from phalanx import nn
from phalanx.distributed import DistributedDataParallel as DDP
from phalanx.distributed import ZeroRedundancyOptimizer
from phalanx.distributed.algorithms import Join
from phalanx.nn import functional as F

B = 4
dist.init_process_group()
rank, size = dist.get_rank(), dist.get_world_size()
counts = [1 + 2 * r for r in range(size)]
rng = np.random.default_rng(0)
steps = [[(px.tensor(rng.standard_normal((B, 6))), px.tensor(rng.integers(0, 3, B)))
          for r in range(size) if k < counts[r]] for k in range(max(counts))]

px.manual_seed(rank)                                  # DDP takes rank 0's weights
model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double()
ddp = DDP(model, bucket_cap_mb=0.0005)
ref = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double()
ref.load_state_dict(model.state_dict())
opt = ZeroRedundancyOptimizer(ddp.parameters(), px.optim.Adam, lr=0.01)
opt_ref = px.optim.Adam(ref.parameters(), lr=0.01)

with Join([ddp, opt]):
    for k in range(counts[rank]):
        x, y = steps[k][rank - (size - len(steps[k]))]
        opt.zero_grad()
        F.cross_entropy(ddp(x), y).backward()
        opt.step()
for shards in steps:
    opt_ref.zero_grad()
    loss = sum(F.cross_entropy(ref(x), y, reduction="sum") for x, y in shards)
    (loss / (B * size)).backward()
    opt_ref.step()
for (name, p), q in zip(ref.named_parameters(), model.parameters()):
    err = float(np.max(np.abs(p.detach().numpy() - q.detach().numpy())))
    assert err < 1e-10, f"rank {rank}: {name} differs from one process by {err:g}"
print(f"rank {rank}: join ok", flush=True)
dist.destroy_process_group()
