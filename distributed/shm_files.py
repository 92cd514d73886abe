"""Names of the /dev/shm files that DDP's shared-memory buffers pass through, and their cleanup.

A buffer's file lives only from its creation until every rank of the host has mapped it (see
`shared_memory.py`); a rank killed in between leaves it behind. The name says who made it —
`phalanx-<pid>-<run id>-<random>` — so the launcher can remove the files of its ranks once they
are gone. The launcher imports it: nothing here imports the engine.
"""
import os
import re
import secrets
import time

import psutil

DIRECTORY = "/dev/shm"
PREFIX = "phalanx-"
RUN_ID_ENV = "PHALANX_RUN_ID"


def _run_id(run_id):
    """The run id as it appears in file names: no separators, no path characters."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", run_id or "none") or "none"


def file_name(pid=None, run_id=None):
    """A fresh file name for a buffer made by process `pid` (default: this one) of the run
    `run_id` (default: $PHALANX_RUN_ID, which `phalanx run` sets)."""
    pid = os.getpid() if pid is None else pid
    run_id = os.environ.get(RUN_ID_ENV) if run_id is None else run_id
    return f"{PREFIX}{pid}-{_run_id(run_id)}-{secrets.token_hex(8)}"


def owner(name):
    """(pid, run id) of a buffer file's name, or None for a file that is not one."""
    if not name.startswith(PREFIX):
        return None
    pid, _, rest = name[len(PREFIX):].partition("-")
    run_id, _, token = rest.rpartition("-")
    if not (pid.isdigit() and run_id and re.fullmatch(r"[0-9a-f]{16}", token)):
        return None
    return int(pid), run_id


def remove_orphans(run_id, pids=None, directory=DIRECTORY):
    """Remove the buffer files of run `run_id` made by `pids` (processes the caller knows are
    dead), or, without `pids`, by any process that no longer exists. Returns their paths."""
    run_id = _run_id(run_id)
    pids = None if pids is None else set(pids)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        who = owner(name)
        if who is None or who[1] != run_id:
            continue
        if (who[0] not in pids) if pids is not None else psutil.pid_exists(who[0]):
            continue
        path = os.path.join(directory, name)
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def remove_mpich_leftovers(since, directory=DIRECTORY, settle=2.0):
    """Remove the segments (`mpich_shm_*`) that MPICH leaves in /dev/shm when a job ends by
    MPI_Abort or a killed rank: those of ours made since `since` (a time.time()) that no
    process maps any more. MPICH unlinks them itself after a clean start and finish. mpiexec
    can return while its killed ranks are still exiting (their mappings still listed): those
    segments are looked at again for up to `settle` seconds."""
    removed, deadline = [], time.monotonic() + settle
    while True:
        removed += _remove_unmapped_mpich(since, directory)
        if not _mpich_segments(since, directory) or time.monotonic() >= deadline:
            return removed
        time.sleep(0.05)


def _mpich_segments(since, directory):
    try:
        names = [n for n in os.listdir(directory) if n.startswith("mpich_shm_")]
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_uid == os.getuid() and st.st_mtime >= since:
            found.append(path)
    return found


def _remove_unmapped_mpich(since, directory):
    candidates = _mpich_segments(since, directory)
    if not candidates:
        return []
    mapped = _mapped_files()
    removed = []
    for path in candidates:
        if path in mapped:
            continue
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def _mapped_files():
    """Every file some process we can see has mapped, from /proc/*/maps."""
    mapped = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    fields = line.split(None, 5)
                    if len(fields) == 6:
                        mapped.add(fields[5].strip().removesuffix(" (deleted)"))
        except OSError:
            continue
    return mapped
