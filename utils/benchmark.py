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
import dataclasses
import importlib
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


_MAX_SIGNIFICANT_FIGURES = 4
_MIN_CONFIDENCE_INTERVAL = 25e-9       # 25 ns: below this, a clock cannot tell
_IQR_WARN_THRESHOLD = 0.1
_IQR_GROSS_WARN_THRESHOLD = 0.25


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What was timed: the statement, its setup and the labels it is reported under."""
    stmt: str
    setup: str
    global_setup: str = ""
    label: str = None
    sub_label: str = None
    description: str = None
    env: str = None
    num_threads: int = 1

    @property
    def title(self):
        sub = f": {self.sub_label}" if self.sub_label else ""
        if self.label is not None:
            return self.label + sub
        if "\n" not in self.stmt:
            return self.stmt + sub
        return f"stmt:{f' ({self.sub_label})' if self.sub_label else ''}\n" + \
            textwrap.indent(self.stmt, "  ")

    def setup_str(self):
        if not self.setup or self.setup == "pass":
            return ""
        if "\n" in self.setup:
            return "setup:\n" + textwrap.indent(self.setup, "  ")
        return f"setup: {self.setup}"

    def summarize(self):
        sections = [s for s in (self.title, self.description or "", self.setup_str()) if s]
        return "\n".join(f"{s}\n" if "\n" in s else s for s in sections)


class Measurement:
    """The runs of one statement: `raw_times` are seconds per block of `number_per_run`
    calls; `times` are seconds per call. The task's fields (`label`, `stmt`, ...) read
    through."""

    def __init__(self, number_per_run, raw_times, task_spec, metadata=None):
        self.number_per_run, self.raw_times = number_per_run, list(raw_times)
        self.task_spec, self.metadata = task_spec, metadata

    def __getattr__(self, name):
        if name in _TASK_FIELDS and "task_spec" in self.__dict__:
            return getattr(self.task_spec, name)
        raise AttributeError(f"'Measurement' object has no attribute {name!r}")

    @property
    def times(self):
        return [t / self.number_per_run for t in self.raw_times]

    @property
    def mean(self):
        return statistics.fmean(self.times)

    @property
    def median(self):
        return self._quantile(0.5)

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
        """Digits the measurement supports: the median over a 90% confidence interval of the
        middle half of the times (PyTorch's estimate), 1 to 4."""
        ordered = sorted(self.times)
        middle = ordered[len(ordered) // 4:math.ceil(3 * len(ordered) / 4)]
        spread = statistics.pstdev(middle) if len(middle) > 1 else 0.0
        interval = max(1.645 * spread / math.sqrt(len(middle)), _MIN_CONFIDENCE_INTERVAL)
        digits = math.floor(math.log10(self.median / interval))
        return min(max(digits, 1), _MAX_SIGNIFICANT_FIGURES)

    @property
    def _warnings(self):
        if len(self.times) < 2 or self.meets_confidence(_IQR_WARN_THRESHOLD):
            return []
        why = ("This suggests significant environmental influence."
               if not self.meets_confidence(_IQR_GROSS_WARN_THRESHOLD)
               else "This could indicate system fluctuation.")
        return [f"  WARNING: Interquartile range is {100 * self.iqr / self.median:.1f}% of the "
                f"median measurement.\n           {why}"]

    @property
    def has_warnings(self):
        return bool(self._warnings)

    def meets_confidence(self, threshold=_IQR_WARN_THRESHOLD):
        return self.iqr / self.median < threshold

    @property
    def title(self):
        return self.task_spec.title

    @property
    def env(self):
        return "Unspecified env" if self.task_spec.env is None else self.task_spec.env

    @property
    def as_row_name(self):
        return self.task_spec.sub_label or self.task_spec.stmt or "[Unknown]"

    @staticmethod
    def merge(measurements):
        """One measurement per task (times per call, `number_per_run` 1) from replicates."""
        grouped = defaultdict(list)
        for m in measurements:
            grouped[m.task_spec].extend(m.times)
        return [Measurement(1, times, spec) for spec, times in grouped.items()]

    def __repr__(self):
        n = len(self.times)
        unit, scale = _unit(self.median)
        spec = self.task_spec
        lines = [f"<phalanx.utils.benchmark.Measurement object at {id(self):#x}>",
                 spec.summarize(),
                 f"  {'Median: ' if n > 1 else ''}{self.median * scale:.2f} {unit}"]
        if n >= 4:
            lines.append(f"  IQR:    {self.iqr * scale:.2f} {unit} "
                         f"({self._quantile(0.25) * scale:.2f} to "
                         f"{self._quantile(0.75) * scale:.2f})")
        threads = f"{spec.num_threads} thread{'s' * (spec.num_threads > 1)}"
        lines.append(f"  {n} measurement{'s' * (n > 1)}, {self.number_per_run} runs "
                     f"{'per measurement,' if n > 1 else ','} {threads}")   # PyTorch's words
        lines += self._warnings
        return "\n".join(lines).strip()


_TASK_FIELDS = {f.name for f in dataclasses.fields(TaskSpec)}


def _dedent(source):
    """Source written indented inside a triple-quoted string, as PyTorch reads it."""
    source = textwrap.dedent(source)
    return (source[1:] if source.startswith("\n") else source).rstrip()


class Timer:
    """Times `stmt` (source or a callable) after running `setup` once, in `globals` (where
    `torch` is Phalanx unless given)."""

    def __init__(self, stmt="pass", setup="pass", global_setup="", timer=timer, globals=None,
                 label=None, sub_label=None, description=None, env=None, num_threads=1,
                 language=Language.PYTHON):
        if str(getattr(language, "name", language)).lower() not in ("python", "language.python"):
            raise NotImplementedError("benchmark.Timer: only Python statements can be timed "
                                      "here (language=Language.PYTHON)")
        stmt, setup, global_setup = (_dedent(s) if isinstance(s, str) else s
                                     for s in (stmt, setup, global_setup))
        self._spec = TaskSpec(stmt, setup, global_setup, label, sub_label, description, env,
                              int(num_threads))
        namespace = dict(globals or {})
        # PyTorch's timers see `torch`; here that name is Phalanx (what a port imports as it)
        namespace.setdefault("torch", importlib.import_module("phalanx"))
        self._timer = timeit.Timer(stmt, setup=f"{global_setup}\n{setup}" if global_setup
                                   else setup, timer=timer, globals=namespace)

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
_UNIT_NAMES = {"ns": "nanoseconds", "us": "microseconds", "ms": "milliseconds",
               "s": "seconds"}


def _unit(seconds):
    """The largest unit the time is at least one of."""
    name, size = _UNITS[0]
    for n, s in _UNITS:
        if seconds >= s:
            name, size = n, s
    return name, 1.0 / size


_COLOURS = {"best": "\033[92m\033[1m", "good": "\033[34m\033[1m",
            "bad": "\033[2m\033[91m", "very bad": "\033[31m\033[1m"}
_END = "\033[0m\033[0m"


def _colour(text, value, best):
    """PyTorch's colour scale: within 1% (or 100 ns) of the best, within 10%, 2x, 5x."""
    if value <= best * 1.01 or value <= best + 100e-9:
        return _COLOURS["best"] + text + _END
    if value <= best * 1.1:
        return _COLOURS["good"] + text + _END
    if value >= best * 5:
        return _COLOURS["very bad"] + text + _END
    if value >= best * 2:
        return _COLOURS["bad"] + text + _END
    return text


def _trim_sigfig(x, n):
    scale = 10.0 ** (math.ceil(math.log10(abs(x))) - n)
    return round(x / scale) * scale


class Compare:
    """Measurements laid out as PyTorch lays them out: a table per label, a row per
    (threads, env, sub_label or statement), a column per description, medians in one unit.
    `trim_significant_figures()`, `colorize()` and `highlight_warnings()` change the cells."""

    def __init__(self, results):
        self._results = []
        self.extend_results(results)
        self._trim = False
        self._colorize = None              # None, "rowwise" or "columnwise"
        self._highlight = False

    def extend_results(self, results):
        for m in results:
            if not isinstance(m, Measurement):
                raise ValueError(f"Expected an instance of `Measurement`, got {type(m)} "
                                 f"instead.")
        self._results.extend(results)

    def trim_significant_figures(self):
        self._trim = True

    def colorize(self, rowwise=False):
        """Colour each cell against the best of its column (or of its row): ANSI colours."""
        self._colorize = "rowwise" if rowwise else "columnwise"

    def highlight_warnings(self):
        """Mark cells whose spread is wide with (! IQR/median %)."""
        self._highlight = True

    def __str__(self):
        groups = defaultdict(list)
        for m in Measurement.merge(self._results):
            groups[m.task_spec.label].append(m)
        return "\n".join(self._table(ms) for ms in groups.values())

    def print(self):
        print(str(self))

    def _table(self, results):
        unit, scale = _unit(min(m.median for m in results))
        row_keys = list(dict.fromkeys((m.num_threads, m.env, m.as_row_name) for m in results))
        row_keys.sort(key=lambda k: k[:2])           # stable: statements keep their order
        columns = list(dict.fromkeys(m.description for m in results))
        grid = {(r, c): None for r in row_keys for c in columns}
        for m in results:
            grid[(m.num_threads, m.env, m.as_row_name), m.description] = m
        envs = {m.env for m in results}
        show_env, env_width = len(envs) > 1, max(len(e) for e in envs)
        formats = {c: self._number_format([grid[r, c] for r in row_keys], scale)
                   for c in columns}

        body, previous = [], (None, None)
        for key in row_keys:
            threads, env, name = key
            if threads != previous[0]:
                previous = (threads, None)
            env_text = f"({env})" if show_env and env != previous[1] else ""
            previous = (threads, env)
            cells = [formats[c](grid[key, c]) for c in columns]
            body.append((key, ["  " + env_text.ljust(env_width + 4 if show_env else 4) + name]
                         + cells))
        header = [""] + [c or "" for c in columns]
        widths = [max(len(row[i]) for row in [header] + [cells for _, cells in body])
                  for i in range(len(header))]
        top = "  |  ".join(h.center(w) for h, w in zip(header, widths))
        lines, threads = [top], None
        for key, cells in body:
            if key[0] != threads:
                threads = key[0]
                lines.append(f"{threads} threads: ".ljust(len(top), "-"))
            lines.append("  |  ".join([cells[0].ljust(widths[0])] + [
                self._paint(cell.center(w), grid[key, c], key, c, grid, row_keys, columns)
                for cell, w, c in zip(cells[1:], widths[1:], columns)]))
        label = results[0].label
        warn = self._highlight and any(m.has_warnings for m in results)
        return (f"[{(' ' + (label or '') + ' ').center(len(top) - 2, '-')}]\n"
                + "\n".join(lines) + f"\n\nTimes are in {_UNIT_NAMES[unit]} ({unit}).\n"
                + ("(! XX%) Measurement has high variance, where XX is the IQR / median * "
                   "100.\n" if warn else ""))

    def _number_format(self, column, scale):
        """The cell text of a column's measurements: one width and one count of decimals."""
        present = [m for m in column if m is not None]
        leading = [math.ceil(math.log10(m.median * scale)) for m in present]
        decimals = min(max(m.significant_figures - d, 0) for m, d in zip(present, leading)) \
            if self._trim else 1
        width = max(leading) + decimals + (1 if decimals else 0)
        highlight = self._highlight and any(m.has_warnings for m in present)

        def cell(m):
            if m is None:
                return " " * len(cell(present[0]))
            value = m.median * scale
            if self._trim:
                value = _trim_sigfig(value, m.significant_figures)
            spread = f" (! {100 * m.iqr / m.median:.0f}%)" if highlight and m.has_warnings \
                else ""
            return f"{value:>{width}.{decimals}f}" + spread.rjust(7 if highlight else 0)
        return cell

    def _paint(self, text, m, key, column, grid, row_keys, columns):
        if self._colorize is None or m is None:
            return text
        if self._colorize == "rowwise":
            best = min(grid[key, c].median for c in columns if grid[key, c] is not None)
        else:                                        # within the row's thread group
            best = min(grid[r, column].median for r in row_keys
                       if r[0] == key[0] and grid[r, column] is not None)
        return _colour(text, m.median, best)
