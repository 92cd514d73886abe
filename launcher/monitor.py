"""Agent-side heartbeat monitor: which local ranks died without exiting, or stopped progressing.

Workers' heartbeat threads (`phalanx.distributed.heartbeat`, started by the bootstrap before the
user's code) push `[local_rank, pid, progress]` over connections admitted only after ZeroMQ's
handshake proved the job token (distributed/zmq_auth.py, as the store's). Two verdicts, kept
apart because they answer different questions:
- dead (liveness): no beat for `liveness_timeout` seconds since the last one, or since the
  attempt started for a rank that never beat — the process is stopped (SIGSTOP), frozen or
  wedged, whatever its main thread was doing;
- stuck (progress): the progress counter (`heartbeat.advance()`, once per DDP backward) has not
  moved for `progress_timeout` seconds; judged only after a rank's first advance.
A timeout of 0 turns its check off.
"""
import time

import msgpack
import zmq

from ..distributed.zmq_auth import Gatekeeper, StoreCredentials, store_security


class HeartbeatTracker:
    """The pure bookkeeping, testable without sockets: beats in, dead and stuck ranks out."""

    def __init__(self, liveness_timeout, progress_timeout=0, clock=time.monotonic):
        self.liveness_timeout, self.progress_timeout = liveness_timeout, progress_timeout
        self.clock = clock
        self._pids = {}
        self._started = 0.0
        self._beat = {}                         # local_rank -> time of its last beat
        self._progress = {}                     # local_rank -> (progress, time it last changed)

    def expect(self, pids):
        """Start a new attempt with these worker pids (local_rank -> pid)."""
        self._pids, self._beat, self._progress = dict(pids), {}, {}
        self._started = self.clock()

    def beat(self, local_rank, pid, progress):
        if self._pids.get(local_rank) != pid:
            return                              # a beat from a previous attempt's worker
        now = self.clock()
        self._beat[local_rank] = now
        last = self._progress.get(local_rank)
        if progress and (last is None or last[0] != progress):
            self._progress[local_rank] = (progress, now)

    def last_beat(self, local_rank):
        """Seconds since `local_rank`'s last beat, or None if it never beat."""
        t = self._beat.get(local_rank)
        return None if t is None else self.clock() - t

    def dead(self):
        if not self.liveness_timeout:
            return []
        now = self.clock()
        return sorted(r for r in self._pids
                      if now - self._beat.get(r, self._started) > self.liveness_timeout)

    def stuck(self):
        if not self.progress_timeout:
            return []
        now = self.clock()
        return sorted(r for r, (_, t) in self._progress.items()
                      if now - t > self.progress_timeout)


class HeartbeatMonitor(HeartbeatTracker):
    """A `HeartbeatTracker` fed by a PULL socket bound on loopback, in a context of its own
    whose gatekeeper admits only the job's heartbeat credential."""

    def __init__(self, token, liveness_timeout, progress_timeout=0, host="127.0.0.1"):
        super().__init__(liveness_timeout, progress_timeout)
        credentials = StoreCredentials(token, "heartbeat")
        self._ctx = zmq.Context()
        Gatekeeper(self._ctx, credentials.admit, "heartbeats").start()   # before the bind
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, 4096)
        credentials.secure_server(self._sock, store_security(host))
        port = self._sock.bind_to_random_port(f"tcp://{host}")
        self.endpoint = f"tcp://{host}:{port}"

    def drain(self):
        while True:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                [body] = frames
                local_rank, pid, progress = msgpack.unpackb(body)
                self.beat(local_rank, pid, progress)
            except Exception:  # noqa: BLE001 - a token holder's malformed beat: ignored
                continue

    def dead(self):
        self.drain()
        return super().dead()

    def stuck(self):
        self.drain()
        return super().stuck()

    def close(self):
        self._sock.close(0)
        self._ctx.term()                 # ends the gatekeeper too
