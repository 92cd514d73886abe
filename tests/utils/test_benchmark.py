"""`phalanx.utils.benchmark` against PyTorch's rules, on a fake clock that the timed
statement advances by exactly TICK (2^-19 s, about 1.9 us: exact in binary) per call: block
sizes, statistics, the thread limit and the comparison table."""
import threadpoolctl

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


def test_compare_lays_out_one_table_per_label():
    clock = Clock()
    results = [_timer(clock, label="add", sub_label=size, description=lib).timeit(10)
               for size in ("16", "128") for lib in ("phalanx", "torch")]
    table = str(benchmark.Compare(results))
    assert table.splitlines()[0].startswith("[") and " add " in table.splitlines()[0]
    assert "phalanx" in table and "torch" in table and "1 threads:" in table
    assert "Times are in microseconds (us)." in table
    rows = [line for line in table.splitlines() if "|" in line and "phalanx" not in line]
    assert [r.split("|")[0].strip() for r in rows] == ["16", "128"]
    assert all(r.count("1.907") == 2 for r in rows)


def test_measurement_prints_as_pytorchs():
    clock = Clock()
    text = repr(_timer(clock).timeit(10)).splitlines()
    assert text[1:] == ["clock.tick()", "  1.91 us", "  1 measurement, 10 runs , 1 thread"]
    text = repr(_timer(clock, label="L", sub_label="S", description="D").blocked_autorange(
        min_run_time=0.01)).splitlines()
    assert text[1:4] == ["L: S", "D", "  Median: 1.91 us"] and text[4].startswith("  IQR:")
