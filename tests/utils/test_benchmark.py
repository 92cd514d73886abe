"""`phalanx.utils.benchmark` against PyTorch's rules, on a fake clock that the timed
statement advances by exactly TICK (2^-19 s, about 1.9 us: exact in binary) per call: block
sizes, statistics, the thread limit and the comparison table."""
import random

import pytest
import threadpoolctl
import torch.utils.benchmark as torch_benchmark
from torch.utils.benchmark.utils import common as torch_common

from phalanx.utils import benchmark


TICK = 2.0 ** -19


class Clock:
    def __init__(self):
        self.now = 0.0

    def tick(self):
        self.now += TICK


def _timer(clock, **kw):
    return benchmark.Timer("clock.tick()", globals={"clock": clock}, timer=lambda: clock.now,
                           **kw)


def test_timeit_and_blocked_autorange_follow_pytorchs_block_rule():
    clock = Clock()
    m = _timer(clock).timeit(250)
    assert m.number_per_run == 250 and len(m.raw_times) == 1
    assert m.median == TICK and m.iqr == 0 and m.mean == TICK
    # blocks grow tenfold until one takes a thousandth of the budget: 100 calls = 0.19 ms
    m = _timer(clock).blocked_autorange(min_run_time=0.2)
    assert m.number_per_run == 1000
    assert 0.2 <= sum(m.raw_times) < 0.2 + 1000 * TICK and len(m.raw_times) == 105
    assert m.median == TICK and not m.has_warnings
    seen = []
    _timer(clock).blocked_autorange(callback=lambda n, t: seen.append((n, t)),
                                    min_run_time=0.01)
    assert seen and all(n == 10 for n, _ in seen)


def test_adaptive_autorange_stops_once_the_spread_is_small():
    clock = Clock()
    m = _timer(clock).adaptive_autorange(threshold=0.1, min_run_time=0.01)
    assert m.meets_confidence(0.1) and len(m.raw_times) >= 4 and sum(m.raw_times) >= 0.01


def test_statistics_of_uneven_runs():
    m = benchmark.Measurement(2, [2.0, 4.0, 6.0, 100.0], None)
    assert m.times == [1.0, 2.0, 3.0, 50.0]
    assert m.median == 2.5 and m.mean == 14.0
    assert m.iqr == 14.75 - 1.75       # numpy's linear quantiles of the times
    assert m.has_warnings and not m.meets_confidence(0.1)


def test_num_threads_limits_blas_while_timing():
    seen = []

    def record():
        info = threadpoolctl.threadpool_info()
        seen.extend(i["num_threads"] for i in info if i["user_api"] == "blas")
    benchmark.Timer("record()", globals={"record": record}, num_threads=1).timeit(1)
    assert seen and set(seen) == {1}


def _measurements(spec_cls, measurement_cls):
    """The same 32 measurements for both libraries: two envs, two thread counts, a noisy
    and a steady statement, two columns."""
    rng = random.Random(0)
    out = []
    for threads in (1, 4):
        for env in ("A", "B"):
            for sub in ("16", "1024"):
                for desc in ("phalanx", "torch"):
                    base = 2e-6 * (1 + int(sub) / 100) * (1 + (desc == "torch")) / threads
                    noise = 0.5 if sub == "16" else 0.01
                    times = [base * (1 + rng.random() * noise) * 10 for _ in range(20)]
                    spec = spec_cls(stmt="x + y", setup="x = torch.ones(3)\ny = 2",
                                    label="add", sub_label=sub, description=desc, env=env,
                                    num_threads=threads)
                    out.append(measurement_cls(10, times, spec))
    return out


@pytest.mark.parametrize("options", [(), ("trim",), ("highlight",), ("trim", "highlight"),
                                     ("colorize",), ("rowwise", "trim")])
def test_compare_prints_pytorchs_table(options):
    tables = []
    for spec, measurement, compare in ((torch_common.TaskSpec, torch_common.Measurement,
                                        torch_benchmark.Compare),
                                       (benchmark.TaskSpec, benchmark.Measurement,
                                        benchmark.Compare)):
        table = compare(_measurements(spec, measurement))
        if "trim" in options:
            table.trim_significant_figures()
        if "highlight" in options:
            table.highlight_warnings()
        if "colorize" in options:
            table.colorize()
        if "rowwise" in options:
            table.colorize(rowwise=True)
        tables.append(str(table))
    assert tables[1] == tables[0]
    assert "(A)" in tables[1] and "(B)" in tables[1]         # the envs stay apart


def test_measurement_repr_and_statistics_as_pytorchs():
    ours, theirs = (_measurements(benchmark.TaskSpec, benchmark.Measurement)[0],
                    _measurements(torch_common.TaskSpec, torch_common.Measurement)[0])
    assert repr(ours).splitlines()[1:] == repr(theirs).splitlines()[1:]
    assert ours.significant_figures == theirs.significant_figures
    assert (ours.label, ours.env, ours.as_row_name) == (theirs.label, theirs.env,
                                                         theirs.as_row_name)
    merged = benchmark.Measurement.merge([ours, ours])
    assert len(merged) == 1 and merged[0].number_per_run == 1 and \
        len(merged[0].times) == 2 * len(ours.times)


def test_timer_dedents_and_knows_torch():
    m = benchmark.Timer("""
        y = x * 2
        """, setup="""
        x = torch.ones(3)
        """).timeit(5)
    assert m.task_spec.stmt == "y = x * 2" and m.task_spec.setup == "x = torch.ones(3)"


def test_measurement_prints_as_pytorchs():
    clock = Clock()
    text = repr(_timer(clock).timeit(10)).splitlines()
    assert text[1:] == ["clock.tick()", "  1.91 us", "  1 measurement, 10 runs , 1 thread"]
    text = repr(_timer(clock, label="L", sub_label="S", description="D").blocked_autorange(
        min_run_time=0.01)).splitlines()
    assert text[1:4] == ["L: S", "D", "  Median: 1.91 us"] and text[4].startswith("  IQR:")
