"""Worker-side heartbeats: a thread that tells the launcher this process lives, and how far it got.

Under `phalanx run` the worker's bootstrap starts the thread before the user's code runs, so a
rank is watched from its first second: every `PHALANX_HEARTBEAT_INTERVAL` seconds it sends
`[local_rank, pid, progress]` over a connection the job token admits (zmq_auth.py's
handshake, as the store's), even while the main thread computes.
The agent declares dead a rank whose beats stop (`--heartbeat-timeout`, 30 s by default: a
stopped, frozen or deadlocked process), and stuck one whose progress counter did not move for
`--progress-timeout` seconds. Training code calls `advance()` once per step (DDP does it once
per backward); progress is judged only after the first `advance()`, so scripts that never call
it are never failed for lack of progress. Outside the launcher `advance()` only counts.

Standard library only at import (pyzmq, msgpack and zmq_auth.py, loaded by path, are imported
by the thread): DDP imports it on every step's path, and the bootstrap loads this file by path
before phalanx is imported.
"""
import importlib.util
import os
import sys
import threading

ENDPOINT_ENV = "PHALANX_HEARTBEAT_ENDPOINT"
INTERVAL_ENV = "PHALANX_HEARTBEAT_INTERVAL"
THREAD_NAME = "phalanx-heartbeat"
MODULE = "phalanx.distributed.heartbeat"

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


def _shared_progress():
    """The counter `advance()` moves. The bootstrap runs this file under another module name
    before phalanx is imported; the counter that DDP advances is the package module's."""
    module = sys.modules.get(MODULE)
    return module._progress if module is not None else _progress


def start():
    """Start the heartbeat thread if the launcher asked for one and none runs (idempotent)."""
    global _thread
    with _lock:
        if _thread is not None:
            return _thread
        endpoint = os.environ.get(ENDPOINT_ENV)
        if not endpoint or any(t.name == THREAD_NAME for t in threading.enumerate()):
            _thread = False          # not under the launcher, or the bootstrap's thread beats
            return _thread
        _thread = _HeartbeatThread(endpoint, float(os.environ.get(INTERVAL_ENV, "1.0")))
        _thread.start()
        return _thread


class _HeartbeatThread(threading.Thread):
    def __init__(self, endpoint, interval):
        super().__init__(name=THREAD_NAME, daemon=True)
        self.endpoint, self.interval = endpoint, interval
        self._token = os.environ.get("PHALANX_STORE_TOKEN", "")
        self._local_rank = int(os.environ.get("LOCAL_RANK", 0))

    def run(self):
        import msgpack
        import zmq
        auth = _zmq_auth()
        sock = zmq.Context.instance().socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 4)      # never queue more than a few stale beats
        host = self.endpoint.rsplit(":", 1)[0].split("//")[-1].strip("[]")
        auth.StoreCredentials(self._token, "heartbeat").secure_client(
            sock, auth.store_security(host))
        sock.connect(self.endpoint)
        stop = threading.Event()
        while True:
            body = msgpack.packb([self._local_rank, os.getpid(), _shared_progress()])
            try:
                sock.send(body, flags=zmq.NOBLOCK)
            except zmq.Again:
                pass                        # the agent is busy or gone; try again next beat
            if stop.wait(self.interval):
                return


def _zmq_auth():
    """zmq_auth.py, next to this file, loaded by path (it imports only the standard library
    and pyzmq; phalanx itself may not be imported yet)."""
    module = sys.modules.get("phalanx.distributed.zmq_auth")
    if module is not None:
        return module
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zmq_auth.py")
    spec = importlib.util.spec_from_file_location("_phalanx_heartbeat_zmq_auth", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
