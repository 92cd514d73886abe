"""Rank 0 creates a shared-memory buffer file the way DDP's bucket setup does, writes its path
to --out, and is SIGKILLed before it could unlink it; with --mpi-abort it exits through MPI."""
import argparse
import os
import signal

from phalanx.distributed import env, shared_memory

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
args = parser.parse_args()
if env.detect().rank == 0:
    path = shared_memory._reserve(1 << 16)
    assert path is not None and os.path.exists(path)
    with open(args.out, "w") as f:
        f.write(path)
    os.kill(os.getpid(), signal.SIGKILL)
