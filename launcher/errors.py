"""Error files: a worker's uncaught exception on disk, and the launcher's one summary of a failure.

Standard library only: the worker bootstrap loads this file before the user's code, so it must
not import anything from phalanx (or numpy).
"""
import json
import os
import shutil
import signal
import socket
import time
import traceback
from dataclasses import dataclass, field

ERROR_FILE_ENV = "PHALANX_ERROR_FILE"


def write_error_file(exc, path=None):
    """Record `exc` (rank, host, exception, traceback, time) as JSON at `path` (atomically)."""
    path = path or os.environ.get(ERROR_FILE_ENV)
    if not path:
        return None
    path = path.replace("{pid}", str(os.getpid()))     # one file per rank under mpiexec
    record = {
        "rank": _first_int("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"),
        "local_rank": _first_int("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "exception": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "timestamp": time.time(),
    }
    return write_record(path, record)


def write_record(path, record):
    """Write an error record as JSON at `path`, atomically (the launcher may read it at once)."""
    path = path.replace("{pid}", str(os.getpid()))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)
    return path


def _first_int(*names):
    for name in names:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return -1


def tidy_log_dir(path, chosen_by_user, succeeded):
    """Remove a log directory the launcher made for itself once nothing in it is worth reading
    (the job succeeded, or no rank wrote an error file or log); returns whether it is kept. A
    directory the user named is always kept."""
    if chosen_by_user:
        return True
    if succeeded or not any(files for _, _, files in os.walk(path)):
        shutil.rmtree(path, ignore_errors=True)
        return False
    return True


def read_error_file(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def describe_exit(exitcode):
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


@dataclass
class Failure:
    """Why one rank failed: its exit, or the heartbeat monitor's verdict, plus its error file."""
    rank: int
    local_rank: int
    reason: str                     # "exit code 1", "killed by SIGKILL", "no progress for 30 s"
    exitcode: int | None = None
    pid: int | None = None
    host: str = field(default_factory=socket.gethostname)
    error: dict | None = None       # the worker's error file, when it wrote one
    timestamp: float = field(default_factory=time.time)
    hung: bool = False              # declared dead or stuck by the heartbeat monitor

    @property
    def first_seen(self):
        return self.error["timestamp"] if self.error else self.timestamp


def first_failure(failures):
    """The rank that failed first: a hung rank (its peers fail because they wait for it), else
    the earliest error-file time, else the earliest exit seen."""
    return min(failures, key=lambda f: (not f.hung, f.error is None, f.first_seen, f.rank))


def format_summary(failures, header):
    """One block naming the first failing rank and its traceback, plus the others on one line."""
    first = first_failure(failures)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(first.first_seen))
    lines = [
        "=" * 78,
        header,
        f"first failure: rank {first.rank} (local_rank {first.local_rank}) on {first.host}, "
        f"pid {first.pid}: {first.reason} at {when}",
    ]
    if first.error:
        lines.append(first.error["traceback"].rstrip())
    else:
        lines.append("(no error file: the rank did not raise a Python exception; see its log)")
    others = [f"rank {f.rank}: {f.reason}" for f in failures if f is not first]
    if others:
        lines.append("other failures: " + "; ".join(others))
    lines.append("=" * 78)
    return "\n".join(lines)
