"""Log routing: workers' stdout/stderr pipes → `[rank N]:`-prefixed lines on the console, plus
per-rank files when teeing. One thread multiplexes every pipe with `selectors`.

A carriage return ends a line too. On a terminal it is passed on as one: a progress bar (tqdm
redraws itself with `\r`) shows live, prefixed, on one console line. When the console is not a
terminal (a log file, CI) redraws are thinned out instead: the first state of a bar is written
at once, then at most one state per PHALANX_PROGRESS_INTERVAL seconds (default 5; 0 keeps every
redraw), each as a line of its own, and the bar's final line always, so a log holds a readable
history rather than thousands of `\r`-separated states. Tee files get every byte as written."""
import os
import re
import selectors
import sys
import threading
import time
from dataclasses import dataclass

PROGRESS_INTERVAL_ENV = "PHALANX_PROGRESS_INTERVAL"
DEFAULT_PROGRESS_INTERVAL = 5.0


@dataclass
class LogSource:
    fd: int                        # read end of a worker's pipe (the router closes it at EOF)
    prefix: bytes                  # b"[rank 3]: "
    console: object                # a binary stream (sys.stdout.buffer), or None to hide
    tee: object = None             # a binary file the lines are copied to, or None


class _Progress:
    """A source's redraws on a console that is not a terminal: the latest one not yet shown,
    and when one was last shown."""

    __slots__ = ("interval", "pending", "shown_at")

    def __init__(self, interval):
        self.interval, self.pending, self.shown_at = interval, None, None

    def due(self, now):
        return self.shown_at is None or now - self.shown_at >= self.interval

    def redraw(self, text, now):
        """A new state of the bar: the line to write now, or None (kept as pending)."""
        if self.due(now):
            self.pending, self.shown_at = None, now
            return text + b"\n"
        self.pending = text
        return None

    def line(self):
        """A complete line (the bar's final state, or other output): pending states are
        superseded, and the next bar starts afresh."""
        self.pending, self.shown_at = None, None

    def flush(self, now):
        """The pending state as a line, once it is due (or at EOF, `now=None`)."""
        if self.pending is None or (now is not None and not self.due(now)):
            return None
        text, self.pending, self.shown_at = self.pending, None, now
        return text + b"\n"


class LogRouter:
    """Copies each source line by line until every pipe reaches EOF."""

    def __init__(self, sources, progress_interval=None):
        if progress_interval is None:
            progress_interval = progress_interval_from_env()
        self._selector = selectors.DefaultSelector()
        self._partial = {}
        self._progress = {}            # fd -> _Progress, for consoles that are not terminals
        for source in sources:
            os.set_blocking(source.fd, False)
            self._selector.register(source.fd, selectors.EVENT_READ, source)
            self._partial[source.fd] = b""
            if source.console is not None and progress_interval > 0 \
                    and not is_terminal(source.console):
                self._progress[source.fd] = _Progress(progress_interval)
        self._thread = threading.Thread(target=self._run, name="phalanx-logs", daemon=True)
        self._thread.start()

    def join(self, timeout=None):
        """Wait until every pipe is drained (workers exited), then close the tee files."""
        self._thread.join(timeout)

    def _run(self):
        tees = set()
        try:
            while self._selector.get_map():
                for key, _ in self._selector.select(timeout=self._next_due()):
                    self._read(key.data)
                    if key.data.tee is not None:
                        tees.add(key.data.tee)
                self._flush_due()
        finally:
            for f in tees:
                f.close()

    def _next_due(self):
        """Seconds until the earliest pending progress state is due (at most 1)."""
        now, wait = time.monotonic(), 1.0
        for p in self._progress.values():
            if p.pending is not None:
                wait = min(wait, max(0.0, p.shown_at + p.interval - now))
        return wait

    def _flush_due(self):
        now = time.monotonic()
        for key in list(self._selector.get_map().values()):
            progress = self._progress.get(key.fd)
            if progress is not None:
                line = progress.flush(now)
                if line is not None:
                    _write(key.data.console, key.data.prefix + line)

    def _read(self, source):
        try:
            chunk = os.read(source.fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        data = self._partial[source.fd] + chunk
        eof = not chunk
        if eof:                                    # flush what is left and stop watching
            self._selector.unregister(source.fd)
            os.close(source.fd)
            lines, self._partial[source.fd] = split_lines(data + b"\n") if data else ([], b"")
        else:
            lines, self._partial[source.fd] = split_lines(data)
        progress = self._progress.get(source.fd)
        shown = lines if progress is None else _thin(progress, lines, eof)
        if source.console is not None and shown:
            _write(source.console, b"".join(source.prefix + line for line in shown))
        if source.tee is not None and lines:
            source.tee.write(b"".join(lines))
            source.tee.flush()


def _thin(progress, lines, eof):
    """The lines to show of `lines` on a console that is not a terminal."""
    now, shown = time.monotonic(), []
    for line in lines:
        if line.endswith(b"\r"):
            if not line.strip():                   # a bar clearing itself (leave=False)
                progress.line()
                continue
            kept = progress.redraw(line[:-1], now)
            if kept is not None:
                shown.append(kept)
        else:
            progress.line()
            shown.append(line)
    if eof:
        last = progress.flush(None)                # the last state a bar reached
        if last is not None:
            shown.append(last)
    return shown


def _write(console, data):
    try:
        console.write(data)
        console.flush()
    except (OSError, ValueError):
        pass                                       # the console went away; keep teeing


_LINE_END = re.compile(rb"\r\n|\r(?=.)|\n", re.S)   # a final \r may be half of a \r\n


def split_lines(data):
    """(complete lines, each ending in \n or \r; the unfinished rest). Empty \r-lines (the
    \r a progress bar starts each redraw with) are dropped."""
    lines, start = [], 0
    for m in _LINE_END.finditer(data):
        text, start = data[start:m.start()], m.end()
        if m.group() == b"\r":
            if text:
                lines.append(text + b"\r")
        else:
            lines.append(text + b"\n")
    return lines, data[start:]


def is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False


def progress_interval_from_env(environ=None):
    """Seconds between progress-bar lines on a console that is not a terminal."""
    text = (os.environ if environ is None else environ).get(PROGRESS_INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_PROGRESS_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"{PROGRESS_INTERVAL_ENV}={text!r}: expected the seconds between "
                         f"progress lines in a log, e.g. 5 (0 keeps every redraw)")
    return value


def rank_prefix(rank, host=None):
    return (f"[{host}:rank {rank}]: " if host else f"[rank {rank}]: ").encode()


def console_streams():
    return sys.stdout.buffer, sys.stderr.buffer
