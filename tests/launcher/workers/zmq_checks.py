"""Collectives that ranks call differently, and a world made again after it was destroyed, on
the zmq backend through `init_process_group` (RANK, WORLD_SIZE and the store's environment).

    python zmq_checks.py dtype|shape|ring|reinit

Mismatch modes print `rank R: MISMATCH <message>` when all_reduce raised on this rank and
`rank R: NO ERROR <result>` when it returned; `reinit` prints `rank R: reinit ok`."""
import os
import sys

import numpy as np

import phalanx as px
import phalanx.distributed as dist
from phalanx.distributed.debug import CollectiveMismatchError

mode = sys.argv[1]
rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
MINE = {   # (this rank's array, the others'): same byte size, different meaning
    "dtype": (np.arange(4, dtype=np.float32), np.arange(4, dtype=np.int32)),
    "shape": (np.ones(1, np.float32), np.ones(4, np.float32)),
    "ring": (np.ones(300_000, np.float64), np.ones(300_000, np.int64)),   # a 3-rank ring
}

dist.init_process_group(timeout=30)
if mode == "reinit":
    for attempt in range(3):
        if attempt:
            dist.init_process_group(timeout=30)
        t = px.tensor([float(rank + attempt)])
        dist.all_reduce(t)
        assert t.item() == sum(range(size)) + size * attempt, t
        dist.destroy_process_group()
    print(f"rank {rank}: reinit ok", flush=True)
    sys.exit(0)

odd_one = size - 1
t = px.tensor(MINE[mode][0 if rank == odd_one else 1])
try:
    dist.all_reduce(t)
    print(f"rank {rank}: NO ERROR {t.numpy()[:4]}", flush=True)
except CollectiveMismatchError as e:
    print(f"rank {rank}: MISMATCH {e}", flush=True)
sys.exit(0)
