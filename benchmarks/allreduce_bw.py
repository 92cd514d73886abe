"""All-reduce bandwidth: Phalanx (`mpi` backend) vs raw mpi4py `Allreduce` vs PyTorch gloo.

    python benchmarks/allreduce_bw.py                       # 2 ranks, 1 KB .. 100 MB
    python benchmarks/allreduce_bw.py --nproc 2 --backends phalanx,mpi4py --repeats 41

The script starts itself under `mpiexec -n NPROC`. Phalanx and raw mpi4py run in one job and
take turns size by size and repeat by repeat, so a noisy neighbour slows both alike; gloo runs
in a job of its own (its helper threads would disturb the MPI timings that follow them).
Each measurement is a timed block of back-to-back in-place SUM all-reduces of a float32 array
(one all-reduce from 1 MB up; who goes first alternates); the table shows the median over
repeats as algorithm bandwidth (bytes / time) and the ratio to raw mpi4py. Goal: Phalanx >= 0.95x raw mpi4py from 1 MB up.

Each backend is one `setup_<name>(rank, size)` function returning `make(buffer) -> run()`;
a new backend (e.g. a launcher-only transport) is one more such function in BACKENDS.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

SIZES = [1 << 10, 16 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 100 << 20]


def setup_mpi4py(rank, size):
    from mpi4py import MPI
    comm = MPI.COMM_WORLD.Dup()

    def make(buf):
        return lambda: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    return make


def setup_phalanx(rank, size):
    import phalanx as px
    import phalanx.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend="mpi")

    def make(buf):
        t = px.Tensor._make(buf)             # the same memory, wrapped without a copy
        return lambda: dist.all_reduce(t)
    return make


def setup_gloo(rank, size):
    import torch
    import torch.distributed as tdist
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", rank=rank, world_size=size,
                             init_method=f"tcp://127.0.0.1:{os.environ['BENCH_GLOO_PORT']}")

    def make(buf):
        t = torch.from_numpy(buf)
        return lambda: tdist.all_reduce(t)
    return make


BACKENDS = {"phalanx": setup_phalanx, "mpi4py": setup_mpi4py, "gloo": setup_gloo}


def iterations(nbytes):
    """All-reduces per timed block: one from 1 MB up (backends alternate op by op), more for
    small sizes so the barrier before each block does not dominate."""
    return max(1, min(50, int(1e6 // max(nbytes, 1))))


def worker(args):
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    names = args.backends.split(",")
    makers = {name: BACKENDS[name](rank, size) for name in names}
    results = {name: {} for name in names}
    for nbytes in args.sizes:
        buf = np.ones(nbytes // 4, np.float32)    # one buffer for every backend: memory
        runs = {name: make(buf) for name, make in makers.items()}   # placement affects MPI
        n = iterations(nbytes)
        times = {name: [] for name in names}
        for name, run in runs.items():      # warm-up
            run()
        for rep in range(args.repeats):
            order = list(runs.items()) if rep % 2 == 0 else list(runs.items())[::-1]
            for name, run in order:            # alternate who goes first
                comm.Barrier()
                t0 = time.perf_counter()
                for _ in range(n):
                    run()
                times[name].append((time.perf_counter() - t0) / n)
        for name in names:   # the slowest rank's median decides
            med = float(np.median(times[name]))
            results[name][nbytes] = comm.allreduce(med, op=MPI.MAX)
    if rank == 0:
        print("RESULT " + json.dumps(results), flush=True)


def run_job(backends, args):
    """Run `backends` together in one `mpiexec -n NPROC` job; {backend: {bytes: seconds}}."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, BENCH_GLOO_PORT=str(port), OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [mpiexec if os.path.exists(mpiexec) else "mpiexec", "-n", str(args.nproc),
           sys.executable, os.path.abspath(__file__), "--worker", "--backends",
           ",".join(backends), "--sizes", ",".join(map(str, args.sizes)), "--repeats",
           str(args.repeats)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if out.returncode or line is None:
        sys.exit(f"benchmark failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return {k: {int(n): t for n, t in v.items()} for k, v in json.loads(line[7:]).items()}


def human(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:g} {unit}"
        n /= 1024
    return f"{n:g} TB"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--backends", default="phalanx,mpi4py,gloo",
                   help=f"comma-separated, from {', '.join(BACKENDS)}")
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=SIZES,
                   help="bytes, comma-separated")
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    names = args.backends.split(",")
    jobs = [[n for n in names if n != "gloo"], [n for n in names if n == "gloo"]]
    results = {}
    for job in (j for j in jobs if j):
        results.update(run_job(job, args))
    print(f"all_reduce (SUM, float32, in place), {args.nproc} ranks, median of {args.repeats}; "
          f"GB/s = bytes / time")
    head = f"{'size':>8}" + "".join(f"{n + ' GB/s':>14}{n + ' us':>12}" for n in names)
    if "mpi4py" in names:
        head += "".join(f"{n + '/mpi4py':>16}" for n in names if n != "mpi4py")
    print(head)
    for nbytes in args.sizes:
        row = f"{human(nbytes):>8}"
        for n in names:
            t = results[n][nbytes]
            row += f"{nbytes / t / 1e9:>14.2f}{t * 1e6:>12.1f}"
        if "mpi4py" in names:
            ref = results["mpi4py"][nbytes]
            row += "".join(f"{ref / results[n][nbytes]:>15.2f}x" for n in names if n != "mpi4py")
        print(row)


if __name__ == "__main__":
    main()
