"""Prints its launcher environment; `--exit-rank R --code C` makes rank R exit with code C,
`--raise-rank R` makes it raise. Needs no tensor engine."""
import argparse
import json
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--exit-rank", type=int, default=-1)
parser.add_argument("--code", type=int, default=0)
parser.add_argument("--raise-rank", type=int, default=-1)
parser.add_argument("--out", default="")
args = parser.parse_args()
rank = int(os.environ["RANK"])
names = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "RESTART_COUNT",
         "MASTER_ADDR", "MASTER_PORT", "PHALANX_STORE_ENDPOINT", "PHALANX_RUN_ID",
         "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ROLE_NAME", "ROLE_RANK", "ROLE_WORLD_SIZE",
         "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS"]
env = {k: os.environ.get(k) for k in names}
print(f"hello from rank {rank}: {json.dumps(env)}")
if args.out:
    with open(os.path.join(args.out, f"env_{rank}.json"), "w") as f:
        json.dump(env, f)
if rank == args.raise_rank:
    raise RuntimeError(f"rank {rank} raised on purpose")
sys.exit(args.code if rank == args.exit_rank else 0)
