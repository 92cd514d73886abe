"""Log routing: lines (and progress-bar redraws ending in \r) get the rank prefix, the rest
waits for its end; a real pipe through `LogRouter`. On a terminal redraws pass through as they
are; elsewhere (a log file, CI) they are thinned to one line per interval, and the launcher
does so for a real tqdm bar."""
import io
import os
import re
import time

import pytest

from phalanx.launcher.logs import (LogRouter, LogSource, progress_interval_from_env,
                                   split_lines)


@pytest.mark.parametrize("data, lines, rest", [
    (b"", [], b""),
    (b"a\nb", [b"a\n"], b"b"),
    (b"a\r\nb\n", [b"a\n", b"b\n"], b""),
    (b"\rbar 1\rbar 2", [b"bar 1\r"], b"bar 2"),       # tqdm: each redraw starts with \r
    (b"bar 2\r", [], b"bar 2\r"),                       # maybe the first half of \r\n
    (b"bar 2\r\n", [b"bar 2\n"], b""),
    (b"x\n\n", [b"x\n", b"\n"], b""),
])
def test_split_lines(data, lines, rest):
    assert split_lines(data) == (lines, rest)


class _Console(io.BytesIO):
    """A console that is a log file (isatty False) or a terminal (isatty True)."""

    def __init__(self, tty=False):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty

    def close(self):        # keep the contents readable after the router is done
        pass


def test_router_on_a_terminal_prefixes_lines_and_progress_redraws_and_tees(tmp_path):
    read, write = os.pipe()
    console, tee = _Console(tty=True), open(tmp_path / "tee.log", "wb")
    router = LogRouter([LogSource(read, b"[rank 0]: ", console, tee)], progress_interval=60)
    os.write(write, b"start\n\rstep 1/2\rstep 2/2\r")
    os.write(write, b"\ndone")
    os.close(write)
    router.join(timeout=10)
    assert console.getvalue() == (b"[rank 0]: start\n[rank 0]: step 1/2\r"
                                  b"[rank 0]: step 2/2\n[rank 0]: done\n")
    assert (tmp_path / "tee.log").read_bytes() == b"start\nstep 1/2\rstep 2/2\ndone\n"


def test_in_a_log_a_bar_shows_its_first_state_then_one_per_interval_and_its_end(tmp_path):
    read, write = os.pipe()
    console, tee = _Console(), open(tmp_path / "tee.log", "wb")
    router = LogRouter([LogSource(read, b"[rank 0]: ", console, tee)], progress_interval=0.3)
    bar = b"".join(b"\rbar %d%%" % i for i in range(0, 60, 10))
    # 0% at once; 40% is due 0.3 s later (50% is not complete: a \n may follow it)
    os.write(write, bar)
    time.sleep(1.0)                           # shown by the timer: no more output arrives
    assert console.getvalue() == b"[rank 0]: bar 0%\n[rank 0]: bar 40%\n"
    os.write(write, b"\rbar 60%\rbar 100%\n")  # 50% is due; the bar's final line, always
    os.write(write, b"\rgone\r    \r")         # a bar that clears itself: nothing left
    os.write(write, b"\rnext 1\rnext 2")      # a new bar: its first state at once
    os.close(write)                           # EOF: the last state it reached
    router.join(timeout=10)
    assert console.getvalue() == (b"[rank 0]: bar 0%\n[rank 0]: bar 40%\n[rank 0]: bar 50%\n"
                                  b"[rank 0]: bar 100%\n[rank 0]: gone\n[rank 0]: next 1\n"
                                  b"[rank 0]: next 2\n")
    assert (tmp_path / "tee.log").read_bytes() == \
        bar.lstrip(b"\r") + b"\rbar 60%\rbar 100%\ngone\r    \rnext 1\rnext 2\n"


def test_interval_zero_keeps_every_redraw_and_the_variable_is_checked():
    read, write = os.pipe()
    console = _Console()
    router = LogRouter([LogSource(read, b"", console)], progress_interval=0)
    os.write(write, b"\ra\rb\rc\n")
    os.close(write)
    router.join(timeout=10)
    assert console.getvalue() == b"a\rb\rc\n"
    assert progress_interval_from_env({"PHALANX_PROGRESS_INTERVAL": "2.5"}) == 2.5
    assert progress_interval_from_env({}) == 5.0
    with pytest.raises(ValueError, match="PHALANX_PROGRESS_INTERVAL"):
        progress_interval_from_env({"PHALANX_PROGRESS_INTERVAL": "-1"})


@pytest.mark.timeout(60)
def test_launcher_thins_a_tqdm_bar_in_its_log(launcher):
    code, out = launcher.run("--standalone", "--nproc-per-node", 1,
                             launcher.workers / "progress_bar.py",
                             env=launcher.env(PHALANX_PROGRESS_INTERVAL=0.3), timeout=50)
    assert code == 0, out
    assert "\r" not in out
    states = re.findall(r"^\[rank 0\]: work: +(\d+)%\|.*\| (\d+)/40", out, flags=re.M)
    assert states[0] == ("0", "0") and states[-1] == ("100", "40"), out
    assert 2 < len(states) < 20, out          # ~1 s of 40 redraws: a few lines, not 41
    assert out.index("40/40") < out.index("[rank 0]: finished")
