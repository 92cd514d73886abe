"""Profiling a whole run from the environment, with no change to the training script.

`phalanx run --profile DIR` exports PHALANX_PROFILE=DIR to its workers (any launcher can:
`PHALANX_PROFILE=DIR mpirun -n 2 python train.py`). `import phalanx` then starts a profile in
each rank (`start_from_environment`), which records

- the whole run, written when the process exits, or
- with PHALANX_PROFILE_STEPS=START:STOP (or STOP), the optimizer steps START..STOP-1 (each
  `optimizer.step()` ends a step), written as soon as step STOP-1 ends;

to DIR/rank{RANK}.trace.json, whose process track is named "rank {RANK}". The launcher then
merges the ranks' files (`launcher/profile_merge.py`).
"""
import atexit
import multiprocessing
import os
import sys

from ..distributed.env import detect
from . import recorder
from .events import write_json
from .session import profile, schedule

PROFILE_ENV = "PHALANX_PROFILE"
STEPS_ENV = "PHALANX_PROFILE_STEPS"


def parse_steps(text):
    """'START:STOP' or 'STOP' -> (start, stop); '' -> None (the whole run)."""
    text = (text or "").strip()
    if not text:
        return None
    start, _, stop = text.rpartition(":") if ":" in text else ("0", "", text)
    try:
        start, stop = int(start or 0), int(stop)
    except ValueError:
        start = stop = -1
    if not 0 <= start < stop:
        raise ValueError(f"{STEPS_ENV}={text!r}: expected START:STOP (optimizer steps, "
                         f"0 <= START < STOP) or STOP, e.g. 10:20")
    return start, stop


def rank_file(directory, rank):
    return os.path.join(directory, f"rank{rank}.trace.json")


def write_rank_trace(directory):
    """An `on_trace_ready` that writes this rank's window to DIR/rank{RANK}.trace.json."""
    pid = os.getpid()

    def handler(prof):
        if not prof.events() or os.getpid() != pid or multiprocessing.parent_process():
            return      # nothing ran here (the launcher itself), or a DataLoader worker
        rank = detect().rank
        os.makedirs(directory, exist_ok=True)
        trace = prof.chrome_trace(pid=rank, process_name=f"rank {rank}",
                                  thread_suffix=f" (rank {rank})",
                                  other={"rank": rank, "step_num": prof.step_num})
        write_json(trace, rank_file(directory, rank))
    return handler


def start_from_environment(environ=None):
    """Start this process's profile if PHALANX_PROFILE is set; returns it (or None)."""
    env = os.environ if environ is None else environ
    directory = env.get(PROFILE_ENV)
    if not directory:
        return None
    window = parse_steps(env.get(STEPS_ENV))
    when = None if window is None else schedule(
        wait=window[0], warmup=0, active=window[1] - window[0], repeat=1)
    prof = profile(schedule=when, on_trace_ready=write_rank_trace(os.path.abspath(directory)))
    prof.start()
    recorder.step_listeners.append(prof.step)    # an optimizer step ends a step
    atexit.register(_finish, prof, window)
    return prof


def _finish(prof, window):
    if window is not None and prof.step_num < window[1]:
        got = (f"the trace holds steps {window[0]} to {prof.step_num - 1}"
               if prof.step_num > window[0] else "no trace written")
        print(f"phalanx.profiler: {STEPS_ENV}={window[0]}:{window[1]} but the run made only "
              f"{prof.step_num} optimizer step(s); {got}", file=sys.stderr)
    prof.stop()
