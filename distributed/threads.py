"""How many BLAS/OpenMP threads each rank runs: its share of the host's cores.

Ranks that each run a thread pool as wide as the machine fight over the cores (OpenBLAS's
threads and MPI's busy-polling spin), and a step gets many times slower: `ddp_digits` under a
bare `mpiexec -n 2` on 2 cores trained 10x slower than with one thread per rank. `phalanx run`
sets the variables below for its workers; `init_process_group` does the same in-process for
ranks started by mpirun or srun. Both leave alone what the user set.
"""
import os
import sys

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def threads_per_rank(local_ranks):
    return max(1, (os.cpu_count() or 1) // max(1, local_ranks))


def share_cores(local_ranks, announce=False):
    """Limit this process's thread pools to its share of the cores when `local_ranks` ranks
    run on this host and no thread variable is set; returns the thread count, or None."""
    if local_ranks <= 1 or any(name in os.environ for name in THREAD_ENV_VARS):
        return None
    threads = threads_per_rank(local_ranks)
    for name in THREAD_ENV_VARS:          # for the processes this rank starts
        os.environ[name] = str(threads)
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)            # for the pools this process has loaded already
    if announce:
        sys.stderr.write(f"phalanx.distributed: {local_ranks} ranks on this host and no "
                         f"{'/'.join(THREAD_ENV_VARS)} set: each rank runs {threads} BLAS "
                         f"thread(s), its share of {os.cpu_count()} cores. Set "
                         f"OMP_NUM_THREADS to choose.\n")
    return threads
