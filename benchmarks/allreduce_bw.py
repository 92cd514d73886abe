"""All-reduce bandwidth: Phalanx (`mpi` and `zmq` backends) vs raw mpi4py vs PyTorch gloo.

    python benchmarks/allreduce_bw.py                       # 2 ranks, 1 KB .. 100 MB
    python benchmarks/allreduce_bw.py --nproc 2 --backends phalanx,mpi4py --repeats 41
    python benchmarks/allreduce_bw.py --backends zmq,gloo   # the launcher's CPU transport

`phalanx` is `dist.all_reduce` on the `mpi` backend; `shared` the same on a buffer from
`comm_buffer`, which ranks on one host map together (as DDP's buckets are); `zmq` is
`dist.all_reduce` on a `ZmqProcessGroup` (the backend `phalanx run` picks without MPI), whose
ranks meet through a store this script hosts, as the launcher's would. The script starts itself
under `mpiexec -n NPROC`, where MPI also synchronises the timed blocks. Phalanx and raw mpi4py
run in one job and take turns size by size and repeat by repeat, so a noisy neighbour slows both
alike. gloo and zmq run in a job of their own, also taking turns, without MPI: plain processes
with RANK/WORLD_SIZE and the store in their environment, as under `phalanx run`, synchronised by
a second ZmqProcessGroup (gloo next to a live MPI runs several times slower at small sizes, and
its helper threads would disturb the MPI timings).
Each measurement is a timed block of back-to-back in-place SUM all-reduces of a float32 array
(one all-reduce from 1 MB up; who goes first alternates); the table shows the median over
repeats as algorithm bandwidth (bytes / time), the ratio to raw mpi4py and zmq/gloo. Goals:
Phalanx >= 0.95x raw mpi4py, and zmq >= 1x gloo, from 1 MB up.

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


def setup_shared(rank, size):
    """`dist.all_reduce` of a `comm_buffer` on the mpi backend: in memory every rank maps
    (all ranks are on this host), as DDP's gradient buckets are."""
    import phalanx as px
    import phalanx.distributed as dist
    from phalanx.distributed.world import resolve
    if not dist.is_initialized():
        dist.init_process_group(backend="mpi")
    group = resolve(None)

    def make(buf):
        shared = group.comm_buffer(buf.size, buf.dtype, np)   # collective: same order everywhere
        assert group.reduces_locally(shared), "the ranks could not share memory"
        shared[...] = buf
        t = px.Tensor._make(shared)
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


def setup_zmq(rank, size):
    import phalanx as px
    import phalanx.distributed as dist
    from phalanx.distributed.store import Store
    from phalanx.distributed.zmq_backend import ZmqProcessGroup
    group = ZmqProcessGroup.from_store(Store.from_env(), rank, size, prefix="bench")

    def make(buf):
        t = px.Tensor._make(buf)
        return lambda: dist.all_reduce(t, group=group)
    return make


BACKENDS = {"phalanx": setup_phalanx, "mpi4py": setup_mpi4py, "shared": setup_shared,
            "gloo": setup_gloo, "zmq": setup_zmq}
LAUNCHER_ONLY = ("gloo", "zmq")      # run in a job of their own


def iterations(nbytes):
    """All-reduces per timed block: one from 1 MB up (backends alternate op by op), more for
    small sizes so the barrier before each block does not dominate."""
    return max(1, min(50, int(1e6 // max(nbytes, 1))))


class MpiSync:
    """Barrier and max-over-ranks between timed blocks, over MPI."""

    def __init__(self):
        from mpi4py import MPI
        self.comm, self.max_op = MPI.COMM_WORLD, MPI.MAX
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def barrier(self):
        self.comm.Barrier()

    def max(self, value):
        return self.comm.allreduce(value, op=self.max_op)


class StoreSync(MpiSync):
    """The same for a job started without MPI: a ZmqProcessGroup of its own."""

    def __init__(self):
        from phalanx.distributed.store import Store
        from phalanx.distributed.zmq_backend import ZmqProcessGroup
        self.rank, self.size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        self.group = ZmqProcessGroup.from_store(Store.from_env(), self.rank, self.size,
                                                prefix="bench-sync")

    def barrier(self):
        self.group.barrier().wait()

    def max(self, value):
        return max(self.group.allgather_object(value))


def worker(args):
    sync = StoreSync() if "RANK" in os.environ else MpiSync()
    rank, size = sync.rank, sync.size
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
                sync.barrier()
                t0 = time.perf_counter()
                for _ in range(n):
                    run()
                times[name].append((time.perf_counter() - t0) / n)
        for name in names:   # the slowest rank's median decides
            med = float(np.median(times[name]))
            results[name][nbytes] = sync.max(med)
    if rank == 0:
        print("RESULT " + json.dumps(results), flush=True)


def run_job(backends, args):
    """Run `backends` together in one job of NPROC ranks; {backend: {bytes: seconds}}. Jobs
    of launcher-only backends are plain processes around a store, the others mpiexec's."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, BENCH_GLOO_PORT=str(port), OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--backends",
           ",".join(backends), "--sizes", ",".join(map(str, args.sizes)), "--repeats",
           str(args.repeats)]
    if all(b in LAUNCHER_ONLY for b in backends):
        from phalanx.distributed.store import StoreServer
        with StoreServer() as server:
            env.update(PHALANX_STORE_ENDPOINT=server.endpoint, PHALANX_STORE_TOKEN=server.token,
                       WORLD_SIZE=str(args.nproc))
            procs = [subprocess.Popen(cmd, env=dict(env, RANK=str(r)), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
                     for r in range(args.nproc)]
            try:
                outs = [p.communicate(timeout=1800) for p in procs]
            finally:
                for p in procs:
                    p.kill()
        code = max(p.returncode for p in procs)
        stdout, stderr = outs[0][0], "".join(o[1] for o in outs)
    else:
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        cmd = [mpiexec if os.path.exists(mpiexec) else "mpiexec", "-n", str(args.nproc), *cmd]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        code, stdout, stderr = out.returncode, out.stdout, out.stderr
    line = next((l for l in stdout.splitlines() if l.startswith("RESULT ")), None)
    if code or line is None:
        sys.exit(f"benchmark failed ({code}):\n{stdout}\n{stderr}")
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
    p.add_argument("--backends", default="phalanx,mpi4py,shared,gloo,zmq",
                   help=f"comma-separated, from {', '.join(BACKENDS)}")
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=SIZES,
                   help="bytes, comma-separated")
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    names = args.backends.split(",")
    jobs = [[n for n in names if n not in LAUNCHER_ONLY], [n for n in names if n in LAUNCHER_ONLY]]
    results = {}
    for job in (j for j in jobs if j):
        results.update(run_job(job, args))
    print(f"all_reduce (SUM, float32, in place), {args.nproc} ranks, median of {args.repeats}; "
          f"GB/s = bytes / time")
    head = f"{'size':>8}" + "".join(f"{n + ' GB/s':>14}{n + ' us':>12}" for n in names)
    if "mpi4py" in names:
        head += "".join(f"{n + '/mpi4py':>16}" for n in names if n != "mpi4py")
    if "zmq" in names and "gloo" in names:
        head += f"{'zmq/gloo':>10}"
    print(head)
    for nbytes in args.sizes:
        row = f"{human(nbytes):>8}"
        for n in names:
            t = results[n][nbytes]
            row += f"{nbytes / t / 1e9:>14.2f}{t * 1e6:>12.1f}"
        if "mpi4py" in names:
            ref = results["mpi4py"][nbytes]
            row += "".join(f"{ref / results[n][nbytes]:>15.2f}x" for n in names if n != "mpi4py")
        if "zmq" in names and "gloo" in names:
            row += f"{results['gloo'][nbytes] / results['zmq'][nbytes]:>9.2f}x"
        print(row)


if __name__ == "__main__":
    main()
