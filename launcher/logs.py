"""Log routing: workers' stdout/stderr pipes → `[rank N]:`-prefixed lines on the console, plus
per-rank files when teeing. One thread multiplexes every pipe with `selectors`.

A carriage return ends a line too, and is passed on as one: a progress bar (tqdm redraws itself
with `\r`) shows live, prefixed, on one console line instead of arriving as one long line when
the bar finishes."""
import os
import re
import selectors
import sys
import threading
from dataclasses import dataclass


@dataclass
class LogSource:
    fd: int                        # read end of a worker's pipe (the router closes it at EOF)
    prefix: bytes                  # b"[rank 3]: "
    console: object                # a binary stream (sys.stdout.buffer), or None to hide
    tee: object = None             # a binary file the lines are copied to, or None


class LogRouter:
    """Copies each source line by line until every pipe reaches EOF."""

    def __init__(self, sources):
        self._selector = selectors.DefaultSelector()
        self._partial = {}
        for source in sources:
            os.set_blocking(source.fd, False)
            self._selector.register(source.fd, selectors.EVENT_READ, source)
            self._partial[source.fd] = b""
        self._thread = threading.Thread(target=self._run, name="phalanx-logs", daemon=True)
        self._thread.start()

    def join(self, timeout=None):
        """Wait until every pipe is drained (workers exited), then close the tee files."""
        self._thread.join(timeout)

    def _run(self):
        tees = set()
        try:
            while self._selector.get_map():
                for key, _ in self._selector.select(timeout=1.0):
                    self._read(key.data)
                    if key.data.tee is not None:
                        tees.add(key.data.tee)
        finally:
            for f in tees:
                f.close()

    def _read(self, source):
        try:
            chunk = os.read(source.fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        data = self._partial[source.fd] + chunk
        if not chunk:                              # EOF: flush what is left and stop watching
            self._selector.unregister(source.fd)
            os.close(source.fd)
            lines, self._partial[source.fd] = split_lines(data + b"\n") if data else ([], b"")
        else:
            lines, self._partial[source.fd] = split_lines(data)
        if not lines:
            return
        out = b"".join(source.prefix + line for line in lines)
        if source.console is not None:
            try:
                source.console.write(out)
                source.console.flush()
            except (OSError, ValueError):
                pass                               # the console went away; keep teeing
        if source.tee is not None:
            source.tee.write(b"".join(lines))
            source.tee.flush()


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


def rank_prefix(rank, host=None):
    return (f"[{host}:rank {rank}]: " if host else f"[rank {rank}]: ").encode()


def console_streams():
    return sys.stdout.buffer, sys.stderr.buffer
