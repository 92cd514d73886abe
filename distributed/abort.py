"""A rank that dies of an uncaught exception takes the whole job down at once.

Under mpirun the other ranks would otherwise wait forever in their next collective. The hooks
print the failing rank's traceback once (prefixed with its rank) and call the group's
`abort()` (MPI_Abort), which makes the MPI launcher kill every rank within seconds. Exceptions
in threads are treated the same way.
"""
import sys
import threading
import traceback

_installed = None   # (group, previous sys.excepthook, previous threading.excepthook)


def _die(group, exc_type, exc, tb, where):
    rank = group.ranks[group.rank]
    try:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write(f"[rank {rank}] uncaught exception{where}; aborting all "
                         f"{group.size} ranks:\n{text}")
        sys.stderr.flush()
    finally:
        group.abort(1)


def _excepthook(exc_type, exc, tb):
    _die(_installed[0], exc_type, exc, tb, "")


def _thread_excepthook(args):
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    _die(_installed[0], args.exc_type, args.exc_value, args.exc_traceback,
         f" in thread {name!r}")


def install(group):
    """Abort `group`'s job when any thread of this process dies of an exception."""
    global _installed
    if _installed is None:
        _installed = (group, sys.excepthook, threading.excepthook)
        sys.excepthook = _excepthook
        threading.excepthook = _thread_excepthook


def uninstall():
    global _installed
    if _installed is not None:
        _, sys.excepthook, threading.excepthook = _installed
        _installed = None
