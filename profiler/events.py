"""What a profile holds once recorded: `FunctionEvent`s, their averages and the table, and the
Chrome-trace JSON (PyTorch's names: `events()`, `key_averages()`, `table()`).

Times are microseconds (floats), memory bytes, as in PyTorch. A span's self time is its time
minus that of the spans nested directly inside it on the same thread; its self memory likewise.
"""
import gzip
import json
import math
import os
import socket
import threading
import warnings

from ..autograd.function import backward_name
from . import recorder

MEMORY_EVENT_NAME = "[memory]"     # PyTorch's name for memory changed outside every span


class FunctionEvent:
    """One recorded span."""

    __slots__ = ("id", "name", "cat", "thread", "start_us", "end_us", "args",
                 "self_cpu_time_total", "cpu_parent", "cpu_memory_usage",
                 "self_cpu_memory_usage", "flops")

    def __init__(self, id, name, cat, thread, start_us, end_us, args):
        self.id, self.name, self.cat, self.thread = id, name, cat, thread
        self.start_us, self.end_us, self.args = start_us, end_us, args or {}
        self.self_cpu_time_total = end_us - start_us
        self.cpu_parent = None
        self.cpu_memory_usage = self.self_cpu_memory_usage = 0   # bytes, when profiled
        self.flops = 0

    key = property(lambda self: self.name)
    count = property(lambda self: 1)
    cpu_time_total = property(lambda self: self.end_us - self.start_us)
    stack = property(lambda self: self.args.get("stack", []))

    @property
    def input_shapes(self):
        """The shape of each input ([] for an argument that is not a tensor), if recorded."""
        shapes = self.args.get("Input Dims")
        return None if shapes is None else [list(s) for s in shapes]
    def __repr__(self):
        return (f"<FunctionEvent {self.name} ({self.cat}) thread={self.thread} "
                f"start={self.start_us:.1f}us dur={self.cpu_time_total:.1f}us>")


def build_events(raw, threads, perf_base_ns, held=None, with_flops=False):
    """FunctionEvents from the recorder's spans (start times relative to `perf_base_ns`,
    thread idents mapped to native ids through `threads`), ordered by start, with each one's
    self time (and memory) and parent found per thread. `held`: the bytes held at the window's
    start and end when memory was measured (each span's are in its args); what changed while
    no span was open becomes `[memory]` events."""
    native = {ident: tid for ident, (tid, _) in threads.items()}
    names = {}         # the op timers keep a Function class: "Linear", "LinearBackward0"

    def name_of(name, cat):
        if isinstance(name, str):
            return name
        key = (name, cat)
        if key not in names:
            names[key] = backward_name(name) if cat == "backward" else name.__name__
        return names[key]
    events = [FunctionEvent(i, name_of(name, cat), cat, native.get(ident, ident),
                            (start - perf_base_ns) / 1e3, (end - perf_base_ns) / 1e3, args)
              for i, (name, cat, ident, start, end, args) in enumerate(raw)]
    spans_held = {}                              # event -> bytes held at its start and end
    for e in events:
        if e.args:                               # the recorder's private keys leave the args
            e.flops = e.args.pop(recorder.FLOPS, 0)
            at = e.args.pop(recorder.HELD, None)
            if at is not None:
                spans_held[e] = at
                e.cpu_memory_usage = e.self_cpu_memory_usage = at[1] - at[0]
    events.sort(key=lambda e: (e.start_us, -e.end_us))
    open_ = {}                                   # thread -> stack of enclosing spans
    for e in events:
        stack = open_.setdefault(e.thread, [])
        while stack and stack[-1].end_us <= e.start_us:
            stack.pop()
        if stack and e.end_us <= stack[-1].end_us:
            parent = stack[-1]
            e.cpu_parent = parent
            parent.self_cpu_time_total -= e.cpu_time_total
            parent.self_cpu_memory_usage -= e.cpu_memory_usage
        stack.append(e)
    if held is not None:
        events += _memory_outside_spans(events, spans_held, held, len(raw))
        events.sort(key=lambda e: (e.start_us, -e.end_us))
    return EventList(events, profile_memory=held is not None, with_flops=with_flops)


def _memory_outside_spans(events, spans_held, window_held, first_id):
    """`[memory]` events (no duration, on the profiling thread) for the memory allocated less
    freed while no span was open on any thread: one per such gap where it changed, at the
    gap's start. PyTorch has one per allocation or free outside every op; a profile here sees
    the memory held at span boundaries only."""
    thread = threading.get_native_id()           # build_events runs where the window ends
    out = []

    def changed(at_us, change):
        if change:
            e = FunctionEvent(first_id + len(out), MEMORY_EVENT_NAME, "memory", thread,
                              at_us, at_us, None)
            e.cpu_memory_usage = e.self_cpu_memory_usage = change
            out.append(e)
    busy_until, last = 0.0, window_held[0]       # the end of the spans so far, bytes held then
    for e in events:                             # by start
        at = spans_held.get(e)
        if at is None:                           # begun before the window: not measured
            continue
        if e.start_us >= busy_until:
            changed(busy_until, at[0] - last)
        if e.end_us > busy_until:
            busy_until, last = e.end_us, at[1]
    changed(busy_until, window_held[1] - last)
    return out


class FunctionEventAvg:
    """The spans sharing one key (name, and shapes or stack when grouped by them)."""

    def __init__(self, key, input_shapes=None, stack=None):
        self.key, self.input_shapes, self.stack = key, input_shapes, stack
        self.count = 0
        self.cpu_time_total = 0.0
        self.self_cpu_time_total = 0.0
        self.cpu_memory_usage = self.self_cpu_memory_usage = 0
        self.flops = 0
        self.cpu_parent = None      # the first span's, as PyTorch's (top_level_events_only)

    def add(self, event):
        if not self.count:
            self.cpu_parent = getattr(event, "cpu_parent", None)
        self.count += event.count
        self.cpu_time_total += event.cpu_time_total
        self.self_cpu_time_total += event.self_cpu_time_total
        self.cpu_memory_usage += event.cpu_memory_usage
        self.self_cpu_memory_usage += event.self_cpu_memory_usage
        self.flops += event.flops
        return self

    @property
    def cpu_time(self):
        return self.cpu_time_total / max(self.count, 1)

    def __repr__(self):
        return (f"<FunctionEventAvg key={self.key} count={self.count} "
                f"cpu_time_total={self.cpu_time_total:.1f}us "
                f"self_cpu_time_total={self.self_cpu_time_total:.1f}us>")


_SORT_KEYS = {"cpu_time": "cpu_time", "cpu_time_total": "cpu_time_total",
              "self_cpu_time_total": "self_cpu_time_total", "count": "count",
              "cpu_memory_usage": "cpu_memory_usage",
              "self_cpu_memory_usage": "self_cpu_memory_usage", "flops": "flops"}
# PyTorch's other columns: device time and memory, which this profiler does not record
_UNRECORDED = {f"{self}{kind}_{what}" for self in ("", "self_")
               for kind in ("cuda", "xpu", "device") for what in ("time_total",)} | {
    "cuda_time", "xpu_time", "device_time"} | {
    f"{self}{kind}_memory_usage" for self in ("", "self_") for kind in ("cuda", "device")}


class EventList(list):
    """A list of events (or of their averages) that can print itself as a table; it knows
    whether memory and FLOPs were profiled (their columns are shown then), as PyTorch's."""

    def __init__(self, events=(), profile_memory=False, with_flops=False):
        super().__init__(events)
        self.profile_memory, self.with_flops = profile_memory, with_flops

    def key_averages(self, group_by_input_shapes=False, group_by_stack_n=0):
        """One `FunctionEventAvg` per name (and per input shapes / top `group_by_stack_n`
        stack frames when asked), in order of first appearance. (PyTorch's EventList names
        the flag in the plural, its profile's `key_averages` in the singular.)"""
        groups = {}
        for e in self:
            # every step's span averages into one row, as PyTorch's ProfilerStep*
            name = "ProfilerStep*" if e.name.startswith("ProfilerStep#") else e.name
            key = (name,)
            shapes = stack = None
            if group_by_input_shapes:
                shapes = e.input_shapes
                key += (repr(shapes),)
            if group_by_stack_n:
                stack = tuple(e.stack[:group_by_stack_n])
                key += stack
            avg = groups.get(key)
            if avg is None:
                avg = groups[key] = FunctionEventAvg(name, shapes, stack)
            avg.add(e)
        return EventList(groups.values(), self.profile_memory, self.with_flops)

    def total_average(self):
        total = FunctionEventAvg("Total")
        for e in self:
            total.add(e)
        return total

    def table(self, sort_by=None, row_limit=100, max_name_column_width=55, header=None,
              top_level_events_only=False):
        """PyTorch's profiler table: name, self and total CPU time (and % of the summed self
        time), average, memory and self memory (when profiled), number of calls, input shapes
        (when recorded), FLOPs (when estimated); sorted descending by `sort_by` (cpu_time,
        cpu_time_total, self_cpu_time_total, cpu_memory_usage, self_cpu_memory_usage, flops
        or count), at most `row_limit` rows (-1: all)."""
        rows = list(self)
        if top_level_events_only:
            rows = [e for e in rows if getattr(e, "cpu_parent", None) is None]
        if sort_by in _UNRECORDED:
            # device time and memory are zero here, as in PyTorch on a CPU-only run: the
            # rows keep their order (a GPU run is told that its device time is not recorded)
            from ..cuda import is_available
            if is_available():
                warnings.warn(f"sort_by={sort_by!r}: Phalanx's profiler records host time "
                              f"only; the rows keep their order", stacklevel=2)
        elif sort_by is not None:
            if sort_by not in _SORT_KEYS:
                raise ValueError(f"sort_by={sort_by!r} is not a column; use one of "
                                 f"{sorted(set(_SORT_KEYS) | _UNRECORDED)}")
            rows.sort(key=lambda e: getattr(e, _SORT_KEYS[sort_by]), reverse=True)
        if row_limit is not None and row_limit >= 0:
            rows = rows[:row_limit]
        return format_table(rows, self_total=sum(e.self_cpu_time_total for e in self),
                            name_width=max_name_column_width, header=header, events=list(self),
                            profile_memory=self.profile_memory, with_flops=self.with_flops,
                            top_level_only=top_level_events_only)

    def export_chrome_trace(self, path):
        raise NotImplementedError("export_chrome_trace is a method of the profile "
                                  "(prof.export_chrome_trace(path)), not of its event list")


def format_time(us):
    """PyTorch's format: 812.000us, 1.234ms, 2.500s."""
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


def format_memory(nbytes):
    """PyTorch's format: 1.95 MB, 512.00 KB, -512 B (powers of 1024)."""
    for unit, size in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024)):
        if abs(nbytes) >= size:
            return f"{nbytes * 1.0 / size:.2f} {unit}"
    return f"{nbytes} B"


def flops_unit(flops):
    """(scale, unit) of the FLOPs column, from its smallest positive count, as PyTorch's."""
    units = ["FLOPs", "KFLOPs", "MFLOPs", "GFLOPs", "TFLOPs", "PFLOPs"]
    log = max(0, min(math.log10(flops) / 3, float(len(units) - 1)))
    return pow(10, math.floor(log) * -3.0), units[int(log)]


def format_table(rows, self_total, name_width=55, header=None, events=None,
                 profile_memory=False, with_flops=False, top_level_only=False):
    """PyTorch's table layout: columns right-aligned (the source location left), each
    followed by two spaces, widths from every event of the list (`events`: all of them, not
    only the rows shown): names and input shapes 4 wider than the longest. The FLOPs column
    (when some event has FLOPs) comes before the source location: PyTorch names it after the
    source location but fills it before."""
    events = rows if events is None else events
    shapes = any(getattr(e, "input_shapes", None) for e in events)
    stacks = any(getattr(e, "stack", None) for e in events)
    name_w = min(max([len(e.key) for e in events] + [0]) + 4, name_width)
    cols = ["Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg"] + \
        (["CPU Mem", "Self CPU Mem"] if profile_memory else []) + ["# of Calls"]
    widths, aligns, headers = [name_w] + [12] * len(cols), [">"] * (len(cols) + 1), \
        ["Name"] + cols
    if shapes:
        shapes_w = min(max(len(str(e.input_shapes or [])) for e in events) + 4, 80)
        widths, aligns, headers = widths + [shapes_w], aligns + [">"], headers + ["Input Shapes"]
    counted = [e.flops for e in events if e.flops > 0] if with_flops else []
    if counted:
        flops_scale, unit = flops_unit(min(counted))
        widths, aligns, headers = widths + [12], aligns + [">"], headers + [f"Total {unit}"]
    if stacks:
        src_w = min(max(len(f) for e in events for f in (e.stack or [""])) + 4, 75)
        widths, aligns = widths + [src_w], aligns + ["<"]
        headers = headers + ["Source Location"]

    def line(cells):
        return "".join(f"{c:{a}{w}}  " for c, a, w in zip(cells, aligns, widths))

    def trim_path(path, width):
        if len(path) > width:
            path = path[len(path) - width:]
            path = "..." + path[3:] if len(path) > 3 else path
        return path

    rule = "".join("-" * w + "  " for w in widths)
    lines = []
    if header:
        lines += ["=" * (len(rule) - 2), header]
    if top_level_only:
        lines += ["=" * (len(rule) - 2), "This report only display top-level ops statistics"]
    lines += [rule, line(headers), rule]
    total = self_total or 1.0
    for r in rows:
        name = r.key if len(r.key) < name_width - 3 else r.key[:name_width - 3] + "..."
        cells = [name, f"{100 * r.self_cpu_time_total / total:.2f}%",
                 format_time(r.self_cpu_time_total),
                 f"{100 * r.cpu_time_total / total:.2f}%", format_time(r.cpu_time_total),
                 format_time(r.cpu_time_total / max(r.count, 1))]
        if profile_memory:
            cells += [format_memory(r.cpu_memory_usage), format_memory(r.self_cpu_memory_usage)]
        cells.append(str(r.count))
        if shapes:
            cells.append(str(r.input_shapes or [])[:widths[len(cols) + 1]])
        if counted:
            cells.append(f"{r.flops * flops_scale:8.3f}" if r.flops > 0 else "--")
        stack = list(getattr(r, "stack", None) or ()) if stacks else []
        if stacks:
            cells.append(trim_path(stack[0], src_w) if stack else "")
        lines.append(line(cells))
        if stacks:
            for frame in stack[1:]:
                lines.append(line([""] * (len(cells) - 1) + [trim_path(frame, src_w)]))
            lines.append(line([""] * len(cells)))
    lines += [rule, f"Self CPU time total: {format_time(self_total)}", ""]
    return "\n".join(lines)


def chrome_trace(events, wall_base_us, pid, process_name, thread_names, thread_suffix="",
                 other=None):
    """The Chrome-trace JSON object (Perfetto and chrome://tracing read it): one complete
    ("X") event per span, timestamps in microseconds since the epoch, metadata naming the
    process and each thread."""
    out = [{"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
            "args": {"name": process_name}},
           {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
            "args": {"sort_index": pid if isinstance(pid, int) else 0}}]
    threads = sorted({e.thread for e in events})
    for i, tid in enumerate(threads):
        out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                    "args": {"name": thread_names.get(tid, f"thread {tid}") + thread_suffix}})
        out.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
                    "args": {"sort_index": i}})
    flow_base = pid * 10**9 if isinstance(pid, int) else 0    # flow ids unique per rank
    for e in events:
        ts = round(wall_base_us + e.start_us, 3)
        if e.cat == "memory":                    # an instant, as PyTorch's memory events
            out.append({"ph": "i", "cat": "cpu_instant_event", "s": "t", "name": e.name,
                        "pid": pid, "tid": e.thread, "ts": ts,
                        "args": {"Bytes": e.cpu_memory_usage}})
            continue
        out.append({"ph": "X", "name": e.name, "cat": e.cat, "pid": pid, "tid": e.thread,
                    "ts": ts, "dur": round(e.cpu_time_total, 3), "args": e.args})
        for key, phase in (("flow_out", "s"), ("flow_in", "f")):   # launch -> where it ran
            if key in e.args:
                # bound to the span of the same pid, tid, ts and cat (chrome://tracing), or
                # to the span enclosing it (Perfetto)
                flow = {"ph": phase, "id": flow_base + e.args[key], "name": e.name.split(".")[0],
                        "cat": e.cat, "pid": pid, "tid": e.thread, "ts": ts}
                if phase == "f":
                    flow["bp"] = "e"
                out.append(flow)
    meta = {"hostname": socket.gethostname(), "os_pid": os.getpid()}
    meta.update(other or {})
    return {"traceEvents": out, "displayTimeUnit": "ms", "otherData": meta}


def write_json(obj, path):
    """Write `obj` as JSON to `path` (gzip-compressed when it ends in .gz), atomically."""
    tmp = f"{path}.{os.getpid()}.tmp"
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(tmp, "wt") as f:
        json.dump(obj, f)
    os.replace(tmp, path)
