"""A small process that ends the workers' process groups when the launcher is SIGKILLed.

The workers die with the launcher (PR_SET_PDEATHSIG), but processes they started (a data
loader's helpers, a shell pipeline, anything in the worker's process group) would live on,
orphaned. The guardian reads the launcher's messages on a pipe: `+PGID` when a worker's group
starts, `-PGID` once the launcher has stopped it itself, `bye` when the launcher exits
normally. End of file without `bye` means the launcher died: the guardian SIGKILLs every group
it still holds and exits. It runs in a session of its own, so a signal to the launcher's
process group does not reach it; it holds none of the launcher's output pipes.
"""
import os
import subprocess
import sys

_GUARD = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    word = line.strip()
    if word == "bye":
        sys.exit(0)
    if word[:1] == "+":
        groups.add(int(word[1:]))
    elif word[:1] == "-":
        groups.discard(int(word[1:]))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""


class Guardian:
    def __init__(self, python=sys.executable):
        read, self._write = os.pipe()     # not inherited by the workers (Python's default)
        try:
            self._process = subprocess.Popen(
                [python, "-I", "-c", _GUARD], stdin=read, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(read)

    def watch(self, group):
        self._say(f"+{group}")

    def forget(self, group):
        self._say(f"-{group}")

    def close(self):
        """The launcher exits normally: the guardian leaves every group alone."""
        if self._write is None:
            return
        try:
            self._say("bye")
        finally:
            os.close(self._write)
            self._write = None
            self._process.wait()

    def _say(self, word):
        if self._write is None:
            return
        try:
            os.write(self._write, f"{word}\n".encode())
        except BrokenPipeError:         # the guardian is gone: nothing to keep it informed of
            pass
