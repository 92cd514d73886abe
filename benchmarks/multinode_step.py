"""DDP's step across hosts whose links are rate-limited: where communication is the bottleneck.

    python benchmarks/multinode_step.py [--rates 1gbit 10gbit] [--hosts 2 3] [--trials 3]

Needs root: it brings up a namespace cluster (benchmarks/cluster.py), limits every host's link
with `tc tbf`, and for each rate and host count runs one MPI job (`mpiexec` with a host file,
through the cluster's ssh-like wrapper) that measures, on every rank at once:
- the link: all-reduce of 8 bytes and of 8 MB between two hosts (alpha and beta of the model);
- the compute profile: forward, backward (with each gradient's ready time) and the optimizer,
  under `no_sync`, so the hosts compete for this machine's cores as in the real step;
- DDP's step, buckets overlapped with backward;
- the same step without overlap: backward under `no_sync`, then one all-reduce of all
  gradients;
- what the model's `Cpu` needs: a bucket's all-reduce beside computation and the computation
  beside an all-reduce, the CPU per all-reduce and per byte, the slowest rank's computation
  when all start together, and DDP's own passes over the gradients (AVG's division, the copy
  out of the buckets);
then prints how much of the all-reduce time overlap hid, and writes records that
`scaling_model.py --validate FILE.json` compares with its predictions. With one rank per host
the all-reduce goes through MPI over the rate-limited links; with two per host
(`--per-host 2`) DDP takes the hierarchical shared-memory path.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(args):
    import numpy as np
    import phalanx as px
    import phalanx.distributed as dist
    from phalanx import nn
    from phalanx.nn import functional as F
    sys.path.insert(0, str(HERE))
    import scaling_model

    dist.init_process_group()
    rank, size = dist.get_rank(), dist.get_world_size()
    px.manual_seed(0)
    width = args.width
    model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                          nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=args.bucket_mb)
    opt = px.optim.SGD(ddp.parameters(), lr=1e-3)
    x, y = px.randn(args.batch, width), px.randint(0, 10, (args.batch,))

    def timed(fn, repeats=args.repeats):
        for _ in range(2):
            fn()
        times = []
        for _ in range(repeats):
            dist.barrier()
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    # the links, as DDP drives them: asynchronous all-reduces over every rank of 8 B, of a
    # bucket and of 8 MB, and the ring's alpha and beta that fit them best (least squares)
    ring = 2 * (size - 1)
    sizes = [8, int(args.bucket_mb * (1 << 20)), 8 << 20]
    times = []
    for n in sizes:
        buf = px.tensor(np.zeros(n // 8))
        times.append(timed(lambda: dist.all_reduce(buf, async_op=True).wait(),
                           20 if n == 8 else args.repeats))
    # least squares on relative errors: each size counts alike, the bucket size included (on
    # absolute errors the 8 MB point would decide alone)
    (alpha, inv_beta), *_ = np.linalg.lstsq(
        np.array([[ring / t, ring / size * n / t] for n, t in zip(sizes, times)]),
        np.ones(len(sizes)), rcond=None)
    alpha, beta = max(alpha, 0.0), 1 / max(inv_beta, 1e-15)

    # Every host of the namespace cluster runs on this machine's cores: the CPU a phase takes
    # is this machine's busy time over it (every process, the kernel's network work included)
    # shared by the workers, as the step's CPU bound needs it.
    def machine_cpu_per_worker(fn, runs):
        dist.barrier(async_op=True).wait()
        busy = machine_busy()
        fn()
        dist.barrier(async_op=True).wait()          # waits without spinning
        return (machine_busy() - busy) / size / runs

    with ddp.no_sync():
        measured = []
        compute_cpu = machine_cpu_per_worker(lambda: measured.append(scaling_model.measure(
            model, x, lambda out: F.cross_entropy(out, y), repeats=args.repeats)),
            args.repeats + 1)
        prof = measured[0]

    def ddp_step():
        opt.zero_grad()
        F.cross_entropy(ddp(x), y).backward()
        opt.step()

    def serial_step():
        opt.zero_grad()
        with ddp.no_sync():
            F.cross_entropy(ddp(x), y).backward()
        flat = px.cat([p.grad.reshape(-1) for p in ddp.parameters()])
        dist.all_reduce(flat, op=dist.ReduceOp.AVG, async_op=True).wait()   # as DDP's buckets
        opt.step()

    overlapped, serial = timed(ddp_step), timed(serial_step)
    flat = px.cat([p.detach().reshape(-1) for p in ddp.parameters()])
    allreduce_alone = timed(lambda: dist.all_reduce(flat, async_op=True).wait())

    # a bucket's all-reduce beside computation that holds the core, as in backward: how much
    # longer it takes than alone (the transport progresses only when it gets the core)
    bucket = px.tensor(np.zeros(int(args.bucket_mb * (1 << 20)) // 8))
    a, b = px.randn(192, 192), px.randn(192, 192)

    def beside():
        work = dist.all_reduce(bucket, async_op=True)
        while not work.is_completed():
            a @ b
        work.wait()
    slowdown = timed(beside) / times[1]

    # and the other way round: forward and backward beside an all-reduce (of 8 MB, which
    # outlasts them) against alone: the share of the core the transport leaves the computation
    big = px.tensor(np.zeros((8 << 20) // 8))

    def computation(beside_allreduce):
        runs = []
        for _ in range(args.repeats + 2):
            dist.barrier()
            work = dist.all_reduce(big, async_op=True) if beside_allreduce else None
            t0 = time.perf_counter()
            with ddp.no_sync():
                F.cross_entropy(ddp(x), y).backward()
            runs.append(time.perf_counter() - t0)
            if work is not None:
                work.wait()
        return statistics.median(runs[2:])
    computation_beside = computation(True) / computation(False)

    # the slowest rank's computation when all start it together (a MAX all-reduce of each
    # one's time): where ranks share cores the scheduler does not share them evenly over one
    # step, and a step waits for the slowest
    def slowest_computation():
        runs = []
        for _ in range(args.repeats + 2):
            dist.barrier()
            t0 = time.perf_counter()
            opt.zero_grad()
            with ddp.no_sync():
                F.cross_entropy(ddp(x), y).backward()
            opt.step()
            took = px.tensor([time.perf_counter() - t0])
            dist.all_reduce(took, op=dist.ReduceOp.MAX)
            runs.append(took.item())
        return statistics.median(runs[2:])
    slowest = slowest_computation()

    def allreduces(array, runs):
        def run():
            for _ in range(runs):
                dist.all_reduce(array, async_op=True).wait()
        return run
    # the CPU the transport spends per all-reduce (from 8-byte ones) and per gradient byte
    # (TCP in the kernel, encryption, MPI's polling) beyond that; enough runs that the clock
    # ticks of /proc/stat (10 ms) stay below ~3% of what is measured
    small, big = 20 * args.repeats, 3 * args.repeats
    per_call = machine_cpu_per_worker(allreduces(px.tensor(np.zeros(1)), small), small)
    comm_cpu = max(machine_cpu_per_worker(allreduces(flat, big), big) - per_call,
                   0.0) / flat.nbytes
    # DDP's own passes over the gradients besides the transport's work: AVG's division of
    # each bucket after its all-reduce (SUM, then this), and the averaged gradients' copy out
    # of the buckets into tensors of their own (after backward: the concatenation)
    grads = flat.numpy().copy()
    average = timed(lambda: np.divide(grads, size, out=grads)) / grads.nbytes
    unpack = timed(grads.copy) / grads.nbytes
    # pinned, a host's ranks share its own cores; else every rank shares the machine's
    cores_per_worker = (len(os.sched_getaffinity(0)) / args.per_host if args.pin
                        else (os.cpu_count() or 1) / size)
    if rank == 0:
        print(json.dumps({
            "case": f"{args.case}", "model": f"MLP {width}x4", "workers": size,
            "forward": prof.forward, "backward": prof.backward, "optimizer": prof.optimizer,
            "grads": prof.grads, "topology": args.case, "per_node": args.per_host,
            "intra": [1e-6, 5e9], "inter": [alpha, beta], "link_times": list(zip(sizes, times)),
            "overlapped": overlapped,
            "serial": serial, "allreduce": allreduce_alone,
            "buckets": len(ddp.reducer.buckets), "launched_in_backward": ddp.reducer.overlapped,
            "cap": int(args.bucket_mb * (1 << 20)),
            "cpu": {"cores_per_worker": cores_per_worker,
                    "compute": compute_cpu, "comm_per_byte": comm_cpu,
                    "beside": max(slowdown, 1.0), "comm_per_call": per_call,
                    "computation_beside": max(computation_beside, 1.0),
                    "slowest": slowest, "average_per_byte": average,
                    "unpack_per_byte": unpack}}), flush=True)
    dist.destroy_process_group()


def median_record(trials):
    """One record from several runs of a case: the median of each measured number (this
    machine is shared and noisy), and the gradient timeline of the run with the median
    backward."""
    def median(values):
        if isinstance(values[0], dict):
            return {k: median([v[k] for v in values]) for k in values[0]}
        if isinstance(values[0], list) and values[0]:    # lists (and lists of pairs)
            return [median([v[i] for v in values]) for i in range(len(values[0]))]
        if isinstance(values[0], float):
            return statistics.median(values)
        return values[0]
    out = median(trials)
    middle = sorted(trials, key=lambda r: r["backward"])[len(trials) // 2]
    out["grads"] = middle["grads"]
    return out


def machine_busy():
    """Seconds this machine's cores have been busy, all processes and the kernel (/proc/stat:
    everything but idle and iowait)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def run_case(cluster_tool, cluster, hosts, per_host, rate, args):
    for h in cluster.hosts:
        h.set_rate(rate)
    hostfile = Path(f"/tmp/phalanx-multinode-{os.getpid()}.hosts")
    hostfile.write_text("".join(f"h{i}:{per_host}\n" for i in range(hosts)))
    mpiexec = Path(sys.executable).parent / "mpiexec"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               **cluster_tool.MPI_OVER_NETWORK)
    case = f"{hosts} hosts x {per_host}, {rate}, mpi"
    cmd = [mpiexec, "-f", hostfile, "-launcher", "ssh", "-launcher-exec",
           cluster.ssh_wrapper(), "-n", hosts * per_host, sys.executable, __file__, "--worker",
           "--case", case, "--per-host", per_host, "--width", args.width, "--batch", args.batch,
           "--bucket-mb", args.bucket_mb, "--repeats", args.repeats,
           *(["--pin"] if args.pin else [])]
    proc = cluster.host("h0").run(["timeout", "600", *cmd], env=env, capture_output=True,
                                  text=True, cwd=HERE.parent)
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not records:
        raise RuntimeError(f"{case} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return records[0]


def run_case_launcher(cluster_tool, cluster, hosts, per_host, rate, args):
    """The same measurement under `phalanx run` on every host: the ZeroMQ transport (CurveZMQ
    between hosts), with the launcher's rendezvous across the hosts."""
    import secrets
    for h in cluster.hosts:
        h.set_rate(rate)
    case = f"{hosts} hosts x {per_host}, {rate}, zmq"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PHALANX_STORE_TOKEN=secrets.token_hex(16))
    phalanx, run_id = Path(sys.executable).parent / "phalanx", secrets.token_hex(4)
    procs = [cluster.hosts[i].popen(
        ["timeout", "600", phalanx, "run", "--nnodes", hosts, "--nproc-per-node", per_host,
         "--rdzv-endpoint", "h0:29700", "--rdzv-id", run_id, __file__, "--worker",
         "--case", case, "--per-host", per_host, "--width", args.width, "--batch", args.batch,
         "--bucket-mb", args.bucket_mb, "--repeats", args.repeats,
         *(["--pin"] if args.pin else [])],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=HERE.parent)
        for i in range(hosts)]
    outs = [p.communicate()[0] for p in procs]
    records = [json.loads(line[line.index("{"):]) for out in outs for line in out.splitlines()
               if "{" in line and '"case"' in line]
    if any(p.returncode for p in procs) or not records:
        raise RuntimeError(f"{case} failed:\n" + "\n".join(o[-2000:] for o in outs))
    return records[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case", default="")
    p.add_argument("--rates", nargs="+", default=["1gbit", "10gbit"])
    p.add_argument("--hosts", nargs="+", type=int, default=[2, 3])
    p.add_argument("--per-host", type=int, default=1)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--bucket-mb", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--trials", type=int, default=3, help="runs of each case (median of each)")
    p.add_argument("--out", default="multinode_step.json")
    p.add_argument("--pin", action="store_true",
                   help="each host on a core of its own (as many hosts as cores at most)")
    p.add_argument("--transports", nargs="+", default=["mpi", "zmq"],
                   help="mpi: mpiexec across the hosts; zmq: phalanx run on every host")
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    sys.path.insert(0, str(HERE))
    import cluster as cluster_tool
    import scaling_model
    records = []
    with cluster_tool.Cluster(max(args.hosts), name="pxb", subnet="10.213.9",
                              pin=args.pin) as cluster:
        cases = [(r, h, t) for r in args.rates for h in args.hosts for t in args.transports]
        for rate, hosts, transport in cases:
            run = run_case if transport == "mpi" else run_case_launcher
            r = median_record([run(cluster_tool, cluster, hosts, args.per_host, rate, args)
                               for _ in range(args.trials)])
            records.append(r)
            hidden = 1 - (r["overlapped"] - (r["serial"] - r["allreduce"])) / r["allreduce"]
            print(f"{r['case']}: step {r['overlapped'] * 1e3:.1f} ms overlapped, "
                  f"{r['serial'] * 1e3:.1f} ms serial; all-reduce alone "
                  f"{r['allreduce'] * 1e3:.1f} ms, {hidden:.0%} of it hidden; "
                  f"{r['launched_in_backward']}/{r['buckets']} buckets launched in backward; "
                  f"link alpha {r['inter'][0] * 1e6:.0f} us, beta "
                  f"{r['inter'][1] / 1e6:.0f} MB/s", flush=True)
    for r in records:        # the model predicts both steps from the measured profile
        records_for_model = []
        for overlap, key in ((True, "overlapped"), (False, "serial")):
            records_for_model.append(dict(r, overlap=overlap, measured=r[key],
                                          case=f"{r['case']}, {key}", algo="ring",
                                          cap=r["cap"] if overlap else 1 << 60))
        r["model_records"] = records_for_model
    flat = [m for r in records for m in r.pop("model_records")]
    Path(args.out).write_text(json.dumps(flat, indent=1))
    table, worst = scaling_model.validate(args.out)
    print(table)
    print(f"worst error of the model: {worst:.0%} (records in {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
