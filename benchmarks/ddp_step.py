"""DDP step time: one rank vs two ranks, Phalanx (mpi backend) vs PyTorch DDP over gloo.

    OPENBLAS_NUM_THREADS=1 python benchmarks/ddp_step.py [--rounds 3] [--bucket-cap-mb 25]

Model: MLP 784-1024-1024-10 (float32), per-rank batch 128, SGD; one step = zero_grad,
forward, cross-entropy, backward (with DDP's gradient all-reduce), optimizer step. Each
configuration runs in its own job (the 2-rank ones under `mpiexec -n 2`), times `--steps`
steps `--repeats` times after a warm-up, and reports the median. Phalanx runs twice: as it
runs by default on one host (`phalanx`: gradient buckets in shared memory, reduced by loads
and stores when backward ends) and with PHALANX_SHARED_MEMORY=0 (`phalanx-mpi`: buckets
all-reduced by MPI, overlapped with backward). For each 2-rank Phalanx job it also measures,
in the same job, the step without communication (`no_sync()`) and the all-reduce of the
buckets alone; for the MPI path it reports how much of that time the overlap with backward
hides: (no-comm step + all-reduce - DDP step) / all-reduce.
Goals: Phalanx 2-rank step <= 1.2x its 1-rank step, and faster than PyTorch DDP/gloo.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

SIZES = (784, 1024, 1024, 10)
BATCH = 128


def _data(rank):
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    return x, y


def _mlp(nn):
    """The benchmark's MLP from either framework's `nn` (the same names in both)."""
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(SIZES) - 2 else [])
    return nn.Sequential(*layers)


def _stepper(model, opt, loss_fn, x, y):
    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return step


def _time(step, steps, repeats, barrier):
    for _ in range(5):
        step()
    times = []
    for _ in range(repeats):
        barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t0) / steps)
    return float(np.median(times))


def run_phalanx(args):
    import phalanx as px
    import phalanx.distributed as dist
    from phalanx import nn
    from phalanx.distributed.comm_queue import CALLER_WAITS
    from phalanx.nn import functional as F
    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    px.manual_seed(0)
    model = _mlp(nn)
    if world > 1:
        model = dist.DistributedDataParallel(model, bucket_cap_mb=args.bucket_cap_mb)
    opt = px.optim.SGD(model.parameters(), lr=0.01)
    xa, ya = _data(rank)
    x, y = px.tensor(xa), px.tensor(ya)

    step = _stepper(model, opt, F.cross_entropy, x, y)
    result = {"step": _time(step, args.steps, args.repeats, dist.barrier)}
    if world > 1:
        def local_step():
            with model.no_sync():
                step()
        result["no_comm_step"] = _time(local_step, args.steps, args.repeats, dist.barrier)
        buckets = model.reducer.buckets
        overlapped = model.reducer.overlapped
        group = model.process_group

        def comm_only():  # what DDP reduces (gradients and usage flags), as DDP does: the
            # overlapped buckets on the communication thread, the rest on this one
            works = [group.allreduce(b.flat, dist.ReduceOp.AVG) for b in buckets[:overlapped]]
            with CALLER_WAITS:
                works += [group.allreduce(b.flat, dist.ReduceOp.AVG)
                          for b in buckets[overlapped:]]
            for w in works:
                w.wait()
        result["allreduce"] = _time(comm_only, args.steps, args.repeats, dist.barrier)
        result["buckets"] = [int(b.buffer.nbytes) for b in buckets]
        result["shared"] = all(group.reduces_locally(b.flat) for b in buckets)
    dist.destroy_process_group()
    return rank, result


def run_torch(args):
    import torch
    import torch.distributed as tdist
    import torch.nn.functional as F
    torch.set_num_threads(1)
    rank = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", 0)))
    world = int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", 1)))
    torch.manual_seed(0)
    model = _mlp(torch.nn)
    barrier = lambda: None  # noqa: E731
    if world > 1:
        tdist.init_process_group("gloo", rank=rank, world_size=world,
                                 init_method=f"tcp://127.0.0.1:{os.environ['BENCH_PORT']}")
        model = torch.nn.parallel.DistributedDataParallel(model,
                                                          bucket_cap_mb=args.bucket_cap_mb)
        barrier = tdist.barrier
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    xa, ya = _data(rank)
    x, y = torch.from_numpy(xa), torch.from_numpy(ya)

    step = _stepper(model, opt, F.cross_entropy, x, y)
    result = {"step": _time(step, args.steps, args.repeats, barrier)}
    if world > 1:
        tdist.destroy_process_group()
    return rank, result


def worker(args):
    rank, result = (run_torch if args.worker == "torch" else run_phalanx)(args)
    if rank == 0:
        print("RESULT " + json.dumps(result), flush=True)


def launch(framework, nproc, args):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "MPI_LOCAL", "RANK", "WORLD_SIZE"))}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               BENCH_PORT=str(port))
    if framework == "phalanx-mpi":
        env["PHALANX_SHARED_MEMORY"] = "0"
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework,
           "--steps", str(args.steps), "--repeats", str(args.repeats),
           "--bucket-cap-mb", str(args.bucket_cap_mb)]
    if nproc > 1:
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        cmd = [mpiexec if os.path.exists(mpiexec) else "mpiexec", "-n", str(nproc)] + cmd
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if out.returncode or line is None:
        sys.exit(f"{framework} x{nproc} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return json.loads(line[7:])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3,
                   help="each configuration is launched this many times, interleaved")
    p.add_argument("--bucket-cap-mb", type=float, default=25.0)
    p.add_argument("--frameworks", default="phalanx,phalanx-mpi,torch",
                   help="phalanx: buckets in node shared memory (the default on one host); "
                        "phalanx-mpi: PHALANX_SHARED_MEMORY=0, buckets all-reduced by MPI")
    p.add_argument("--worker", choices=["phalanx", "phalanx-mpi", "torch"],
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    ms = lambda t: f"{t * 1e3:7.2f} ms"  # noqa: E731
    print(f"MLP {'-'.join(map(str, SIZES))}, per-rank batch {BATCH}, float32, "
          f"OPENBLAS_NUM_THREADS=1, bucket_cap_mb={args.bucket_cap_mb:g}; median over "
          f"{args.rounds} interleaved launches of the median of {args.repeats} x {args.steps} "
          f"steps")
    frameworks = args.frameworks.split(",")
    runs = {(fw, n): [] for fw in frameworks for n in (1, 2)}
    for _ in range(args.rounds):
        for fw in frameworks:
            for n in (1, 2):
                runs[fw, n].append(launch(fw, n, args))
    med = {key: {k: float(np.median([r[k] for r in rs])) for k in rs[0]
                 if k not in ("buckets", "shared")} for key, rs in runs.items()}
    for fw in frameworks:
        one, two = med[fw, 1], med[fw, 2]
        print(f"{fw:>11}: 1 rank {ms(one['step'])}   2 ranks (DDP) {ms(two['step'])}   "
              f"ratio {two['step'] / one['step']:.2f}x")
        if "allreduce" in two:
            hidden = (two["no_comm_step"] + two["allreduce"] - two["step"]) / two["allreduce"]
            buckets = [f"{b / 2**20:.2f}" for b in runs[fw, 2][0]["buckets"]]
            how = ("in shared memory, reduced when backward ends" if runs[fw, 2][0]["shared"]
                   else f"MPI, overlap hides {hidden:.0%} of it")
            print(f"             2 ranks: step without communication (no_sync) "
                  f"{ms(two['no_comm_step'])}; all-reduce of the buckets (MB {buckets}) "
                  f"alone {ms(two['allreduce'])}, {how}")
    for fw in frameworks:
        if fw != "torch" and "torch" in frameworks:
            print(f"{fw} 2-rank DDP step / PyTorch 2-rank DDP step: "
                  f"{med[fw, 2]['step'] / med['torch', 2]['step']:.2f}x")


if __name__ == "__main__":
    main()
