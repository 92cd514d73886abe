"""A plain DDP training script that knows nothing of profiling: the profiler test runs it under
`phalanx run --profile DIR`. Small buckets (bucket_cap_mb) so that several of them are
all-reduced during backward."""
import phalanx as px
import phalanx.distributed as dist
from phalanx import nn
from phalanx.data import DataLoader, DistributedSampler, TensorDataset

dist.init_process_group(timeout=60)
px.manual_seed(0)
x, y = px.randn(256, 64), px.randn(256, 1)
dataset = TensorDataset(x, y)
loader = DataLoader(dataset, batch_size=16, sampler=DistributedSampler(dataset, seed=1))
layers = []
for _ in range(6):
    layers += [nn.Linear(64, 64), nn.Tanh()]
model = dist.DistributedDataParallel(nn.Sequential(*layers, nn.Linear(64, 1)),
                                     bucket_cap_mb=0.01)
opt = px.optim.SGD(model.parameters(), lr=0.01)
for xb, yb in loader:
    loss = ((model(xb) - yb) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"rank {dist.get_rank()} done, loss {loss.item():.4f}", flush=True)
