"""The `local` backend: a world of one, where every collective is a correct no-op.

`python train.py` without a launcher runs here, so a script written for many ranks runs
unchanged on one. Results are what any backend would give with a single rank.
"""
from .process_group import ProcessGroup, ReduceOp, Work


class LocalProcessGroup(ProcessGroup):
    backend = "local"
    device_types = ("cpu", "cuda")

    def __init__(self, global_rank=0):
        super().__init__(0, 1, [global_rank])

    def allreduce(self, array, op=ReduceOp.SUM):
        return Work.done()

    def broadcast(self, array, root=0):
        return Work.done()

    def reduce(self, array, root=0, op=ReduceOp.SUM):
        return Work.done()

    def allgather(self, out, array):
        out[0] = array
        return Work.done()

    def reduce_scatter(self, out, array, op=ReduceOp.SUM):
        out[...] = array[0]
        return Work.done()

    def gather(self, out, array, root=0):
        out[0] = array
        return Work.done()

    def scatter(self, out, array, root=0):
        out[...] = array[0]
        return Work.done()

    def alltoall(self, out, array):
        out[...] = array
        return Work.done()

    def alltoallv(self, out, out_counts, array, in_counts):
        out[:out_counts[0]] = array[:in_counts[0]]
        return Work.done()

    def barrier(self):
        return Work.done()

    def send(self, array, dst, tag=0):
        raise RuntimeError("send() in a world of one has no peer to send to; start the job "
                           "with several ranks (mpirun -n N / phalanx run --nproc-per-node N)")

    def recv(self, array, src, tag=0):
        raise RuntimeError("recv() in a world of one has no peer to receive from; start the "
                           "job with several ranks (mpirun -n N / phalanx run --nproc-per-node N)")

    def allgather_object(self, obj):
        return [obj]

    def broadcast_object(self, obj, root=0):
        return obj

    def split(self, ranks):
        return LocalProcessGroup(self.ranks[0]) if 0 in list(ranks) else None

    def abort(self, errorcode=1):
        import os
        import sys
        sys.stderr.flush()
        os._exit(errorcode)
