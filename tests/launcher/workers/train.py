"""Data-parallel least squares over ZmqProcessGroup with `elastic.State`, committing every step.

`--fail-rank R --fail-step K --mode exit|kill|hang` makes rank R misbehave before the all-reduce
of step K, in the first attempt only; the launcher must restart the group, which resumes from the
last commit. Rank 0 writes the final weights to --out, so the test can compare them with an
uninterrupted run. The model and optimizer are NumPy objects with state_dict()/load_state_dict().
"""
import argparse
import os
import signal
import time

import numpy as np

from phalanx.distributed import elastic, heartbeat
from phalanx.distributed.process_group import ReduceOp
from phalanx.distributed.store import Store
from phalanx.distributed.zmq_backend import ZmqProcessGroup

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--ckpt", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--fail-rank", type=int, default=-1)
parser.add_argument("--fail-step", type=int, default=-1)
parser.add_argument("--mode", choices=["exit", "kill", "hang"], default="exit")
args = parser.parse_args()

rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
first_attempt = os.environ.get("RESTART_COUNT", "0") == "0"
pg = ZmqProcessGroup.from_store(Store.from_env(timeout=60), rank, size, timeout=60)
np.random.seed(0)                        # every rank alike, as DDP expects
TRUE_W = np.linspace(-1, 1, 8)


class Model:
    def __init__(self):
        self.w = np.zeros(8)

    def state_dict(self):
        return {"w": self.w.copy()}

    def load_state_dict(self, state):
        self.w = np.array(state["w"], dtype=np.float64)


class Momentum:
    def __init__(self, model, lr=0.05, momentum=0.9):
        self.model, self.lr, self.momentum = model, lr, momentum
        self.buf = np.zeros_like(model.w)

    def step(self, grad):
        self.buf = self.momentum * self.buf + grad
        self.model.w = self.model.w - self.lr * self.buf

    def state_dict(self):
        return {"buf": self.buf.copy()}

    def load_state_dict(self, state):
        self.buf = np.array(state["buf"], dtype=np.float64)


model = Model()
state = elastic.State(args.ckpt, model=model, optimizer=Momentum(model), step=0)


@elastic.run
def train(state):
    while state.step < args.steps:
        k = state.step
        rng = np.random.default_rng(1000 + k * size + rank)        # this rank's shard of step k
        x = rng.standard_normal((16, 8))
        y = x @ TRUE_W + 0.1 * rng.standard_normal(16)
        grad = 2 * x.T @ (x @ model.w - y) / len(y)
        grad *= np.random.uniform(0.5, 1.5)      # global RNG: the same on every rank
        if first_attempt and rank == args.fail_rank and k == args.fail_step:
            print(f"rank {rank} misbehaving ({args.mode}) at step {k}", flush=True)
            if args.mode == "exit":
                raise SystemExit(1)
            if args.mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)                     # hang: only the heartbeat can tell
        pg.allreduce(grad, ReduceOp.AVG).wait()
        state.optimizer.step(grad)
        heartbeat.advance()
        state.step += 1
        state.commit()


train(state)
if rank == 0:
    np.save(args.out, model.w)
    print(f"final weights {model.w}", flush=True)
pg.shutdown()
