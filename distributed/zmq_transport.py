"""The ZeroMQ transport under `ZmqProcessGroup`: sockets, authentication, framing.

Each rank binds one PULL socket and connects one PUSH socket to every peer's. Every connection
is authenticated before ZeroMQ hands over a single frame from it: the receiving socket is a
ZeroMQ security server, and the `Gatekeeper` thread (ZeroMQ's authentication hook, ZAP, in
zmq_auth.py, which the store shares) accepts a connection only with a credential derived from
the job's store token, which never travels itself. A process without the token is refused
during ZeroMQ's handshake: nothing it sends reaches the mailbox, the unpickler or the
reductions, and none of it is buffered.

Two mechanisms, chosen by where the bytes travel (`PHALANX_ZMQ_SECURITY` overrides it):
- `plain` on loopback (single-node jobs): ZeroMQ's PLAIN handshake carries a per-group,
  per-rank password, HMAC-SHA256(token, group, rank). It costs nothing per message, and only
  root can read loopback traffic (and root can read the ranks' memory anyway).
- `curve` across hosts: CurveZMQ with per-group, per-rank keypairs derived the same way;
  the handshake proves the sender holds its secret key and every message is encrypted and
  authenticated, so the network can neither read nor forge traffic. Encryption costs CPU
  (see the README for the bandwidth): the price of a network that cannot be trusted.

The connection's rank comes from the credential (ZeroMQ attaches it to every frame as
`User-Id`), never from the message itself. A message is two frames, `[header, payload]`: the
header is msgpack `[kind, key, description]`, the payload raw bytes. Frames are bounded
(`MAX_FRAME_BYTES`; senders cut larger payloads in chunks) and so is the queue of frames not
yet read (`RECV_HWM` per peer): a peer past them is cut off or slowed down, so no peer can grow a
rank without bound. A frame that does not parse is dropped with a warning naming its sender.
"""
import logging
import os
import socket
import threading

import msgpack
import numpy as np
import zmq

from .zmq_auth import Credentials, Gatekeeper, security_for
from .zmq_auth import is_loopback as _is_loopback

CHUNK_BYTES = int(os.environ.get("PHALANX_ZMQ_CHUNK_BYTES", 1 << 20))
MAX_FRAME_BYTES = CHUNK_BYTES + (64 << 10)   # the largest frame a rank accepts
MAX_HEADER_BYTES = 4096
RECV_HWM = 64                                 # frames queued per peer before ZeroMQ pushes back
LINGER_SECONDS = 5.0     # how long shutdown (and exit) waits to deliver queued messages
# Messages below this are copied on send: a memcpy is far cheaper than the zero-copy path (a
# tracker per message, pyzmq's garbage-collector thread, waiting for ZeroMQ to let go of the
# buffer before returning), which pays only from full chunks up (benchmarks/allreduce_bw.py:
# copying wins at 1-4 MB all-reduces, zero-copy by ~10% from 16 MB, on 2 ranks).
ZERO_COPY_BYTES = int(os.environ.get("PHALANX_ZMQ_ZERO_COPY_BYTES", CHUNK_BYTES))
HOST_ENV = "PHALANX_ZMQ_HOST"

log = logging.getLogger("phalanx.distributed")


def local_address(store_endpoint):
    """The address this rank binds and peers reach it at: loopback for a loopback store, else
    the one interface that routes to the store's host (the rendezvous' interface, IPv4 or
    IPv6), never a wildcard. PHALANX_ZMQ_HOST overrides it with an address of this host."""
    chosen = os.environ.get(HOST_ENV, "").strip("[]")
    if chosen:
        if chosen in ("*", "0.0.0.0", "::") or chosen.startswith("0."):
            raise ValueError(f"{HOST_ENV}={chosen!r} would listen on every interface; set it "
                             f"to the address of the one interface the ranks use")
        return chosen
    host = store_endpoint.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost" or _is_loopback(host):
        return "127.0.0.1"
    family, _, _, _, where = socket.getaddrinfo(host, 9, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect(where)                  # no packet is sent; this only picks the route
        return s.getsockname()[0]


def _endpoint(host, port=None):
    """`tcp://host[:port]`, an IPv6 address in brackets."""
    host = f"[{host}]" if ":" in host else host
    return f"tcp://{host}" if port is None else f"tcp://{host}:{port}"


# message kinds
COLLECTIVE, P2P, ERROR = 0, 1, 2


def pack_header(kind, key, description):
    return msgpack.packb([kind, key, description], use_bin_type=True)


class Transport:
    """One rank's sockets of one group: `send(dst, header, payload)` and `receive(wait_ms)`.

    `store`: where ranks publish their addresses (under `prefix`) and whose token keys the
    credentials. Sends are thread-safe; receiving is for one thread at a time.
    """

    def __init__(self, store, rank, size, prefix, timeout):
        self.rank, self.size = rank, size
        self.where = f"rank {rank} of zmq group {prefix!r}"
        host = local_address(store.endpoint)
        self.security = security_for(host)
        credentials = Credentials(getattr(store, "token", None), prefix, size)
        self._ctx = zmq.Context()
        self._gatekeeper = Gatekeeper(self._ctx, credentials.admit, self.where)
        self._gatekeeper.start()
        self._push = []
        try:
            self._connect(store, host, prefix, credentials, timeout)
        except BaseException:
            self.close(0)
            raise
        self._lock = threading.Lock()

    def _connect(self, store, host, prefix, credentials, timeout):
        rank, size = self.rank, self.size
        self._pull = self._ctx.socket(zmq.PULL)
        self._secure(self._pull, credentials, server=True)
        self._pull.setsockopt(zmq.RCVHWM, RECV_HWM)
        self._pull.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        self._pull.setsockopt(zmq.LINGER, 0)
        self._pull.setsockopt(zmq.IPV6, ":" in host)
        port = self._pull.bind_to_random_port(_endpoint(host))
        self.address = _endpoint(host, port)
        store.set(f"{prefix}/addr/{rank}", self.address)
        keys = [f"{prefix}/addr/{r}" for r in range(size)]
        store.wait(keys, timeout=timeout)
        for r in range(size):
            sock = None if r == rank else self._ctx.socket(zmq.PUSH)
            self._push.append(sock)
            if sock is not None:
                self._secure(sock, credentials, server=False, peer=r)
                # our own messages: never refused for lack of room (a bounded send queue could
                # deadlock two ranks that both send before they receive)
                sock.setsockopt(zmq.SNDHWM, 0)
                peer = store.get(keys[r]).decode()
                sock.setsockopt(zmq.IPV6, "[" in peer)
                sock.connect(peer)

    def _secure(self, sock, credentials, server, peer=None):
        if self.security == "plain":
            if server:
                sock.setsockopt(zmq.PLAIN_SERVER, 1)
            else:
                sock.setsockopt(zmq.PLAIN_USERNAME, str(self.rank).encode())
                sock.setsockopt(zmq.PLAIN_PASSWORD, credentials.password(self.rank))
            return
        public, secret = credentials.curve_pair(self.rank)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
        if server:
            sock.setsockopt(zmq.CURVE_SERVER, 1)
        else:
            sock.setsockopt(zmq.CURVE_SERVERKEY, credentials.curve_pair(peer)[0])

    @property
    def refused(self):
        """How many connections the gatekeeper refused."""
        return self._gatekeeper.refused

    def send(self, dst, header, payloads, trackers):
        """Send `[header, payload]` to `dst` for each payload of `payloads` (bytes or 1-d
        arrays of at most CHUNK_BYTES), back to back: no other sender's message to `dst` comes
        between them. Large arrays go zero-copy; their trackers are appended to `trackers`."""
        sock = self._push[dst]
        with self._lock:
            for payload in payloads:
                if isinstance(payload, np.ndarray) and payload.dtype.kind == "V":
                    payload = payload.view(np.uint8)   # bfloat16 has no buffer protocol
                if isinstance(payload, np.ndarray) and payload.nbytes >= ZERO_COPY_BYTES:
                    sock.send(header, zmq.SNDMORE)
                    # zero-copy: ZeroMQ reads the array itself; the tracker says when it is done
                    trackers.append(sock.send(memoryview(payload).cast("B"), copy=False,
                                              track=True))
                else:
                    sock.send_multipart([header, payload])

    def receive(self, wait_ms):
        """The messages that have arrived, waiting up to `wait_ms` for the first, as
        (sender, kind, key, description, payload frame); malformed ones are dropped."""
        got = []
        if not self._pull.poll(wait_ms):
            return got
        while True:
            try:
                frames = self._pull.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return got
            message = self._parse(frames)
            if message is not None:
                got.append(message)

    def _parse(self, frames):
        sender = frames[0].get("User-Id")
        try:
            if len(frames) != 2:
                raise ValueError(f"{len(frames)} frames where [header, payload] was expected")
            if len(frames[0]) > MAX_HEADER_BYTES:
                raise ValueError(f"a header of {len(frames[0])} bytes")
            kind, key, description = msgpack.unpackb(frames[0].bytes, raw=False)
            if kind not in (COLLECTIVE, P2P, ERROR) or type(key) is not int \
                    or not isinstance(description, dict):
                raise ValueError(f"header {[kind, key, description]!r:.200}")
        except Exception as e:  # noqa: BLE001 - any malformed frame is dropped, not fatal
            log.warning("%s: dropped a malformed message from rank %s: %s", self.where, sender,
                        e)
            return None
        return int(sender), kind, key, description, frames[1]

    def close(self, linger=LINGER_SECONDS):
        """Close the sockets, delivering queued messages for up to `linger` seconds, and the
        context, which ends the gatekeeper."""
        for sock in self._push:
            if sock is not None:
                sock.close(int(linger * 1000))
        if getattr(self, "_pull", None) is not None:
            self._pull.close(0)
        self._ctx.term()
        self._gatekeeper.join(5)
