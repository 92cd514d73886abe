"""Elastic data-parallel training across hosts: DDP over whatever world the launcher forms,
committing after every step through `elastic.State` (rank 0 writes the checkpoint to a
directory every host sees).

Every rank prints `commit <step> <digest>` as it commits a step (the ranks hold the same state,
so the line outlives any one host), and every attempt starts by printing
`resume <round> <world size> <step> <digest>`, where the digest is a SHA-256 of the parameters
and optimizer state it restored: the test compares the two across a restart. Each step sleeps
--step-time seconds, so a test has time to take a host away mid-run.
"""
import argparse
import hashlib
import os
import time

import numpy as np

import phalanx as px
import phalanx.distributed as dist
from phalanx import nn
from phalanx.distributed import elastic
from phalanx.nn import functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--step-time", type=float, default=0.2)
parser.add_argument("--ckpt", required=True)
args = parser.parse_args()

dist.init_process_group(timeout=60)
rank, size = dist.get_rank(), dist.get_world_size()

px.manual_seed(0)
model = dist.DistributedDataParallel(nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)))
optimizer = px.optim.Adam(model.parameters(), lr=0.01)
state = elastic.State(args.ckpt, model=model, optimizer=optimizer, step=0)


def digest():
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().numpy().tobytes())
    for s in optimizer.state.values():
        for v in s.values():
            h.update(np.asarray(v.numpy() if hasattr(v, "numpy") else v).tobytes())
    return h.hexdigest()[:16]


@elastic.run
def train(state):
    if rank == 0:
        print(f"resume {os.environ.get('PHALANX_RDZV_ROUND')} {size} {state.step} {digest()}",
              flush=True)
    g = np.random.default_rng(rank)
    while state.step < args.steps:
        x = px.tensor(g.standard_normal((8, 8)), dtype=px.float32)
        loss = F.mse_loss(model(x), x.sum(1, keepdim=True))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        state.step += 1
        # every rank, before committing: the line survives whichever host dies during commit
        print(f"commit {state.step} {digest()}", flush=True)
        state.commit()
        time.sleep(args.step_time)


train(state)
if rank == 0:
    print(f"finished {state.step} steps on {size} ranks", flush=True)
dist.destroy_process_group()
