"""Data-parallel training on the real stack under `phalanx run`, resumable with `elastic.State`.

`init_process_group()` (the zmq backend under the launcher), a small `px.nn` model with dropout
wrapped in `DistributedDataParallel`, SGD with momentum, a `DistributedSampler` + `DataLoader`,
committing every step. Dropout draws from the global generator, so a resumed run only matches
an uninterrupted one if the RNG state is restored too.

`--fail-rank R --fail-step K --mode exit|kill|hang|stop` makes rank R misbehave between forward
and backward of step K, in the first attempt only; the launcher must restart the group, which
resumes from the last commit. A hung rank (sleeping) is noticed through the progress counter
that DDP advances on every synchronised backward (nothing here calls `heartbeat.advance()`); a
stopped one (SIGSTOP) through its heartbeats, which stop. Rank 0 writes the final
parameters, flattened, to --out (a .npy file) so the test can compare them with an
uninterrupted run.
"""
import argparse
import itertools
import os
import signal
import time

import numpy as np

import phalanx as px
import phalanx.distributed as dist
from phalanx import nn
from phalanx.data import DataLoader, DistributedSampler, TensorDataset
from phalanx.distributed import elastic
from phalanx.nn import functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=12)
parser.add_argument("--ckpt", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--fail-rank", type=int, default=-1)
parser.add_argument("--fail-step", type=int, default=-1)
parser.add_argument("--mode", choices=["exit", "kill", "hang", "stop"], default="exit")
parser.add_argument("--timeout", type=float, default=60, help="init_process_group's")
parser.add_argument("--announce", action="store_true", help="print each step as it commits")
args = parser.parse_args()

dist.init_process_group(timeout=args.timeout)
rank, size = dist.get_rank(), dist.get_world_size()
first_attempt = os.environ.get("RESTART_COUNT", "0") == "0"

data = px.Generator().manual_seed(1)
x = px.randn(64, 8, generator=data)
y = x @ px.linspace(-1, 1, 8).unsqueeze(1) + 0.1 * px.randn(64, 1, generator=data)
sampler = DistributedSampler(TensorDataset(x, y), shuffle=True, seed=3)
# its own generator: each iter() draws a seed from it, and a resumed run starts a fresh iter()
# mid-epoch, which must not shift the global generator that dropout draws from
loader = DataLoader(TensorDataset(x, y), batch_size=8, sampler=sampler, generator=px.Generator())
per_epoch = len(loader)

px.manual_seed(0)
model = dist.DistributedDataParallel(
    nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 1)))
optimizer = px.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
state = elastic.State(args.ckpt, model=model, optimizer=optimizer, sampler=sampler, step=0)


def misbehave():
    print(f"rank {rank} misbehaving ({args.mode}) at step {state.step}", flush=True)
    if args.mode == "exit":
        raise SystemExit(1)
    if args.mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if args.mode == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(3600)                     # hang: only the heartbeat can tell


@elastic.run
def train(state):
    while state.step < args.steps:
        sampler.set_epoch(state.epoch)
        for xb, yb in itertools.islice(loader, state.step - state.epoch * per_epoch, None):
            loss = F.mse_loss(model(xb), yb)
            if first_attempt and rank == args.fail_rank and state.step == args.fail_step:
                misbehave()
            optimizer.zero_grad()
            loss.backward()                  # DDP averages the gradients, advances the heartbeat
            optimizer.step()
            state.step += 1
            state.epoch = state.step // per_epoch
            state.commit()
            if args.announce:
                print(f"rank {rank} pid {os.getpid()} attempt {os.environ['RESTART_COUNT']} "
                      f"committed step {state.step}", flush=True)
            if state.step == args.steps:
                break


train(state)
if rank == 0:
    np.save(args.out, np.concatenate([p.detach().numpy().ravel() for p in model.parameters()]))
    print(f"finished {state.step} steps on {size} ranks ({dist.get_backend()})", flush=True)
dist.destroy_process_group()
