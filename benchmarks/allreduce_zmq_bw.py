"""All-reduce bandwidth: Phalanx's ZmqProcessGroup against PyTorch gloo, same sizes, same ranks.

    python benchmarks/allreduce_zmq_bw.py [--ranks 2] [--max-mb 100]

Each backend runs in its own fresh processes (float32 SUM, in place). The table shows the median
time per all-reduce and the "bus bandwidth" 2(n-1)/n · bytes / time (what each link carries), and
the ratio zmq/gloo of bandwidths (> 1: Phalanx faster).
"""
import argparse
import json
import os
import subprocess
import sys
import time

SIZES = [1 << 10, 16 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 100 << 20]


def _iterations(nbytes):
    return max(5, min(200, (200 << 20) // max(nbytes, 1)))


def _measure(allreduce, barrier, sizes):
    import numpy as np
    results = {}
    for nbytes in sizes:
        x = np.zeros(nbytes // 4, dtype=np.float32)
        for _ in range(2):
            allreduce(x)                                # warm-up: connections, page faults
        times = []
        for _ in range(_iterations(nbytes)):
            barrier()
            t = time.perf_counter()
            allreduce(x)
            times.append(time.perf_counter() - t)
        results[nbytes] = sorted(times)[len(times) // 2]
    return results


def worker_zmq(rank, size, sizes):
    from phalanx.distributed.store import Store
    from phalanx.distributed.zmq_backend import ZmqProcessGroup
    pg = ZmqProcessGroup.from_store(Store.from_env(), rank, size, prefix="bench")
    res = _measure(lambda x: pg.allreduce(x).wait(), lambda: pg.barrier().wait(), sizes)
    pg.shutdown()
    return res


def worker_gloo(rank, size, sizes):
    import torch
    import torch.distributed as dist
    dist.init_process_group("gloo", rank=rank, world_size=size,
                            init_method=f"tcp://127.0.0.1:{os.environ['BENCH_PORT']}")

    def allreduce(x):
        dist.all_reduce(torch.from_numpy(x))
    res = _measure(allreduce, dist.barrier, sizes)
    dist.destroy_process_group()
    return res


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_backend(backend, ranks, sizes):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               BENCH_PORT=str(_free_port()), WORLD_SIZE=str(ranks))
    server = None
    if backend == "zmq":
        from phalanx.distributed.store import StoreServer
        server = StoreServer().start()
        env.update(PHALANX_STORE_ENDPOINT=server.endpoint, PHALANX_STORE_TOKEN=server.token)
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", backend, "--sizes",
                               ",".join(map(str, sizes))],
                              env=dict(env, RANK=str(r)), stdout=subprocess.PIPE, text=True)
             for r in range(ranks)]
    try:
        outs = [p.communicate(timeout=900)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
        if server:
            server.close()
    if any(p.returncode for p in procs):
        raise SystemExit(f"{backend} workers failed: exit codes {[p.returncode for p in procs]}")
    return {int(k): v for k, v in json.loads(outs[0].strip().splitlines()[-1]).items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--max-mb", type=float, default=100)
    parser.add_argument("--worker", choices=["zmq", "gloo"], help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sizes = [int(s) for s in args.sizes.split(",")]
        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        res = (worker_zmq if args.worker == "zmq" else worker_gloo)(rank, size, sizes)
        print(json.dumps(res))
        return
    sizes = [s for s in SIZES if s <= args.max_mb * (1 << 20)]
    zmq_t = run_backend("zmq", args.ranks, sizes)
    gloo_t = run_backend("gloo", args.ranks, sizes)
    factor = 2 * (args.ranks - 1) / args.ranks
    print(f"all-reduce float32 SUM, {args.ranks} ranks, {os.cpu_count()} cores; median of "
          f"5-200 runs; bus bandwidth in GB/s")
    print(f"{'size':>9} {'zmq ms':>9} {'gloo ms':>9} {'zmq GB/s':>9} {'gloo GB/s':>9} "
          f"{'zmq/gloo':>9}")
    for s in sizes:
        bw_z, bw_g = factor * s / zmq_t[s] / 1e9, factor * s / gloo_t[s] / 1e9
        label = f"{s >> 20} MB" if s >= 1 << 20 else f"{s >> 10} KB"
        print(f"{label:>9} {zmq_t[s] * 1e3:9.3f} {gloo_t[s] * 1e3:9.3f} {bw_z:9.3f} {bw_g:9.3f} "
              f"{bw_z / bw_g:9.2f}")


if __name__ == "__main__":
    main()
