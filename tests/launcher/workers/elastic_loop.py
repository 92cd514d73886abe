"""For the two-agent test: all-reduces a counter every 50 ms until `--steps` steps were done in
total (rank 0 keeps the count in the store), appending "round world_size" lines to --log."""
import argparse
import os
import time

import numpy as np

from phalanx.distributed.store import Store
from phalanx.distributed.zmq_backend import ZmqProcessGroup

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=60)
parser.add_argument("--log", required=True)
args = parser.parse_args()
rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
store = Store.from_env(timeout=60)
pg = ZmqProcessGroup.from_store(store, rank, size, timeout=60)
if rank == 0:
    with open(args.log, "a") as f:
        f.write(f"{os.environ['PHALANX_RDZV_ROUND']} {size}\n")
while True:
    done = np.array([store.add("steps_done", 0) if rank == 0 else 0], dtype=np.int64)
    pg.broadcast(done, 0).wait()
    if done[0] >= args.steps:
        break
    x = np.ones(1000)
    pg.allreduce(x).wait()
    assert x[0] == size
    if rank == 0:
        store.add("steps_done", 1)
    time.sleep(0.05)
print(f"finished with world size {size} after {done[0]} steps", flush=True)
pg.shutdown()
