"""What the profiler costs on a training step: off (never started), and on (recording).

    python benchmarks/profiler_overhead.py [--repeats 10] [--rounds 5]

Times the median step (forward, backward, SGD step) of two MLPs: the train_step benchmark's
784-1024-1024-10 at batch 128 (BLAS-bound), and a small 64-128-128-10 at batch 32, where the
per-op cost the profiler adds weighs most. "off" runs with no profile attached (the
instrumented points pay one flag test); "on" records every op forward and backward span and
the optimizer step (`record_shapes` off and on); the three are interleaved in rounds so that a
busy machine slows them alike, and each step is timed in CPU time of the stepping thread. The
goal: on < 10% over off on the MLP step.
"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads: BLAS on this thread
import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from threadpoolctl import threadpool_limits  # noqa: E402

import phalanx as px  # noqa: E402
import phalanx.nn as nn  # noqa: E402
import phalanx.optim as optim  # noqa: E402
import phalanx.profiler as profiler  # noqa: E402


def build(sizes, batch):
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = px.randn(batch, sizes[0]), px.randint(0, sizes[-1], (batch,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return step


def step_times(step, repeats):
    """CPU time of each step on this thread (BLAS runs here too, single-threaded): unlike wall
    time it does not grow when other processes share the cores."""
    times = []
    for _ in range(repeats):
        t = time.thread_time()
        step()
        times.append(time.thread_time() - t)
    return times


def compare(step, repeats, rounds):
    """Median step time off, on, and on with record_shapes: the three interleaved over
    `rounds` rounds, so that a busy machine slows them alike."""
    for _ in range(3):
        step()
    times = {"off": [], "on": [], "shapes": []}
    for _ in range(rounds):
        times["off"] += step_times(step, repeats)
        for mode, shapes in (("on", False), ("shapes", True)):
            with profiler.profile(record_shapes=shapes) as prof:
                times[mode] += step_times(step, repeats)
    spans = len(prof.events()) // repeats
    return {k: statistics.median(v) for k, v in times.items()}, spans


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    configs = [("MLP 784-1024-1024-10, batch 128", [784, 1024, 1024, 10], 128),
               ("MLP 64-128-128-10, batch 32", [64, 128, 128, 10], 32)]
    with threadpool_limits(1):          # BLAS on this thread, so that its CPU time counts
        for name, sizes, batch in configs:
            t, spans = compare(build(sizes, batch), args.repeats, args.rounds)
            print(f"{name}: off {t['off'] * 1e3:.3f} ms; on {t['on'] * 1e3:.3f} ms "
                  f"({100 * (t['on'] / t['off'] - 1):+.1f}%); on with record_shapes "
                  f"{t['shapes'] * 1e3:.3f} ms ({100 * (t['shapes'] / t['off'] - 1):+.1f}%); "
                  f"{spans} spans per step")


if __name__ == "__main__":
    main()
