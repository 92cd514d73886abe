"""Worker-side heartbeats: a progress counter and a thread that reports it to the launcher.

Training code calls `advance()` once per step (DDP does it once per backward). Under
`phalanx run` the first `advance()` starts a daemon thread that sends the counter to the agent
every `PHALANX_HEARTBEAT_INTERVAL` seconds; the agent fails a rank whose counter has not moved for
`--heartbeat-timeout` seconds. Outside the launcher `advance()` only counts. Until the first
`advance()` nothing is sent, so scripts that never call it are never failed for lack of progress.

Standard library, pyzmq and msgpack only: DDP imports it on every step's path.
"""
import hashlib
import hmac
import os
import threading

ENDPOINT_ENV = "PHALANX_HEARTBEAT_ENDPOINT"
INTERVAL_ENV = "PHALANX_HEARTBEAT_INTERVAL"

_progress = 0
_thread = None
_lock = threading.Lock()


def progress():
    """How many times this process called `advance()`."""
    return _progress


def advance(steps=1):
    """Count `steps` units of progress (one training step, one backward)."""
    global _progress
    _progress += steps
    if _thread is None:
        start()


def start():
    """Start the heartbeat thread if the launcher asked for one (idempotent)."""
    global _thread
    with _lock:
        if _thread is not None:
            return _thread
        endpoint = os.environ.get(ENDPOINT_ENV)
        if not endpoint:
            _thread = False          # not under the launcher: counting only
            return _thread
        _thread = _HeartbeatThread(endpoint, float(os.environ.get(INTERVAL_ENV, "1.0")))
        _thread.start()
        return _thread


class _HeartbeatThread(threading.Thread):
    def __init__(self, endpoint, interval):
        super().__init__(name="phalanx-heartbeat", daemon=True)
        self.endpoint, self.interval = endpoint, interval
        self._key = os.environ.get("PHALANX_STORE_TOKEN", "").encode()
        self._local_rank = int(os.environ.get("LOCAL_RANK", 0))

    def run(self):
        import msgpack
        import zmq
        sock = zmq.Context.instance().socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 4)      # never queue more than a few stale beats
        sock.connect(self.endpoint)
        stop = threading.Event()
        while not stop.wait(self.interval):
            body = msgpack.packb([self._local_rank, os.getpid(), _progress])
            mac = hmac.new(self._key, body, hashlib.sha256).digest()
            try:
                sock.send_multipart([mac, body], flags=zmq.NOBLOCK)
            except zmq.Again:
                pass                        # the agent is busy or gone; try again next beat
