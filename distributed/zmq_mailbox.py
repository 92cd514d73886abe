"""The mailbox of a `ZmqProcessGroup`: messages that arrived before they were wanted, and the
matching of point-to-point receives.

Messages wait here by (sender, kind, key): a collective's sequence number or a point-to-point
tag. ZeroMQ keeps each sender→receiver stream in order, so the chunks of one collective (or of
one point-to-point message) need no numbering. What cannot be wanted any more (messages of a
collective that has finished here) is dropped, and the transport bounds what a peer can queue.
A rank that finds ranks calling a collective differently tells the others (an `ERROR` notice),
so the mismatch is an error on every rank, not a hang on some.
"""
import collections
import logging
import time

import numpy as np

from .debug import CollectiveMismatchError
from .errors import DistBackendError
from .process_group import Work
from .zmq_transport import CHUNK_BYTES, COLLECTIVE, ERROR, P2P

log = logging.getLogger("phalanx.distributed")


class CollectiveError(DistBackendError):
    """A collective failed or timed out; the group cannot be used afterwards."""


class Mailbox:
    """`transport`'s arrived messages for one rank. `turn()` is the context that keeps
    collectives off the mailbox while a point-to-point receive reads it."""

    def __init__(self, transport, timeout, turn):
        self._transport, self.timeout, self._turn = transport, timeout, turn
        self.rank = transport.rank
        self._boxes = collections.defaultdict(collections.deque)
        self.reported = {}          # collective number -> (rank, text) of a peer's ERROR notice
        self.finished = 0           # collectives up to this number are over here
        self._receives = []         # point-to-point receives not yet complete, in posted order
        self._bound = {}            # box key -> the receive that is taking that message

    def collect(self, wait_ms):
        """Move what has arrived (waiting up to `wait_ms` for the first) into the boxes."""
        for sender, kind, key, description, payload in self._transport.receive(wait_ms):
            if kind == ERROR:
                self.reported.setdefault(key, (sender, payload.bytes.decode(errors="replace")))
            elif kind == COLLECTIVE and key <= self.finished:
                log.warning("rank %d: dropped a message from rank %d for collective #%d, which "
                            "is over", self.rank, sender, key)
            else:
                self._boxes[(sender, kind, key)].append((description, payload))

    # -- collectives ------------------------------------------------------------------------
    def wait_for(self, src, key, what):
        """The next (description, payload) `src` sent for collective number `key`."""
        box = self._boxes[(src, COLLECTIVE, key)]
        deadline = time.monotonic() + self.timeout
        while not box:
            self._raise_reported(key)
            left = deadline - time.monotonic()
            if left <= 0:
                waiting = sorted((s, k, n, len(b)) for (s, k, n), b in self._boxes.items() if b)
                raise CollectiveError(
                    f"rank {self.rank}: {what} (#{key}) got nothing from rank {src} within "
                    f"{self.timeout:g} s; did rank {src} die or call a different collective? "
                    f"Messages waiting here (sender, kind, number, count): {waiting}")
            self.collect(int(min(left, 1.0) * 1000) + 1)
        message = box.popleft()
        if not box:
            del self._boxes[(src, COLLECTIVE, key)]
        return message

    def _raise_reported(self, key):
        reported = [k for k in self.reported if k <= key]
        if reported:
            sender, text = self.reported[min(reported)]
            raise CollectiveMismatchError(f"rank {self.rank}: rank {sender} reports: {text}")

    # -- point to point -----------------------------------------------------------------------
    def post_receive(self, flat, src, tag):
        receive = Received(self, flat, src, tag)
        self._receives.append(receive)
        return receive

    def progress(self, receive, wait_ms):
        """Match the messages that are in to the pending receives, reading the socket up to
        `wait_ms` if `receive` is still pending. Receives are matched in the order they were
        posted, as MPI's are."""
        with self._turn():
            self._match()
            if not receive.is_set():
                self.collect(wait_ms)
                self._match()

    def _match(self):
        done = [r for r in list(self._receives) if r.take()]
        for r in done:
            self._receives.remove(r)

    def _p2p_key(self, src, tag):
        """The box of the next message from `src` with `tag` (None: any) that no receive is
        taking yet, or None."""
        if src is not None and tag is not None:
            key = (src, P2P, tag)
            return key if self._boxes.get(key) and key not in self._bound else None
        return next((k for k, box in self._boxes.items() if box and k[1] == P2P
                     and k not in self._bound and (src is None or k[0] == src)
                     and (tag is None or k[2] == tag)), None)


class Sent(Work):
    """A point-to-point send: already handed to ZeroMQ; done when ZeroMQ let go of the array
    (at once for small ones, which were copied)."""

    def __init__(self, trackers):
        super().__init__()
        self._trackers = trackers

    def is_completed(self):
        return all(t.done for t in self._trackers)

    def wait(self, timeout=None):
        for t in self._trackers:
            t.wait(-1 if timeout is None else timeout)
        return True


def p2p_description(flat):
    """What the header of every chunk of a point-to-point message says about the message."""
    return {"dtype": str(flat.dtype), "count": int(flat.size),
            "chunks": max(1, -(-flat.nbytes // CHUNK_BYTES))}


class Received(Work):
    """A point-to-point receive; it completes whenever someone waiting on it or testing it
    finds its message in the mailbox. Its result is the sender's rank. Once it has taken the
    first chunk of a message it takes that message's other chunks, and no other receive does."""

    def __init__(self, mailbox, flat, src, tag):
        super().__init__()
        self._mailbox, self._flat, self._src, self._tag = mailbox, flat, src, tag
        self._key, self._chunks, self._taken, self._filled = None, 0, 0, 0
        self._problem = None

    def is_set(self):
        return self._event.is_set()

    def take(self):
        """Copy what has arrived of the message into place; whether this receive is complete."""
        if self._event.is_set():
            return True
        mailbox = self._mailbox
        if self._key is None:
            key = mailbox._p2p_key(self._src, self._tag)
            if key is None:
                return False
            self._bind(key, mailbox._boxes[key][0][0])
        box = mailbox._boxes.get(self._key)
        while box and self._taken < self._chunks:
            _, payload = box.popleft()
            self._taken += 1
            if self._problem is None:
                self._copy(payload)
        if not box:
            mailbox._boxes.pop(self._key, None)
        if self._taken < self._chunks:
            return False
        del mailbox._bound[self._key]
        if self._problem is None and self._filled != self._flat.nbytes:
            self._problem = f"{self._filled} of {self._flat.nbytes} bytes arrived"
        if self._problem is None:
            self.set_result(self._key[0])
        else:
            self.set_error(CollectiveError(f"rank {self._mailbox.rank}: recv(tag="
                                           f"{self._key[2]}) from rank {self._key[0]}: "
                                           f"{self._problem}"))
        return True

    def _bind(self, key, description):
        self._key = key
        self._mailbox._bound[key] = self
        flat = self._flat
        try:
            self._chunks = max(1, int(description["chunks"]))
            count, dtype = int(description["count"]), str(description["dtype"])
        except (KeyError, TypeError, ValueError):
            self._chunks, count, dtype = 1, None, None
        if (count, dtype) != (flat.size, str(flat.dtype)):
            self._problem = (f"the message holds {count} elements of {dtype}, the receiving "
                             f"array {flat.size} of {flat.dtype}; send and receive arrays must "
                             f"have the same size and dtype")

    def _copy(self, payload):
        n = len(payload)
        if self._filled + n > self._flat.nbytes:
            self._problem = (f"the message is longer than its header says ({self._filled + n} "
                             f"bytes for {self._flat.nbytes})")
            return
        if n:
            self._flat.view(np.uint8)[self._filled:self._filled + n] = \
                np.frombuffer(payload.buffer, dtype=np.uint8)
        self._filled += n

    def is_completed(self):
        if not self._event.is_set():
            self._mailbox.progress(self, 0)
        return self._event.is_set()

    def wait(self, timeout=None):
        mailbox = self._mailbox
        limit = mailbox.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while not self._event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                who = "any rank" if self._src is None else f"rank {self._src}"
                raise (CollectiveError if timeout is None else TimeoutError)(
                    f"rank {mailbox.rank}: recv(tag={self._tag}) got nothing from {who} within "
                    f"{limit:g} s; did the peer die, or send with another tag?")
            mailbox.progress(self, max(1, int(min(left, 0.002) * 1000)))
        return super().wait()
