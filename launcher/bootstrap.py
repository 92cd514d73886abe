"""Worker entry point: `python launcher/bootstrap.py [-m module | script] args...`.

The launcher runs it by file path, so starting a worker imports no phalanx module (and no numpy)
before the user's code. It makes the worker die with the launcher (PR_SET_PDEATHSIG), starts its
heartbeat thread (`distributed/heartbeat.py`), runs the script or module as `__main__`, and
records an uncaught exception in the error file before handing it to `sys.excepthook` (under
MPI, phalanx's abort hook, which ends the whole job).
"""
import importlib.util
import os
import runpy
import signal
import sys

AGENT_PID_ENV = "PHALANX_AGENT_PID"


def die_with_parent():
    """Ask Linux to SIGKILL us when the launcher dies, and exit if it is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes
        PR_SET_PDEATHSIG = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    agent = os.environ.get(AGENT_PID_ENV)
    if agent and os.getppid() != int(agent):      # the launcher died before prctl took effect
        os._exit(1)


def _load(name, *path):
    """A phalanx file loaded by path (standard library only: phalanx is not imported yet)."""
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(name, os.path.join(here, *path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv):
    die_with_parent()
    errors = _load("_phalanx_launcher_errors", "errors.py")
    # beats from the first second, so a rank that hangs or is stopped before the user's code
    # gets anywhere is still noticed (and named) by the launcher
    _load("_phalanx_bootstrap_heartbeat", os.pardir, "distributed", "heartbeat.py").start()
    if not argv:
        sys.exit("usage: bootstrap.py [-m module | script] [args...]")
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path[0] = os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        # through sys.exit, not a re-raise: under MPI, phalanx's abort hook wraps sys.exit to
        # turn a non-zero status into MPI_Abort (a plain exit would hang in MPI_Finalize)
        sys.exit(exc.code)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        exc.__traceback__ = _user_frames(exc.__traceback__)
        errors.write_error_file(exc)
        # the hook prints the traceback; under MPI phalanx's hook also aborts the whole job
        sys.excepthook(type(exc), exc, exc.__traceback__)
        sys.exit(1)


def _user_frames(tb):
    """Drop this file's and runpy's frames, so tracebacks start at the user's code."""
    while tb is not None and (tb.tb_frame.f_code.co_filename in (__file__, runpy.__file__)
                              or "runpy" in tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


if __name__ == "__main__":
    main(sys.argv[1:])
