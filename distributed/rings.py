"""Collective algorithms over point-to-point messages: rings, chains and direct exchanges.

They know nothing of sockets: each collective speaks to a `link`, which any message transport
can provide (`ZmqProcessGroup` makes one per collective):
- `link.rank`, `link.size`: this rank and the group's size;
- `link.chunk_elems(itemsize)`: the most elements one message may carry;
- `link.send(dst, flat)`: send a 1-d array (at most one chunk) to `dst`, in order with the
  earlier sends to `dst`; the caller must not change it until the collective is over;
- `link.recv(src, count, dtype)`: the next array `src` sent, checked to hold `count` elements of
  `dtype` (read-only; it may view the transport's buffer).

Every array travels as at least one message, also an empty one, so that a rank that passes a
different shape meets its peers' messages (and the transport's checks) instead of skipping the
exchange. All-reduce of a large array is a pipelined ring: reduce-scatter then all-gather, each
segment cut in chunks that are forwarded as soon as they are reduced, so every link is busy all
the time and each rank sends 2(n-1)/n of the array, the bandwidth optimum. Small arrays are
exchanged directly (one latency) and reduced in rank order, so all ranks get bit-identical
results either way.
"""
import numpy as np

SMALL_BYTES = 64 << 10            # up to this: all-reduce by direct exchange


def chunks(flat, chunk_elems):
    """`flat` cut in views of at most `chunk_elems` elements; one empty view if it is empty."""
    return [flat[i:i + chunk_elems] for i in range(0, len(flat), chunk_elems)] or [flat]


def send_array(link, dst, flat):
    for c in chunks(flat, link.chunk_elems(flat.itemsize)):
        link.send(dst, c)


def recv_array(link, view, src, ufunc=None):
    """Receive what `src` sent with `send_array` into `view` (reduced in with `ufunc`)."""
    for c in chunks(view, link.chunk_elems(view.itemsize)):
        incoming = link.recv(src, c.size, c.dtype)
        if ufunc is None:
            c[...] = incoming
        else:
            ufunc(c, incoming, out=c)


def allreduce(link, flat, ufunc):
    if link.size == 1:
        return
    if flat.nbytes <= SMALL_BYTES:
        _exchange_reduce(link, flat, ufunc)
    else:
        n = link.size
        ring(link, np.array_split(flat, n), n - 1, n - 1, ufunc)


def _exchange_reduce(link, flat, ufunc):
    """Everyone sends to everyone, and reduces in rank order."""
    mine = flat.copy()
    for r in range(link.size):
        if r != link.rank:
            link.send(r, mine)
    for r in range(link.size):
        part = mine if r == link.rank else link.recv(r, flat.size, flat.dtype)
        if r == 0:
            flat[...] = part
        else:
            ufunc(flat, part, out=flat)


def ring(link, segments, reduce_steps, copy_steps, ufunc):
    """Pass segments around the ring: we start by sending segment `rank`; at step t we
    receive segment (rank - t - 1) from the left, reduce it in (the first `reduce_steps`
    steps) or copy it, and forward each chunk to the right as soon as it is ready."""
    n, rank = link.size, link.rank
    left, right = (rank - 1) % n, (rank + 1) % n
    chunk = link.chunk_elems(segments[0].itemsize)
    for c in chunks(segments[rank], chunk):
        link.send(right, c)
    total = reduce_steps + copy_steps
    for t in range(total):
        for c in chunks(segments[(rank - t - 1) % n], chunk):
            incoming = link.recv(left, c.size, c.dtype)
            if t < reduce_steps:
                ufunc(c, incoming, out=c)
            else:
                c[...] = incoming
            if t < total - 1:
                link.send(right, c)


def broadcast(link, flat, root):
    """A pipelined chain root → root+1 → …: each chunk is forwarded as soon as it lands."""
    n = link.size
    if n == 1:
        return
    pos = (link.rank - root) % n
    left, right = (link.rank - 1) % n, (link.rank + 1) % n
    for c in chunks(flat, link.chunk_elems(flat.itemsize)):
        if pos:
            c[...] = link.recv(left, c.size, c.dtype)
        if pos < n - 1:
            link.send(right, c)


def allgather(link, out, array):
    """out[r] = rank r's array, around the ring."""
    out[link.rank] = array
    if link.size > 1:
        ring(link, [o.reshape(-1) for o in out], 0, link.size - 1, None)


def reduce_scatter(link, out, array, ufunc):
    """out = the reduction of every rank's array[rank], around the ring."""
    n = link.size
    work = np.array(array, copy=True)
    # after n-1 reduce steps rank r holds segment r+1 complete: label blocks so it is ours
    if n > 1:
        ring(link, [work[(j - 1) % n].reshape(-1) for j in range(n)], n - 1, 0, ufunc)
    out[...] = work[link.rank]


def gather(link, out, array, root):
    if link.rank != root:
        send_array(link, root, array.reshape(-1))
        return
    for r in range(link.size):
        if r == root:
            out[r] = array
        else:
            recv_array(link, out[r].reshape(-1), r)


def scatter(link, out, array, root):
    if link.rank == root:
        for r in range(link.size):
            if r != root:
                send_array(link, r, np.ascontiguousarray(array[r]).reshape(-1))
        out[...] = array[root]
    else:
        recv_array(link, out.reshape(-1), root)


def alltoall(link, out, array):
    for r in range(link.size):
        if r != link.rank:
            send_array(link, r, np.ascontiguousarray(array[r]).reshape(-1))
    out[link.rank] = array[link.rank]
    for r in range(link.size):
        if r != link.rank:
            recv_array(link, out[r].reshape(-1), r)


def barrier(link):
    nothing = np.empty(0, np.uint8)
    for r in range(link.size):
        if r != link.rank:
            link.send(r, nothing)
    for r in range(link.size):
        if r != link.rank:
            link.recv(r, 0, nothing.dtype)


# -- byte strings of any length (object collectives) ------------------------------------------
def _send_bytes(link, dst, data):
    link.send(dst, np.array([len(data)], np.int64))
    send_array(link, dst, np.frombuffer(data, np.uint8))


def _recv_bytes(link, src):
    length = int(link.recv(src, 1, np.dtype(np.int64))[0])
    if length < 0:
        raise ValueError(f"rank {link.rank}: rank {src} announced {length} bytes")
    data = bytearray(length)
    recv_array(link, np.frombuffer(data, np.uint8), src)
    return bytes(data)


def allgather_bytes(link, data):
    """Every rank's byte string, in rank order."""
    for r in range(link.size):
        if r != link.rank:
            _send_bytes(link, r, data)
    return [data if r == link.rank else _recv_bytes(link, r) for r in range(link.size)]


def broadcast_bytes(link, data, root):
    """Root's byte string (`data` elsewhere is ignored)."""
    if link.rank == root:
        for r in range(link.size):
            if r != root:
                _send_bytes(link, r, data)
        return data
    return _recv_bytes(link, root)
