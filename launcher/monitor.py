"""Agent-side heartbeat monitor: which local ranks stopped making progress.

Workers' heartbeat threads (`phalanx.distributed.heartbeat`) push `[local_rank, pid, progress]`
signed with the job token. A rank is stale when its progress counter has not changed for
`timeout` seconds; ranks that never sent a beat are not judged (they never called `advance()`).
"""
import hashlib
import hmac
import time

import msgpack
import zmq


class ProgressTracker:
    """The pure bookkeeping, testable without sockets: beats in, stale ranks out."""

    def __init__(self, timeout, clock=time.monotonic):
        self.timeout, self.clock = timeout, clock
        self._pids = {}
        self._last = {}                         # local_rank -> (progress, time it last changed)

    def expect(self, pids):
        """Start a new attempt with these worker pids (local_rank -> pid)."""
        self._pids, self._last = dict(pids), {}

    def beat(self, local_rank, pid, progress):
        if self._pids.get(local_rank) != pid:
            return                              # a beat from a previous attempt's worker
        last = self._last.get(local_rank)
        if last is None or last[0] != progress:
            self._last[local_rank] = (progress, self.clock())

    def stale(self):
        if not self.timeout:
            return []
        now = self.clock()
        return sorted(r for r, (_, t) in self._last.items() if now - t > self.timeout)


class HeartbeatMonitor(ProgressTracker):
    """A `ProgressTracker` fed by a PULL socket bound on loopback."""

    def __init__(self, token, timeout, host="127.0.0.1"):
        super().__init__(timeout)
        self._key = token.encode()
        self._sock = zmq.Context.instance().socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, 4096)
        port = self._sock.bind_to_random_port(f"tcp://{host}")
        self.endpoint = f"tcp://{host}:{port}"

    def drain(self):
        while True:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                continue
            mac, body = frames
            if not hmac.compare_digest(mac, hmac.new(self._key, body, hashlib.sha256).digest()):
                continue
            try:
                local_rank, pid, progress = msgpack.unpackb(body)
            except Exception:
                continue
            self.beat(local_rank, pid, progress)

    def stale(self):
        self.drain()
        return super().stale()

    def close(self):
        self._sock.close(0)
