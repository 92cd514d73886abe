"""A rank that dies of an uncaught exception or exits non-zero takes the whole job down at once.

Under mpirun the other ranks would otherwise wait forever in their next collective. The hooks
print the failing rank's traceback once (prefixed with its rank) and call the group's
`abort()` (MPI_Abort), which makes the MPI launcher kill every rank within seconds. Exceptions
in threads are treated the same way.

`sys.exit(n)` with n != 0 is an exit path Python never shows to `sys.excepthook`, and a plain
exit would go on to MPI_Finalize, which waits for peers that wait for us. So `install` wraps
`sys.exit` to remember the status and registers an `atexit` hook, which runs before mpi4py's
own (atexit is last-in first-out), that aborts with that status. (A `sys.exit(n)` that the
program catches and outlives is remembered all the same: Python cannot tell us it was caught.)
A `SystemExit` raised directly (`raise SystemExit(3)`) leaves no such record in a bare
`python train.py`, as Python keeps the exit status to itself: then the hook tells the other
ranks that this one exits, and a rank that waits for it in a collective aborts the job (within
seconds, with status 1). `phalanx run --mpi` runs the script through its bootstrap, which sees
the status and calls `sys.exit`. `os._exit(n)` skips MPI_Finalize, and mpiexec itself then ends
the job.
"""
import atexit
import sys
import threading
import traceback

_installed = None   # (group, previous sys.excepthook, previous threading.excepthook, sys.exit)
_exit_status = None  # the non-zero status the main thread asked sys.exit for
_atexit_registered = False


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


def exit_status(code):
    """The process exit status `sys.exit(code)` gives: None → 0, an int → itself, else 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    return 1


def _recording_exit(code=None):
    global _exit_status
    if threading.current_thread() is threading.main_thread() and exit_status(code) != 0:
        _exit_status = exit_status(code)
    _installed[3](code)


def _abort_on_bad_exit():
    """atexit: the main thread called sys.exit(n != 0): abort instead of finalizing. Otherwise
    (a normal end, or an exit whose status Python keeps to itself) tell the other ranks this one
    is leaving: one that waits for it in a collective then aborts the job."""
    if _installed is None:
        return
    group = _installed[0]
    if not _exit_status:
        announce = getattr(group, "announce_exit", None)
        if announce is not None:
            announce()
        return
    sys.stderr.write(f"[rank {group.ranks[group.rank]}] exited with status {_exit_status}; "
                     f"aborting all {group.size} ranks\n")
    group.abort(_exit_status)


def install(group):
    """Abort `group`'s job when any thread of this process dies of an exception, or the
    process exits through sys.exit with a non-zero status."""
    global _installed, _atexit_registered, _exit_status
    if _installed is None:
        _exit_status = None
        _installed = (group, sys.excepthook, threading.excepthook, sys.exit)
        sys.excepthook = _excepthook
        threading.excepthook = _thread_excepthook
        sys.exit = _recording_exit
        if not _atexit_registered:      # after MPI's import, so it runs before MPI_Finalize
            atexit.register(_abort_on_bad_exit)
            _atexit_registered = True


def uninstall():
    global _installed
    if _installed is not None:
        _, sys.excepthook, threading.excepthook, exit_ = _installed
        if sys.exit is _recording_exit:
            sys.exit = exit_
        _installed = None
