"""`phalanx.utils.benchmark` (torch.utils.benchmark): time a statement, summarise the runs,
and lay several measurements out as one table.

    t = Timer("x @ x", setup="import phalanx as px; x = px.randn(64, 64)",
              label="matmul", sub_label="64x64", description="phalanx")
    m = t.blocked_autorange(min_run_time=0.5)     # Measurement: median, iqr, mean, times
    Compare([m, ...]).print()

Python statements only (PyTorch's C++ timer needs its toolchain); `num_threads` limits the
BLAS/OpenMP threads of NumPy through threadpoolctl while the statement runs, as PyTorch's
sets its own.
"""
import math
import statistics
import textwrap
import timeit
from collections import defaultdict

from threadpoolctl import threadpool_limits

__all__ = ["Timer", "Measurement", "Compare", "Language"]


class Language:
    PYTHON = "python"
    CPP = "c++"


def timer():
    """The default clock (PyTorch's: perf_counter, after a device synchronisation)."""
    from ..cuda import is_available, synchronize
    if is_available():
        synchronize()
    return timeit.default_timer()


class Measurement:
    """The runs of one statement: `raw_times` are seconds per block of `number_per_run`
    calls; `times` are seconds per call."""

    def __init__(self, number_per_run, raw_times, task_spec, metadata=None):
        self.number_per_run, self.raw_times = number_per_run, list(raw_times)
        self.task_spec, self.metadata = task_spec, metadata

    @property
    def times(self):
        return [t / self.number_per_run for t in self.raw_times]

    @property
    def mean(self):
        return statistics.fmean(self.times)

    @property
    def median(self):
        return statistics.median(self.times)

    def _quantile(self, q):
        ordered = sorted(self.times)
        at = q * (len(ordered) - 1)          # linear interpolation, as numpy's default
        low = math.floor(at)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (at - low)

    @property
    def iqr(self):
        return self._quantile(0.75) - self._quantile(0.25)

    @property
    def significant_figures(self):
        """Digits the spread allows (PyTorch's rule of thumb: 1 to 4)."""
        if len(self.times) < 2 or not self.median:
            return 4
        relative = self.iqr / self.median
        return max(1, min(4, int(-math.log10(relative)) + 1 if relative > 0 else 4))

    @property
    def has_warnings(self):
        return len(self.times) > 1 and self.iqr > 0.1 * self.median

    def meets_confidence(self, threshold=0.1):
        return self.iqr / self.median < threshold

    @property
    def title(self):
        spec = self.task_spec
        return spec.label or spec.stmt

    def __repr__(self):
        unit, scale = _unit(self.median)
        spec = self.task_spec
        lines = [f"<phalanx.utils.benchmark.Measurement object at {id(self):#x}>"]
        title = spec.label or str(spec.stmt)
        lines += [s for s in (f"{title}: {spec.sub_label}" if spec.sub_label else title,
                              spec.description,
                              f"setup: {spec.setup}" if spec.setup != "pass" else None) if s]
        threads = f"{spec.num_threads} thread{'s' * (spec.num_threads > 1)}"
        if len(self.times) == 1:        # PyTorch's words, its stray space included
            lines.append(f"  {self.median * scale:.2f} {unit}")
            lines.append(f"  1 measurement, {self.number_per_run} runs , {threads}")
        else:
            lines.append(f"  Median: {self.median * scale:.2f} {unit}")
            if len(self.times) >= 4:
                lines.append(f"  IQR:    {self.iqr * scale:.2f} {unit} "
                             f"({self._quantile(0.25) * scale:.2f} to "
                             f"{self._quantile(0.75) * scale:.2f})")
            lines.append(f"  {len(self.raw_times)} measurements, {self.number_per_run} runs "
                         f"per measurement, {threads}")
        if self.has_warnings:
            lines.append(f"  WARNING: Interquartile range is {100 * self.iqr / self.median:.1f}%"
                         f" of the median measurement.")
        return "\n".join(lines)


class TaskSpec:
    def __init__(self, stmt, setup, global_setup, label, sub_label, description, env,
                 num_threads):
        self.stmt, self.setup, self.global_setup = stmt, setup, global_setup
        self.label, self.sub_label, self.description = label, sub_label, description
        self.env, self.num_threads = env, num_threads


class Timer:
    """Times `stmt` (source or a callable) after running `setup` once, in `globals`."""

    def __init__(self, stmt="pass", setup="pass", global_setup="", timer=timer, globals=None,
                 label=None, sub_label=None, description=None, env=None, num_threads=1,
                 language=Language.PYTHON):
        if str(getattr(language, "name", language)).lower() not in ("python", "language.python"):
            raise NotImplementedError("benchmark.Timer: only Python statements can be timed "
                                      "here (language=Language.PYTHON)")
        self._spec = TaskSpec(stmt, setup, global_setup, label, sub_label, description, env,
                              int(num_threads))
        self._timer = timeit.Timer(stmt, setup=f"{global_setup}\n{setup}" if global_setup
                                   else setup, timer=timer, globals=dict(globals or {}))

    def _blocks(self, number, count):
        with threadpool_limits(limits=self._spec.num_threads):
            return [self._timer.timeit(number) for _ in range(count)]

    def timeit(self, number=1000000):
        """One block of `number` calls."""
        self._blocks(1, 1)                                   # warm-up, as PyTorch
        return Measurement(number, self._blocks(number, 1), self._spec)

    def _block_size(self, min_run_time):
        """Calls per block, as PyTorch chooses them: ten times more until the timer's own
        overhead is under 1e-4 of a block and a block takes a thousandth of the budget (or
        the whole budget)."""
        overhead = statistics.median(self._blocks(0, 5))
        number = 1
        while True:
            taken = self._blocks(number, 1)[0]
            if (overhead <= 1e-4 * taken and taken >= min_run_time / 1000) or \
                    taken > min_run_time or number * 10 > 2147483647:
                return number
            number *= 10

    def blocked_autorange(self, callback=None, min_run_time=0.2):
        """Blocks of equal size until `min_run_time` seconds have been spent timing."""
        number = self._block_size(min_run_time)
        raw, spent = [], 0.0
        while spent < min_run_time or not raw:
            t = self._blocks(number, 1)[0]
            raw.append(t)
            spent += t
            if callback is not None:
                callback(number, t)
        return Measurement(number, raw, self._spec)

    def adaptive_autorange(self, threshold=0.1, *, min_run_time=0.01, max_run_time=10.0,
                           callback=None):
        """Blocks until the spread (IQR / median) falls under `threshold`, after at least
        `min_run_time` and at most `max_run_time` seconds."""
        number = self._block_size(0.05)
        raw, spent = [], 0.0
        while True:
            t = self._blocks(number, 1)[0]
            raw.append(t)
            spent += t
            if callback is not None:
                callback(number, t)
            m = Measurement(number, raw, self._spec)
            if spent >= max_run_time or (spent >= min_run_time and len(raw) > 3 and
                                         m.meets_confidence(threshold)):
                return m


_UNITS = (("ns", 1e-9), ("us", 1e-6), ("ms", 1e-3), ("s", 1.0))
_UNIT_NAMES = {"ns": "nanoseconds", "us": "microseconds", "ms": "milliseconds", "s": "seconds"}


def _unit(seconds):
    """The largest unit the time is at least one of."""
    name, size = _UNITS[0]
    for n, s in _UNITS:
        if seconds >= s:
            name, size = n, s
    return name, 1.0 / size


class Compare:
    """A table per label: rows by (threads, sub_label), columns by description, medians in
    one unit."""

    def __init__(self, results):
        self._results = list(results)
        self._trim = False

    def extend_results(self, results):
        self._results.extend(results)

    def trim_significant_figures(self):
        self._trim = True

    def colorize(self, rowwise=False):
        """Kept for PyTorch's API; the table is plain text (no colours here)."""

    def highlight_warnings(self):
        """Kept for PyTorch's API: measurements with a wide spread are marked with (!)."""

    def __str__(self):
        groups = defaultdict(list)
        for m in self._results:
            groups[m.task_spec.label].append(m)
        return "\n".join(self._table(label, ms) for label, ms in groups.items())

    def _table(self, label, results):
        columns = list(dict.fromkeys(m.task_spec.description or "" for m in results))
        rows = defaultdict(dict)
        for m in results:
            key = (m.task_spec.num_threads, m.task_spec.sub_label or m.task_spec.stmt)
            rows[key][m.task_spec.description or ""] = m
        unit, scale = _unit(min(m.median for m in results))

        def cell(m):
            if m is None:
                return ""
            value = m.median * scale
            digits = m.significant_figures if self._trim else 4
            text = f"{value:.{max(0, digits - len(str(int(value))))}f}" if value else "0"
            return text + (" (!)" if m.has_warnings else "")

        names = {k: str(k[1]) for k in rows}
        name_width = max([len(n) for n in names.values()] + [9])
        widths = [max([len(c)] + [len(cell(rows[k].get(c))) for k in rows]) for c in columns]
        lines = [f"[{'-' * 2} {label or ''} {'-' * 2}]",
                 " " * name_width + "  |  " + "  |  ".join(c.rjust(w) for c, w in
                                                       zip(columns, widths))]
        threads = None
        for key in rows:
            if key[0] != threads:
                threads = key[0]
                lines.append(f"{threads} threads: " + "-" * (sum(widths) + 5 * len(widths)))
            lines.append(names[key].rjust(name_width) + "  |  " + "  |  ".join(
                cell(rows[key].get(c)).rjust(w) for c, w in zip(columns, widths)))
        lines += ["", f"Times are in {_UNIT_NAMES[unit]} ({unit}).", ""]
        return textwrap.dedent("\n".join(lines))

    def print(self):
        print(str(self))
