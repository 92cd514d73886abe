"""Worker entry point: `python launcher/bootstrap.py [-m module | script] args...`.

The launcher runs it by file path, so starting a worker imports no phalanx module (and no numpy)
before the user's code. It makes the worker die with the launcher (PR_SET_PDEATHSIG), records an
uncaught exception in the error file, then runs the script or module as `__main__`.
"""
import importlib.util
import os
import runpy
import signal
import sys
import traceback

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


def _load_errors_module():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "errors.py")
    spec = importlib.util.spec_from_file_location("_phalanx_launcher_errors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv):
    die_with_parent()
    errors = _load_errors_module()
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
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        exc.__traceback__ = _user_frames(exc.__traceback__)
        errors.write_error_file(exc)
        traceback.print_exception(exc)
        sys.exit(1)


def _user_frames(tb):
    """Drop this file's and runpy's frames, so tracebacks start at the user's code."""
    while tb is not None and (tb.tb_frame.f_code.co_filename in (__file__, runpy.__file__)
                              or "runpy" in tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


if __name__ == "__main__":
    main(sys.argv[1:])
