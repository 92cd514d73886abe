"""Point-to-point through `phalanx.distributed` on the launcher's ZeroMQ backend: a blocking
send/recv that names the sender, irecv posted before isend on every rank, and any-source."""
import numpy as np

import phalanx as px
import phalanx.distributed as dist

dist.init_process_group()
rank, size = dist.get_rank(), dist.get_world_size()
right, left = (rank + 1) % size, (rank - 1) % size

if rank == 0:
    dist.send(px.tensor(np.arange(4.0)), 1)
elif rank == 1:
    got = px.zeros(4, dtype=px.float64)
    assert dist.recv(got, 0) == 0 and np.array_equal(got.numpy(), np.arange(4.0))

got = px.zeros(3, dtype=px.float64)
receive = dist.irecv(got, left)                  # every rank posts its receive first
send = dist.isend(px.tensor(np.full(3, float(rank))), right)
send.wait()
receive.wait()
assert np.all(got.numpy() == left), got

if rank == 0:
    heard = {dist.recv(px.zeros(1, dtype=px.float64)) for _ in range(size - 1)}
    assert heard == set(range(1, size)), heard
else:
    dist.send(px.tensor(np.ones(1)), 0)
dist.barrier()
print(f"rank {rank}: point-to-point ok", flush=True)
