"""Rank 1 leaves by `--how` (exit: sys.exit(3), raise: raise SystemExit(3), osexit: os._exit(3),
exception: ValueError) while rank 0 waits in an all-reduce it will never complete; with
`--first-attempt-only` it misbehaves only when RESTART_COUNT is 0 and the job then finishes."""
import argparse
import os
import sys
import time

import numpy as np

import phalanx as px
import phalanx.distributed as dist

parser = argparse.ArgumentParser()
parser.add_argument("--how", choices=["exit", "raise", "osexit", "exception"], required=True)
parser.add_argument("--first-attempt-only", action="store_true")
args = parser.parse_args()

dist.init_process_group()
misbehave = not args.first_attempt_only or os.environ.get("RESTART_COUNT", "0") == "0"
if dist.get_rank() == 1 and misbehave:
    time.sleep(0.3)                     # rank 0 is in its all-reduce by now
    if args.how == "exit":
        sys.exit(3)
    if args.how == "raise":
        raise SystemExit(3)
    if args.how == "osexit":
        os._exit(3)
    raise ValueError("boom on rank 1")
x = px.Tensor._make(np.ones(3))
dist.all_reduce(x)
print(f"rank {dist.get_rank()} all-reduced {x.numpy().tolist()}", flush=True)
dist.destroy_process_group()
