"""Reaches one store barrier with every rank, then exits; prints when it is through.
Used by the success tests and the startup benchmark. Needs no tensor engine."""
import os
import time

from phalanx.distributed.store import Store

store = Store.from_env(timeout=60)
store.barrier(int(os.environ["WORLD_SIZE"]), name=f"start-{os.environ['PHALANX_RDZV_ROUND']}")
print(f"rank {os.environ['RANK']} passed the barrier at {time.time():.6f}", flush=True)
