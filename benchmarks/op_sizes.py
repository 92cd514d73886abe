"""Ops at working sizes (hundreds of rows, not 16x16): Phalanx vs PyTorch CPU, forward only.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/op_sizes.py [--ops cdist topk]

op_overhead.py measures what an op costs on small tensors (Python per call); this measures
the algorithm: an op written with the wrong complexity (a cubic temporary, a Python loop per
element, a full sort for a top-k) shows here as a ratio far above 1. Each op runs on the same
inputs in both libraries, one thread each; the table shows the best of `--repeats` runs and
the ratio Phalanx/PyTorch, and marks ratios above 3.
"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import argparse  # noqa: E402
import time

import numpy as np
import torch

import phalanx as px

torch.set_num_threads(1)

# name -> op on (lib, inputs); inputs: a (600, 600) float32 matrix "a", a (2000,) vector "v",
# a (8, 200, 200) batch "b", (600, 600) int64 indices "i" into 600
OPS = {
    "diag_embed": lambda L, x: L.diag_embed(x["v"][:500]),
    "block_diag": lambda L, x: L.block_diag(*[x["a"][:100, :100]] * 10),
    "cdist": lambda L, x: L.cdist(x["a"][:300], x["a"][300:]),
    "pdist": lambda L, x: L.nn.functional.pdist(x["a"][:300]),
    "kron": lambda L, x: L.kron(x["a"][:40, :40], x["a"][:40, :40]),
    "cov": lambda L, x: L.cov(x["a"]),
    "cumsum": lambda L, x: L.cumsum(x["a"], 1),
    "cumprod": lambda L, x: L.cumprod(x["a"], 1),
    "cummax": lambda L, x: L.cummax(x["a"], 1),
    "logcumsumexp": lambda L, x: L.logcumsumexp(x["a"], 1),
    "sort": lambda L, x: L.sort(x["a"], 1),
    "topk": lambda L, x: L.topk(x["a"], 10, 1),
    "kthvalue": lambda L, x: L.kthvalue(x["a"], 10, 1),
    "median": lambda L, x: L.median(x["a"], 1),
    "unique": lambda L, x: L.unique(x["i"]),
    "gather": lambda L, x: L.gather(x["a"], 1, x["i"]),
    "scatter_add": lambda L, x: L.zeros(600, 600).scatter_add(1, x["i"], x["a"]),
    "index_add": lambda L, x: L.zeros(600, 600).index_add(0, x["i"][0], x["a"]),
    "repeat_interleave": lambda L, x: L.repeat_interleave(x["a"], 3, 0),
    "einsum (batched)": lambda L, x: L.einsum("bij,bjk->bik", x["b"], x["b"]),
    "einsum (attention)": lambda L, x: L.einsum("...qd,...kd->...qk", x["b"], x["b"]),
    "linalg.solve": lambda L, x: L.linalg.solve(x["a"], x["a"]),
    "linalg.lstsq": lambda L, x: L.linalg.lstsq(x["a"], x["a"][:, :10]),
    "linalg.svd": lambda L, x: L.linalg.svd(x["a"][:200, :200]),
    "linalg.qr": lambda L, x: L.linalg.qr(x["a"]),
    "embedding_bag (mean)": lambda L, x: L.nn.functional.embedding_bag(x["i"][:100], x["a"]),
    "one_hot": lambda L, x: L.nn.functional.one_hot(x["i"][0], 600),
    "unfold (im2col)": lambda L, x: L.nn.functional.unfold(x["b"][:2, None], 5),
    "fold (col2im)": lambda L, x: L.nn.functional.fold(
        L.nn.functional.unfold(x["b"][:2, None], 5), (200, 200), 5),
    "grid_sample": lambda L, x: L.nn.functional.grid_sample(
        x["b"][:2, None], x["b"][:2, :100, :100, None].expand(2, 100, 100, 2).tanh(),
        align_corners=False),
    "interpolate (bicubic)": lambda L, x: L.nn.functional.interpolate(
        x["b"][:2, None], scale_factor=2, mode="bicubic"),
    "max_pool2d": lambda L, x: L.nn.functional.max_pool2d(x["b"][:, None], 3, 2),
    "adaptive_max_pool2d": lambda L, x: L.nn.functional.adaptive_max_pool2d(x["b"][:, None],
                                                                           (7, 7)),
    "sparse mm (1% dense)": lambda L, x: L.sparse.mm(x["s"], x["a"]),
    "multinomial": lambda L, x: L.multinomial(L.softmax(x["a"], 1), 50, replacement=True),
}


def inputs(lib):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((600, 600)).astype(np.float32)
    sparse = a * (rng.random((600, 600)) < 0.01)
    return {"a": lib.tensor(a), "v": lib.tensor(rng.standard_normal(2000).astype(np.float32)),
            "b": lib.tensor(rng.standard_normal((8, 200, 200)).astype(np.float32)),
            "i": lib.tensor(rng.integers(0, 600, (600, 600))),
            "s": lib.tensor(sparse).to_sparse()}


def best_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", nargs="*", default=list(OPS))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    mine, theirs = inputs(px), inputs(torch)
    print(f"{'op':<24}{'phalanx ms':>11}{'torch ms':>10}{'ratio':>8}")
    for name in args.ops:
        op = OPS[name]
        t_px = best_time(lambda: op(px, mine), args.repeats)
        t_torch = best_time(lambda: op(torch, theirs), args.repeats)
        mark = "  <- over 3x" if t_px > 3 * t_torch else ""
        print(f"{name:<24}{t_px * 1e3:>11.2f}{t_torch * 1e3:>10.2f}{t_px / t_torch:>8.2f}{mark}",
              flush=True)


if __name__ == "__main__":
    main()
