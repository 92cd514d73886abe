"""Per-op overhead on small tensors: Phalanx vs PyTorch CPU vs raw NumPy.

For each op and size it times one forward pass with grad recording followed by backward (the
gradient of the output is given, so no extra reduction is timed), in Phalanx and in PyTorch,
and the same math written by hand in NumPy (forward only, and forward + backward). Prints the
median time per call and the ratios Phalanx/PyTorch and Phalanx/NumPy.

    python benchmarks/op_overhead.py [--sizes 16 128] [--repeats 7] [--ops add matmul]

BLAS settings change the NumPy numbers: on machines that set OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE, run it as `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python ...`.
"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # single-threaded, like torch below
import argparse  # noqa: E402
import statistics
import time

import numpy as np
import torch

import phalanx as px

torch.set_num_threads(1)  # small tensors: compare single-threaded per-op cost


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# The same math by hand in NumPy: forward, and (given g) the input gradients too.
def _np_add(a, b, g=None):
    return a + b if g is None else (a + b, g, g)


def _np_bias_add(a, b, g=None):
    return a + b[0] if g is None else (a + b[0], g, g.sum(0))


def _np_mul(a, b, g=None):
    return a * b if g is None else (a * b, g * b, g * a)


def _np_matmul(a, b, g=None):
    return a @ b if g is None else (a @ b, g @ b.T, a.T @ g)


def _np_relu(a, b, g=None):
    y = np.maximum(a, 0)
    return y if g is None else (y, g * (y > 0))


def _np_scale(a, b, g=None):
    return a * 0.5 if g is None else (a * 0.5, g * 0.5)


def _np_mask(a, b, g=None):
    keep = a > 0.5
    return a * keep if g is None else (a * keep, g * keep)


def _np_exp(a, b, g=None):
    y = np.exp(a)
    return y if g is None else (y, g * y)


def _np_sum(a, b, g=None):
    y = a.sum(-1)
    return y if g is None else (y, np.broadcast_to(g[:, None], a.shape).copy())


def _np_softmax(a, b, g=None):
    y = _softmax(a)
    return y if g is None else (y, y * (g - (g * y).sum(-1, keepdims=True)))


def _np_reshape(a, b, g=None):
    y = a.reshape(-1)
    return y if g is None else (y, g.reshape(a.shape))


def _np_getitem(a, b, g=None):
    y = a[1:, ::2]
    if g is None:
        return y
    ga = np.zeros_like(a)
    ga[1:, ::2] = g
    return y, ga


# name: (the op on phalanx/torch tensors a, b; the NumPy version by hand)
OPS = {
    "add": (lambda a, b: a + b, _np_add),
    "add_bias": (lambda a, b: a + b[0], _np_bias_add),
    "mul": (lambda a, b: a * b, _np_mul),
    "scale": (lambda a, b: a * 0.5, _np_scale),              # a tensor times a Python number
    "mask": (lambda a, b: a * (a > 0.5), _np_mask),          # a comparison, then a product
    "matmul": (lambda a, b: a @ b, _np_matmul),
    "relu": (lambda a, b: a.relu(), _np_relu),
    "exp": (lambda a, b: a.exp(), _np_exp),
    "sum": (lambda a, b: a.sum(-1), _np_sum),
    "softmax": (lambda a, b: a.softmax(-1), _np_softmax),
    "reshape": (lambda a, b: a.reshape(-1), _np_reshape),
    "getitem": (lambda a, b: a[1:, ::2], _np_getitem),
}


def _time(fn, number, repeats):
    """Median seconds per call of `fn` over `repeats` runs of `number` calls."""
    fn()  # warm up
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - t0) / number)
    return statistics.median(runs)


def bench(op, n, repeats):
    f, by_hand = OPS[op]
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    pa, pb = (px.tensor(v, requires_grad=True) for v in (a, b))
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    g = np.ones(by_hand(a, b).shape, np.float32)
    pg, tg = px.tensor(g), torch.tensor(g)

    def run_px():
        pa.grad = pb.grad = None
        f(pa, pb).backward(pg)

    def run_torch():
        ta.grad = tb.grad = None
        f(ta, tb).backward(tg)

    cases = (("phalanx", run_px), ("torch", run_torch),
             ("numpy_fwd", lambda: by_hand(a, b)), ("numpy_fwd_bwd", lambda: by_hand(a, b, g)))
    number = 2000 if n <= 32 else 200
    return {name: _time(fn, number, repeats) for name, fn in cases}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 128])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--ops", nargs="+", default=list(OPS), choices=list(OPS))
    args = ap.parse_args()
    print(f"median time per forward+backward call (µs); {args.repeats} repeats; "
          f"torch {torch.__version__} (1 thread), numpy {np.__version__}")
    head = (f"{'op':<10} {'size':>7} {'phalanx':>9} {'torch':>9} {'np fwd':>9} "
            f"{'np f+b':>9} {'px/torch':>9} {'px/np f+b':>10}")
    print(head)
    print("-" * len(head))
    for n in args.sizes:
        for op in args.ops:
            r = bench(op, n, args.repeats)
            us = {k: v * 1e6 for k, v in r.items()}
            print(f"{op:<10} {f'{n}x{n}':>7} {us['phalanx']:9.1f} {us['torch']:9.1f} "
                  f"{us['numpy_fwd']:9.1f} {us['numpy_fwd_bwd']:9.1f} "
                  f"{r['phalanx'] / r['torch']:9.2f} {r['phalanx'] / r['numpy_fwd_bwd']:10.2f}")


if __name__ == "__main__":
    main()
