"""`torch.distributed.elastic.multiprocessing.errors`: `@record` on a script's main function,
as torchrun's documentation asks, writes an uncaught exception to the error file of the rank
(`phalanx run` reads it for its failure summary) and re-raises it.

    from torch.distributed.elastic.multiprocessing.errors import record

    @record
    def main():
        ...
"""
import faulthandler
import functools
import os
import time
from dataclasses import dataclass, field

from ....launcher.errors import ERROR_FILE_ENV, read_error_file, write_error_file, write_record

__all__ = ["ChildFailedError", "ErrorHandler", "ProcessFailure", "get_error_handler", "record"]

_NOT_AVAILABLE = "<N/A>"


@dataclass
class ProcessFailure:
    """One failed child: its rank on this node, pid, exit code and error file (if any)."""
    local_rank: int
    pid: int
    exitcode: int
    error_file: str
    message: str = field(init=False)
    timestamp: int = field(init=False)

    def __post_init__(self):
        record = read_error_file(self.error_file) if self.error_file != _NOT_AVAILABLE else None
        if record:
            self.message = record.get("message", "")
            self.timestamp = int(record.get("timestamp", time.time()))
        else:
            self.message = f"exit code {self.exitcode}"
            self.timestamp = int(time.time())


class ChildFailedError(Exception):
    """Some children of a launcher failed: `failures` maps global rank -> ProcessFailure."""

    def __init__(self, name, failures):
        self.name, self.failures = name, failures
        if not failures:
            raise AssertionError("ChildFailedError needs at least one failure")
        rank, failure = self.get_first_failure()
        super().__init__(f"{name} FAILED (first: rank {rank}, exit code {failure.exitcode})")

    def get_first_failure(self):
        rank = min(self.failures, key=lambda r: self.failures[r].timestamp)
        return rank, self.failures[rank]


class ErrorHandler:
    """Writes this process's error file (the path the launcher gives in the environment)."""

    def initialize(self):
        """Dump the Python stacks on a fatal signal (segfault, abort), as PyTorch's does."""
        try:
            faulthandler.enable(all_threads=True)
        except Exception:          # no usable stderr (a daemonised process): nothing to do
            pass

    def record_exception(self, e):
        write_error_file(e)

    def dump_error_file(self, rootcause_error_file, error_code=0):
        """Make a child's error file (the root cause) this process's own."""
        target = os.environ.get(ERROR_FILE_ENV)
        record = read_error_file(rootcause_error_file)
        if target and record is not None:
            if error_code:
                record.setdefault("exitcode", error_code)
            write_record(target, record)


def get_error_handler():
    return ErrorHandler()


def record(fn, error_handler=None):
    """Decorate the entry point: its uncaught exception goes to the error file, then on."""
    handler = error_handler or get_error_handler()

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        handler.initialize()
        try:
            return fn(*args, **kwargs)
        except SystemExit as e:
            if e.code in (0, None):
                return None
            raise
        except ChildFailedError as e:
            _, failure = e.get_first_failure()
            if failure.error_file != _NOT_AVAILABLE:
                handler.dump_error_file(failure.error_file, failure.exitcode)
            raise
        except Exception as e:
            handler.record_exception(e)
            raise
    return wrapper
