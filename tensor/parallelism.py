"""`set_num_threads` / `get_num_threads`: the width of the thread pools the CPU ops run on
(NumPy's BLAS and any OpenMP runtime in the process), PyTorch's intra-op knob."""
import operator
import os

_THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_chosen = None


def set_num_threads(num_threads):
    """Limit the BLAS/OpenMP pools loaded now (threadpoolctl) and those loaded later (their
    environment variables) to `num_threads` threads."""
    global _chosen
    n = operator.index(num_threads)
    if n < 1:
        raise RuntimeError(f"set_num_threads expects a positive integer, got {n}")
    from threadpoolctl import threadpool_limits
    for name in _THREAD_ENV_VARS:
        os.environ[name] = str(n)
    threadpool_limits(n)
    _chosen = n


def get_num_threads():
    if _chosen is not None:
        return _chosen
    from threadpoolctl import threadpool_info
    widths = [info["num_threads"] for info in threadpool_info()]
    return max(widths) if widths else (os.cpu_count() or 1)
