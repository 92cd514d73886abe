"""One training step (forward, backward, optimizer step): Phalanx vs PyTorch CPU.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/train_step.py [--threads N]

Three models, each built in PyTorch and copied weight for weight into the same Phalanx model
(so the first losses must agree — printed as a sanity check):
  (a) MLP 784-1024-1024-10, batch 128, SGD with momentum
  (b) LeNet-style CNN on 1x28x28, batch 64, SGD with momentum
  (c) 2-layer transformer encoder, d=256, 4 heads, seq 128, batch 16, Adam
Both frameworks get the same number of threads (PyTorch's intra-op pool; the BLAS pool under
NumPy through threadpoolctl). Prints the median step time of each and the throughput ratio
Phalanx/PyTorch (1.0 = as fast; the goals are MLP >= 0.9, transformer >= 0.7, CNN >= 0.5).
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, when set, slow NumPy's BLAS down; unset them as above.
"""
import argparse
import os
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import phalanx as px
import phalanx.nn as pnn
import phalanx.nn.functional as PF
import phalanx.optim as poptim

GOALS = {"mlp": 0.9, "cnn": 0.5, "transformer": 0.7}


# ---- the same three models in both frameworks ----------------------------------------------
def mlp(nn):
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                         nn.Linear(1024, 10))


def cnn(nn):
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def transformer(nn):
    if not hasattr(nn, "TransformerEncoderLayer"):
        return None

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.TransformerEncoderLayer(
                256, 4, dim_feedforward=1024, dropout=0.0, batch_first=True)
                for _ in range(2)])
            self.head = nn.Linear(256, 10)

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return self.head(x.mean(dim=1))

    return Encoder()


CASES = {  # name: (builder, input shape, optimizer name, repeats)
    "mlp": (mlp, (128, 784), "sgd", 50),
    "cnn": (cnn, (64, 1, 28, 28), "sgd", 50),
    "transformer": (transformer, (16, 128, 256), "adam", 15),
}


def optimizer(lib, name, params):
    if name == "sgd":
        return lib.SGD(params, lr=0.01, momentum=0.9)
    return lib.Adam(params, lr=1e-4)


# ---- timing ---------------------------------------------------------------------------------
def time_steps(steps, repeats, warmup=3):
    """Median wall time of each step function. The steps alternate, so that a busy machine
    slows all of them alike."""
    for _ in range(warmup):
        for step in steps:
            step()
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, ts in zip(steps, times):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def run_case(name, threads):
    build, shape, opt_name, repeats = CASES[name]
    torch.manual_seed(0)
    tmodel, pmodel = build(torch.nn), build(pnn)
    if tmodel is None or pmodel is None:
        return None
    pmodel.load_state_dict({k: v.detach().numpy().copy() for k, v in
                            tmodel.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, shape[0])
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    px_x, px_y = px.tensor(x), px.tensor(y)
    topt = optimizer(torch.optim, opt_name, tmodel.parameters())
    popt = optimizer(poptim, opt_name, pmodel.parameters())
    losses = {}

    def torch_step():
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tmodel(tx), ty)
        loss.backward()
        topt.step()
        losses.setdefault("torch", loss.item())

    def phalanx_step():
        popt.zero_grad()
        loss = PF.cross_entropy(pmodel(px_x), px_y)
        loss.backward()
        popt.step()
        losses.setdefault("phalanx", loss.item())

    torch.set_num_threads(threads)
    with threadpool_limits(limits=threads):
        t_px, t_torch = time_steps([phalanx_step, torch_step], repeats)
    return t_px, t_torch, abs(losses["phalanx"] - losses["torch"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    slow_blas = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    print(f"threads: {args.threads}  numpy {np.__version__}  torch {torch.__version__}"
          + (f"  (warning: {', '.join(slow_blas)} set: NumPy's BLAS runs slow)"
             if slow_blas else ""))
    print(f"{'case':<12}{'phalanx ms':>12}{'torch ms':>12}{'ratio':>8}{'goal':>7}"
          f"{'1st-loss diff':>15}")
    for name in args.cases:
        res = run_case(name, args.threads)
        if res is None:
            print(f"{name:<12}{'not available (nn.TransformerEncoderLayer missing)':>50}")
            continue
        t_px, t_torch, dloss = res
        ratio = t_torch / t_px  # Phalanx throughput relative to PyTorch's
        print(f"{name:<12}{t_px * 1e3:>12.2f}{t_torch * 1e3:>12.2f}{ratio:>8.2f}"
              f"{GOALS[name]:>7.2f}{dloss:>15.2e}")


if __name__ == "__main__":
    main()
