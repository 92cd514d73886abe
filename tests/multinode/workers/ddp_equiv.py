"""DDP on every rank of a multi-host job, in float64, for the equivalence test.

Each rank trains the same seeded MLP on its contiguous shard of one fixed batch for --steps SGD
steps; DDP averages the gradients. Rank 0 writes the final parameters (flattened) to --out, and
every rank prints one line saying which all-reduce path its buckets took:
`path <rank> <hostname> hierarchical|flat|backend`, and the addresses its sockets listen on:
`listen <rank> <hostname> <ip,...>`. `--fail-rank R --fail-mode raise|exit`
makes rank R fail after its first step (an exception, or `sys.exit(3)`), while the others go on
into the next step's all-reduce, where only an abort can release them.
"""
import argparse
import socket
import sys

import numpy as np
import psutil

import phalanx as px
import phalanx.distributed as dist
from phalanx import nn
from phalanx.distributed.world import resolve
from phalanx.nn import functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--batch", type=int, default=32)
parser.add_argument("--out", required=True)
parser.add_argument("--fail-rank", type=int, default=-1)
parser.add_argument("--fail-mode", choices=["raise", "exit"], default="raise")
args = parser.parse_args()

dist.init_process_group(timeout=120)
rank, size = dist.get_rank(), dist.get_world_size()


def batch():
    g = np.random.default_rng(7)
    x = g.standard_normal((args.batch, 6))
    return x, np.sin(x @ g.standard_normal((6, 2)))


def model():
    px.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2)).double()


x, y = batch()
shard = slice(rank * args.batch // size, (rank + 1) * args.batch // size)
net = dist.DistributedDataParallel(model(), bucket_cap_mb=0.0002)   # two buckets
opt = px.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
xb, yb = px.tensor(x[shard]), px.tensor(y[shard])
for step in range(args.steps):
    opt.zero_grad()
    F.mse_loss(net(xb), yb).backward()
    opt.step()
    if rank == args.fail_rank:
        print(f"rank {rank} fails ({args.fail_mode}) after step {step}", flush=True)
        if args.fail_mode == "raise":
            raise RuntimeError(f"rank {rank} failed on purpose")
        sys.exit(3)

shared = resolve(None)._shared.find(net.reducer.buckets[0].flat)
path = "backend" if shared is None else ("hierarchical" if shared.across is not None else "flat")
print(f"path {rank} {socket.gethostname()} {path}", flush=True)
listening = sorted({c.laddr.ip for c in psutil.Process().net_connections("tcp")
                    if c.status == psutil.CONN_LISTEN})
print(f"listen {rank} {socket.gethostname()} {','.join(listening) or '-'}", flush=True)
if rank == 0:
    np.save(args.out, np.concatenate([p.detach().numpy().ravel() for p in net.parameters()]))
dist.destroy_process_group()
