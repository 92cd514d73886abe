"""FSDP step time: Phalanx's fully_shard vs PyTorch's FSDP2 over gloo, each next to its DDP
and its tensor parallelism.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/fsdp_step.py [--rounds 3]

Model: a token embedding, 4 transformer encoder layers (d_model 256, 4 heads, feed-forward
1024, batch_first) and a linear head over a 512-token vocabulary, float32; per-rank batch 8
sequences of 64 tokens; Adam. One step = forward, cross-entropy, backward, clip_grad_norm_,
optimizer step, zero_grad. Each layer and then the root is fully_shard-ed (the FSDP2
example's wrapping); DDP wraps the whole model. Every configuration runs as a 2-rank job of its
own (Phalanx under mpiexec, PyTorch over gloo), one BLAS thread per rank, times `--steps`
steps `--repeats` times after a warm-up and reports the median; jobs are interleaved over
`--rounds` launches. Also printed: what each rank keeps between steps (parameters, gradients
and Adam's two moments), which FSDP cuts to about half on two ranks. Tensor parallelism
("TP"): each layer's feed-forward split Megatron-style (linear1 ColwiseParallel, linear2
RowwiseParallel) and the head ColwiseParallel with the logits gathered; both ranks feed the
same batch, so a TP step does one rank's DDP work split over two; it skips clipping, which
PyTorch 2.13 refuses on a model of DTensor and plain parameters.
"""
import argparse
import importlib
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

VOCAB, DIM, HEADS, FFN, LAYERS, SEQ, BATCH = 512, 256, 4, 1024, 4, 64, 8


def _model(lib):
    nn = lib.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, DIM)
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(DIM, HEADS, FFN, dropout=0.0, batch_first=True)
                for _ in range(LAYERS))
            self.head = nn.Linear(DIM, VOCAB)

        def forward(self, tokens):
            h = self.embed(tokens)
            for layer in self.layers:
                h = layer(h)
            return self.head(h)
    return Net()


def _tokens(rank):
    return np.random.default_rng(rank).integers(0, VOCAB, (BATCH, SEQ + 1))


def _time(step, steps, repeats, barrier):
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t0) / steps)
    return float(np.median(times))


def _tensor_parallel(lib, model):
    def module(name):
        return importlib.import_module(f"{lib.__name__}.distributed.{name}")
    tp = module("tensor.parallel")
    plan = {"head": tp.ColwiseParallel(output_layouts=module("tensor").Replicate())}
    for i in range(LAYERS):
        plan[f"layers.{i}.linear1"] = tp.ColwiseParallel()
        plan[f"layers.{i}.linear2"] = tp.RowwiseParallel()
    mesh = module("device_mesh").init_device_mesh("cpu", (2,))
    return tp.parallelize_module(model, mesh, plan)


def _run(lib, dist, shard, wrap, mode, rank, args):
    lib.manual_seed(0)
    model = _model(lib)
    if mode == "fsdp":
        for layer in model.layers:
            shard(layer)
        shard(model)
    elif mode == "tp":
        model = _tensor_parallel(lib, model)
    else:
        model = wrap(model)
    opt = lib.optim.Adam(model.parameters(), lr=1e-4)
    data = lib.tensor(_tokens(0 if mode == "tp" else rank))   # TP: one batch for both
    x, y = data[:, :-1], data[:, 1:].reshape(-1)

    def step():
        loss = lib.nn.functional.cross_entropy(model(x).reshape(-1, VOCAB), y)
        loss.backward()
        if mode != "tp":      # PyTorch's refuses TP's mix of DTensor and plain parameters
            lib.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    seconds = _time(step, args.steps, args.repeats, dist.barrier)

    def local(t):
        return t.to_local() if hasattr(t, "to_local") else t
    params = sum(local(p).numel() * 4 for p in model.parameters())
    state = sum(local(v).numel() * 4 for s in opt.state.values() for k, v in s.items()
                if k != "step")
    kept = 2 * params + state        # parameters, their gradients, Adam's two moments
    return {"step": seconds, "kept_mb": kept / 2**20}


def run_phalanx(args):
    import phalanx as px
    import phalanx.distributed as dist
    from phalanx.distributed.fsdp import fully_shard
    dist.init_process_group()
    result = _run(px, dist, fully_shard, dist.DistributedDataParallel, args.mode,
                  dist.get_rank(), args)
    rank = dist.get_rank()
    dist.destroy_process_group()
    return rank, result


def run_torch(args):
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", rank=rank, world_size=2,
                            init_method=f"tcp://127.0.0.1:{os.environ['BENCH_PORT']}")
    result = _run(torch, dist, fully_shard, torch.nn.parallel.DistributedDataParallel,
                  args.mode, rank, args)
    dist.destroy_process_group()
    return rank, result


def worker(args):
    rank, result = (run_torch if args.worker == "torch" else run_phalanx)(args)
    if rank == 0:
        print("RESULT " + json.dumps(result), flush=True)


def launch(framework, mode, args):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "MPI_LOCAL", "RANK", "WORLD_SIZE"))}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               BENCH_PORT=str(port))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--mode", mode,
           "--steps", str(args.steps), "--repeats", str(args.repeats)]
    if framework == "phalanx":
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        procs = [subprocess.Popen([mpiexec if os.path.exists(mpiexec) else "mpiexec", "-n",
                                   "2"] + cmd, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)]
    else:
        procs = [subprocess.Popen(cmd, env=dict(env, RANK=str(r)), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=1200) for p in procs]
    line = next((line for out, _ in outs for line in out.splitlines()
                 if line.startswith("RESULT ")), None)
    if any(p.returncode for p in procs) or line is None:
        sys.exit(f"{framework} {mode} failed:\n" + "\n".join(o + e for o, e in outs))
    return json.loads(line[7:])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--worker", choices=["phalanx", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["fsdp", "ddp", "tp"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    print(f"{LAYERS} encoder layers d={DIM} ffn={FFN}, vocab {VOCAB}, per-rank batch {BATCH} x "
          f"{SEQ} tokens, float32, Adam, 2 ranks, one BLAS thread each; median over "
          f"{args.rounds} interleaved launches of the median of {args.repeats} x {args.steps} "
          f"steps")
    configs = [(fw, mode) for mode in ("fsdp", "ddp", "tp") for fw in ("phalanx", "torch")]
    runs = {c: [] for c in configs}
    for _ in range(args.rounds):
        for c in configs:
            runs[c].append(launch(*c, args))
    med = {c: {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
           for c, rs in runs.items()}
    print("| framework | FSDP step | DDP step | TP step | FSDP / DDP | kept per rank, "
          "FSDP / DDP / TP |")
    print("|---|---|---|---|---|---|")
    for fw, name in (("phalanx", "Phalanx (mpi)"), ("torch", "PyTorch (gloo)")):
        f, d, t = med[fw, "fsdp"], med[fw, "ddp"], med[fw, "tp"]
        print(f"| {name} | {f['step'] * 1e3:.1f} ms | {d['step'] * 1e3:.1f} ms | "
              f"{t['step'] * 1e3:.1f} ms | {f['step'] / d['step']:.2f}x | "
              f"{f['kept_mb']:.1f} / {d['kept_mb']:.1f} / {t['kept_mb']:.1f} MB |")
    print("Phalanx step / PyTorch step: " + ", ".join(
        f"{mode.upper()} {med['phalanx', mode]['step'] / med['torch', mode]['step']:.2f}x"
        for mode in ("fsdp", "ddp", "tp")))


if __name__ == "__main__":
    main()
