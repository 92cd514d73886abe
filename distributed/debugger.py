"""`dist.breakpoint(rank=0)`: the Python debugger on one rank while the others wait for it."""
import collections
import pdb
import sys

_calls = collections.Counter()      # per call site, for `skip`
_RELEASE_TAG = 32109                # the message that lets the waiting ranks go on


class _RankDebugger(pdb.Pdb):
    """pdb reading the terminal: a launcher gives its ranks' sys.stdin no input, so it talks
    through /dev/stdin, as PyTorch's distributed debugger does."""

    def interaction(self, *args, **kwargs):
        saved = sys.stdin
        try:
            with open("/dev/stdin") as sys.stdin:
                super().interaction(*args, **kwargs)
        finally:
            sys.stdin = saved


def breakpoint(rank=0, skip=0, timeout_s=3600):
    """Stop in the debugger on `rank` only; every other rank waits (up to `timeout_s`
    seconds, None: as long as it takes) until that rank continues. `skip` passes over the
    first `skip` calls from this line. Every rank of the world must call it."""
    from .. import tensor, float32
    from .collectives import irecv, isend
    from .world import get_rank, get_world_size

    caller = sys._getframe(1)
    site = (caller.f_code.co_filename, caller.f_lineno)
    if skip > 0:
        _calls[site] += 1
        if _calls[site] <= skip:
            return
    size = get_world_size()
    if not 0 <= rank < size:
        raise ValueError(f"breakpoint(rank={rank}): the world has ranks 0 to {size - 1}")
    token = tensor([0.0], dtype=float32)
    if get_rank() == rank:
        debugger = _RankDebugger()
        debugger.message(f"\n!!! ATTENTION !!!\n\nType 'up' to get to the frame that called "
                         f"dist.breakpoint(rank={rank}); the other ranks wait until you "
                         f"continue.\n")
        debugger.set_trace()
        for work in [isend(token, dst, tag=_RELEASE_TAG) for dst in range(size) if dst != rank]:
            work.wait()
    else:
        irecv(token, src=rank, tag=_RELEASE_TAG).wait(
            timeout=float("inf") if timeout_s is None else timeout_s)
