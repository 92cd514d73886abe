"""GPU benchmarks: Phalanx (CuPy) vs PyTorch CUDA in the same run, and NCCL all-reduce.

    python benchmarks/gpu_bench.py [--out DIR] [--quick] [--only ops,train,nccl]

Stages, each timed on the GPU with synchronisation around the timed region, each allowed to
fail on its own (the failure is printed and recorded, the next stage runs):
  ops    per-op time on small tensors (64x64 float32): add, mul, matmul, relu, exp, sum,
         softmax, each forward + backward, Phalanx vs PyTorch; goal <= 2x PyTorch's time;
  train  training-step time (forward, backward, optimizer step) of an MLP 784-4096-4096-10 at
         batch 4096 (SGD with momentum), a 2-layer transformer encoder d=1024, 16 heads, seq
         512, batch 32 (AdamW), and the LeNet-style CNN at batch 256 (SGD), each in float32 and
         float16 autocast; goal >= 0.8x PyTorch's throughput on the MLP and the transformer;
  nccl   all-reduce of 1 MB and 256 MB through Phalanx's nccl group (world size 1) vs CuPy's
         raw NcclCommunicator.allReduce on the same buffer; goal >= 0.95x at 256 MB.
Writes `gpu_bench.json` (every number) and `gpu_bench.md` (the README table) to --out.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
RESULTS = {"stages": {}, "errors": {}}


def log(*args):
    print(*args, flush=True)


def gpu_time(fn, repeats, warmup, sync):
    """Median seconds of fn() over `repeats` runs, each between two synchronisations."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def environment():
    import cupy
    import torch
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "cupy": cupy.__version__, "torch": torch.__version__,
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "driver": cupy.cuda.runtime.driverGetVersion(),
            "gpu": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()}
    try:
        from cupy.cuda import nccl
        info["nccl"] = nccl.get_version()
    except Exception as e:
        info["nccl"] = f"unavailable ({e})"
    return info


# --- ops --------------------------------------------------------------------------------------
def stage_ops(quick):
    import torch
    import phalanx as px
    import phalanx.nn.functional as PF
    n = 64
    rng = np.random.default_rng(0)
    a_np, b_np = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    pa, pb = (px.tensor(v, device="cuda", requires_grad=True) for v in (a_np, b_np))
    ta, tb = (torch.tensor(v, device="cuda", requires_grad=True) for v in (a_np, b_np))
    ops = {
        "add": (lambda a, b: a + b, lambda a, b: a + b),
        "mul": (lambda a, b: a * b, lambda a, b: a * b),
        "matmul": (lambda a, b: a @ b, lambda a, b: a @ b),
        "relu": (lambda a, b: a.relu(), lambda a, b: a.relu()),
        "exp": (lambda a, b: a.exp(), lambda a, b: a.exp()),
        "sum": (lambda a, b: a.sum(), lambda a, b: a.sum()),
        "softmax": (lambda a, b: PF.softmax(a, dim=1), lambda a, b: torch.softmax(a, 1)),
    }
    repeats = 50 if quick else 200
    out = {}
    for name, (pfn, tfn) in ops.items():
        def p_step():
            pa.grad = None
            pfn(pa, pb).sum().backward()

        def t_step():
            ta.grad = None
            tfn(ta, tb).sum().backward()
        t_px = gpu_time(p_step, repeats, 10, px.cuda.synchronize)
        t_torch = gpu_time(t_step, repeats, 10, torch.cuda.synchronize)
        out[name] = {"phalanx_us": t_px * 1e6, "torch_us": t_torch * 1e6,
                     "ratio": t_px / t_torch}
        log(f"  op {name:8s} phalanx {t_px * 1e6:8.1f} us  torch {t_torch * 1e6:8.1f} us  "
            f"ratio {t_px / t_torch:5.2f} (goal <= 2)")
    return out


# --- training steps ---------------------------------------------------------------------------
def models(nn, name):
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                             nn.Linear(4096, 10))
    if name == "cnn":
        from train_step import cnn
        return cnn(nn)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.TransformerEncoderLayer(
                1024, 16, dim_feedforward=4096, dropout=0.0, batch_first=True)
                for _ in range(2)])
            self.head = nn.Linear(1024, 10)

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return self.head(x.mean(dim=1))
    return Encoder()


CASES = {"mlp": ((4096, 784), "sgd", 20), "transformer": ((32, 512, 1024), "adamw", 8),
         "cnn": ((256, 1, 28, 28), "sgd", 20)}


def stage_train(quick):
    import torch
    import phalanx as px
    import phalanx.nn as pnn
    import phalanx.nn.functional as PF
    out = {}
    for name, (shape, opt_name, repeats) in CASES.items():
        repeats = max(3, repeats // 2) if quick else repeats
        for precision in ("float32", "float16"):
            key = f"{name}/{precision}"
            try:
                out[key] = train_case(torch, px, pnn, PF, name, shape, opt_name, repeats,
                                      precision)
                r = out[key]
                log(f"  train {key:22s} phalanx {r['phalanx_ms']:8.2f} ms  torch "
                    f"{r['torch_ms']:8.2f} ms  throughput ratio {r['throughput_ratio']:5.2f}"
                    f"  (first losses {r['loss_phalanx']:.4f} / {r['loss_torch']:.4f})")
            except Exception as e:
                out[key] = {"error": repr(e)}
                log(f"  train {key}: FAILED {e!r}")
                traceback.print_exc()
    return out


def train_case(torch, px, pnn, PF, name, shape, opt_name, repeats, precision):
    torch.manual_seed(0)
    tmodel = models(torch.nn, name).cuda()
    pmodel = models(pnn, name)
    pmodel.load_state_dict({k: v.detach().cpu().numpy().copy()
                            for k, v in tmodel.state_dict().items()})
    pmodel = pmodel.to("cuda")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, shape[0])
    tx, ty = torch.tensor(x, device="cuda"), torch.tensor(y, device="cuda")
    px_x, px_y = px.tensor(x, device="cuda"), px.tensor(y, device="cuda")
    if opt_name == "sgd":
        topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
        popt = px.optim.SGD(pmodel.parameters(), lr=0.01, momentum=0.9)
    else:
        topt = torch.optim.AdamW(tmodel.parameters(), lr=1e-4)
        popt = px.optim.AdamW(pmodel.parameters(), lr=1e-4)
    half = precision == "float16"
    tscaler = torch.amp.GradScaler("cuda", enabled=half)
    pscaler = px.amp.GradScaler(enabled=half) if half else None
    losses = {}

    def t_step():
        topt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=half):
            loss = torch.nn.functional.cross_entropy(tmodel(tx), ty)
        tscaler.scale(loss).backward()
        tscaler.step(topt)
        tscaler.update()
        if "torch" not in losses:
            losses["torch"] = loss.item()

    def p_step():
        popt.zero_grad(set_to_none=True)
        with px.autocast("cuda", dtype=px.float16, enabled=half):
            loss = PF.cross_entropy(pmodel(px_x), px_y)
        if pscaler is None:
            loss.backward()
            popt.step()
        else:
            pscaler.scale(loss).backward()
            pscaler.step(popt)
            pscaler.update()
        if "phalanx" not in losses:
            losses["phalanx"] = loss.item()

    t_px = gpu_time(p_step, repeats, 3, px.cuda.synchronize)
    t_torch = gpu_time(t_step, repeats, 3, torch.cuda.synchronize)
    return {"phalanx_ms": t_px * 1e3, "torch_ms": t_torch * 1e3,
            "throughput_ratio": t_torch / t_px, "loss_phalanx": losses["phalanx"],
            "loss_torch": losses["torch"], "batch": shape[0]}


# --- NCCL -------------------------------------------------------------------------------------
def stage_nccl(quick):
    import cupy as cp
    from cupy.cuda import nccl
    import phalanx as px  # noqa: F401  (makes CuPy Phalanx's array module)
    from phalanx.distributed.env import Environment
    from phalanx.distributed.nccl_backend import NcclProcessGroup
    from phalanx.distributed.reduce_op import ReduceOp
    px.cuda.set_device(0)
    group = NcclProcessGroup.create(Environment(), timeout=120)
    raw = nccl.NcclCommunicator(1, nccl.get_unique_id(), 0)
    stream = cp.cuda.Stream(non_blocking=True)
    out = {}
    try:
        for mb in (1, 256):
            a = cp.ones(mb * 2 ** 20 // 4, cp.float32)
            repeats = 20 if quick else 50

            def ours():
                group.allreduce(a, ReduceOp.SUM).wait()

            def theirs():
                raw.allReduce(a.data.ptr, a.data.ptr, a.size, nccl.NCCL_FLOAT32, nccl.NCCL_SUM,
                              stream.ptr)
            sync_ours = cp.cuda.Device().synchronize
            t_ours = gpu_time(ours, repeats, 5, sync_ours)
            t_raw = gpu_time(theirs, repeats, 5, stream.synchronize)
            out[f"{mb}MB"] = {"phalanx_us": t_ours * 1e6, "raw_us": t_raw * 1e6,
                              "ratio": t_raw / t_ours}
            log(f"  nccl all_reduce {mb:4d} MB  phalanx {t_ours * 1e6:9.1f} us  raw "
                f"{t_raw * 1e6:9.1f} us  speed ratio {t_raw / t_ours:5.2f} (goal >= 0.95 "
                f"with several GPUs; one rank's in-place all-reduce moves no data, so this "
                f"is the cost of a call)")
    finally:
        group.shutdown()
        raw.destroy()
    return out


def markdown(results):
    env = results.get("environment", {})
    lines = [f"GPU: {env.get('gpu')}; CuPy {env.get('cupy')}, CUDA runtime "
             f"{env.get('cuda_runtime')}, NCCL {env.get('nccl')}; PyTorch {env.get('torch')}.",
             "", "| benchmark | Phalanx | PyTorch / raw | ratio | goal |", "|---|---|---|---|---|"]
    st = results["stages"]
    for name, r in st.get("ops", {}).items():
        lines.append(f"| op {name} (64x64, fwd+bwd) | {r['phalanx_us']:.1f} us | "
                     f"{r['torch_us']:.1f} us | {r['ratio']:.2f}x time | <= 2x |")
    for key, r in st.get("train", {}).items():
        if "error" in r:
            lines.append(f"| train {key} | failed: {r['error'][:60]} | | | |")
            continue
        goal = ">= 0.8x" if key.split("/")[0] in ("mlp", "transformer") else ""
        lines.append(f"| train {key} (batch {r['batch']}) | {r['phalanx_ms']:.2f} ms | "
                     f"{r['torch_ms']:.2f} ms | {r['throughput_ratio']:.2f}x throughput | "
                     f"{goal} |")
    for size, r in st.get("nccl", {}).items():
        lines.append(f"| NCCL all_reduce {size} | {r['phalanx_us']:.1f} us | {r['raw_us']:.1f} "
                     f"us | {r['ratio']:.2f}x speed | >= 0.95x at 256MB on several GPUs "
                     f"(world size 1: no data moves, the call's cost) |")
    for stage, err in results["errors"].items():
        lines.append(f"\nStage {stage} failed: {err}")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--only", default="ops,train,nccl")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    try:
        RESULTS["environment"] = environment()
        log("environment:", RESULTS["environment"])
    except Exception as e:
        RESULTS["errors"]["environment"] = repr(e)
        log(f"environment: FAILED {e!r}")
    stages = {"ops": stage_ops, "train": stage_train, "nccl": stage_nccl}
    for name in args.only.split(","):
        log(f"== stage {name}")
        t0 = time.perf_counter()
        try:
            RESULTS["stages"][name] = stages[name](args.quick)
        except Exception as e:
            RESULTS["errors"][name] = repr(e)
            log(f"stage {name}: FAILED {e!r}")
            traceback.print_exc()
        log(f"== stage {name} took {time.perf_counter() - t0:.1f} s")
        with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
            json.dump(RESULTS, f, indent=1, default=str)
        with open(os.path.join(args.out, "gpu_bench.md"), "w") as f:
            f.write(markdown(RESULTS))
    return 1 if RESULTS["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
