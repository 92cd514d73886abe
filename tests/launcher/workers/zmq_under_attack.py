"""A 2-rank ZmqProcessGroup job that keeps running collectives (and checking them against
NumPy) while tests/distributed/test_zmq_security.py attacks its sockets.

Environment: RANK, WORLD_SIZE, the store's, and ATTACK_DIR: after a warm-up rank 0 writes
ATTACK_DIR/ready (the attack may start), and the job stops once ATTACK_DIR/stop exists (or after
MAX_SECONDS). Each rank prints its iterations and its largest RSS growth over the warm-up."""
import os
import sys
import time

import numpy as np
import psutil

from phalanx.distributed.process_group import ReduceOp
from phalanx.distributed.store import Store
from phalanx.distributed.zmq_backend import ZmqProcessGroup

MAX_SECONDS = 90
rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
folder = os.environ["ATTACK_DIR"]
pg = ZmqProcessGroup.from_store(Store.from_env(timeout=30), rank, size, timeout=60)
me = psutil.Process()


def data(r, n, i):
    return np.arange(n, dtype=np.float64) * (r + 1) + r + i


start, baseline, peak, i = time.monotonic(), None, 0, 0
while True:
    n = (7, 300_000)[i % 2]                     # a direct exchange, then a ring
    x = data(rank, n, i)
    pg.allreduce(x).wait()
    assert np.array_equal(x, sum(data(r, n, i) for r in range(size))), (i, n)
    objects = pg.allgather_object({"rank": rank, "i": i})
    assert objects == [{"rank": r, "i": i} for r in range(size)], objects
    assert pg.broadcast_object(("from", rank, i), root=i % size) == ("from", i % size, i)
    if hasattr(pg, "allgather_plain"):
        assert pg.allgather_plain([rank, i]) == [[r, i] for r in range(size)]
    i += 1
    rss = me.memory_info().rss
    if i == 20:
        baseline = rss
        if rank == 0:
            open(os.path.join(folder, "ready"), "w").close()
    if baseline is not None:
        peak = max(peak, rss - baseline)
    stop = np.array([os.path.exists(os.path.join(folder, "stop"))
                     or time.monotonic() - start > MAX_SECONDS], np.int64)
    pg.allreduce(stop, ReduceOp.MAX).wait()     # every rank stops after the same iteration
    if stop[0]:
        break
pg.shutdown()
refused = getattr(getattr(pg, "_transport", None), "refused", 0)
print(f"rank {rank}: {i} iterations ok, rss growth {peak / 2**20:.1f} MB, refused {refused} "
      f"connections", flush=True)
sys.exit(0)
