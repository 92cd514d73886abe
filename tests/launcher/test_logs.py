"""Log routing: lines (and progress-bar redraws ending in \r) get the rank prefix, the rest
waits for its end; a real pipe through `LogRouter`."""
import io
import os

import pytest

from phalanx.launcher.logs import LogRouter, LogSource, split_lines


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
    def close(self):        # keep the contents readable after the router is done
        pass


def test_router_prefixes_lines_and_progress_redraws_and_tees(tmp_path):
    read, write = os.pipe()
    console, tee = _Console(), open(tmp_path / "tee.log", "wb")
    router = LogRouter([LogSource(read, b"[rank 0]: ", console, tee)])
    os.write(write, b"start\n\rstep 1/2\rstep 2/2\r")
    os.write(write, b"\ndone")
    os.close(write)
    router.join(timeout=10)
    assert console.getvalue() == (b"[rank 0]: start\n[rank 0]: step 1/2\r"
                                  b"[rank 0]: step 2/2\n[rank 0]: done\n")
    assert (tmp_path / "tee.log").read_bytes() == b"start\nstep 1/2\rstep 2/2\ndone\n"
