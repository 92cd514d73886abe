"""The rendezvous key-value store: a ZeroMQ server and client speaking msgpack.

Every message is two frames, `[hmac, body]`: `body` is a msgpack list and `hmac` is its
HMAC-SHA256 under the job's token, so a process that does not hold the token can neither read nor
write. Requests are `[request_id, op, *args]`; replies are `[request_id, ok, result_or_error]`.
The server answers malformed, oversized and unauthenticated frames with an error and keeps
serving. Values are bytes (str is encoded as UTF-8), as in PyTorch's TCPStore.

This module imports only the standard library, pyzmq and msgpack: the launcher uses it, and the
launcher must start fast.
"""
import hashlib
import hmac
import os
import secrets
import threading
import time

import msgpack
import zmq

ENDPOINT_ENV = "PHALANX_STORE_ENDPOINT"
TOKEN_ENV = "PHALANX_STORE_TOKEN"
DEFAULT_TIMEOUT = 300.0
MAX_MESSAGE_BYTES = 64 << 20

__all__ = ["Store", "StoreServer", "StoreError", "StoreTimeout", "TCPStore", "new_token",
           "ENDPOINT_ENV", "TOKEN_ENV"]


class StoreError(RuntimeError):
    """The store rejected a request, or could not be reached."""


class StoreTimeout(StoreError, TimeoutError):
    """A store operation did not complete in time."""


def new_token():
    return secrets.token_hex(16)


def _sign(key, body):
    return hmac.new(key, body, hashlib.sha256).digest()


def _as_bytes(value, what):
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"store {what} must be bytes or str, got {type(value).__name__}; "
                    f"encode it first (e.g. str(x).encode() or pickle.dumps(x))")


class StoreServer:
    """Serves the key-value table on `tcp://host:port` (port 0 picks a free one).

    `start()` serves from a daemon thread (the launcher's way); `serve_forever()` serves from the
    calling thread (`phalanx store`). Blocking `get`/`wait` requests are parked, not polled: they
    are answered when their keys appear or their deadline passes.
    """

    def __init__(self, host="127.0.0.1", port=0, token=None, max_message_bytes=MAX_MESSAGE_BYTES):
        self.token = token or new_token()
        self._key = self.token.encode()
        self.max_message_bytes = max_message_bytes
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        # zmq drops (without reply) anything past twice our own limit, so a huge frame cannot
        # exhaust memory; frames between the limits get a proper error reply.
        self._sock.setsockopt(zmq.MAXMSGSIZE, 2 * max_message_bytes + 4096)
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        try:
            if port:
                self._sock.bind(f"tcp://{host}:{port}")
            else:
                port = self._sock.bind_to_random_port(f"tcp://{host}")
        except zmq.ZMQError as e:
            self._sock.close()
            self._ctx.term()
            raise StoreError(f"store cannot bind tcp://{host}:{port}: {e}; pick another port "
                             f"(--rdzv-endpoint host:PORT) or use --standalone") from e
        self.host, self.port = host, int(port)
        self._data = {}
        self._waiters = []           # [deadline, identity, request_id, keys, reply_value_of]
        self._stop = threading.Event()
        self._thread = None
        self._wake_recv = None

    @property
    def endpoint(self):
        host = "127.0.0.1" if self.host in ("0.0.0.0", "*") else self.host
        return f"tcp://{host}:{self.port}"

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, name="phalanx-store",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self):
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if poller.poll(self._poll_ms()):
                    self._handle(self._sock.recv_multipart(copy=True))
                self._expire_waiters()
        finally:
            # linger briefly: the replies just sent (a departing agent's last call) go out
            self._sock.close(linger=500)
            self._ctx.term()

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- protocol ---------------------------------------------------------------------------
    def _poll_ms(self):
        if not self._waiters:
            return 100
        wait = min(w[0] for w in self._waiters) - time.monotonic()
        return max(0, min(100, int(wait * 1000) + 1))

    def _reply(self, identity, request_id, ok, result, signed=True):
        body = msgpack.packb([request_id, ok, result], use_bin_type=True)
        mac = _sign(self._key, body) if signed else b""
        self._sock.send_multipart([identity, mac, body])

    def _handle(self, frames):
        identity, parts = frames[0], frames[1:]
        if len(parts) != 2:
            return self._reply(identity, None, False,
                               f"malformed message: expected 2 frames [hmac, body], "
                               f"got {len(parts)}", signed=False)
        mac, body = parts
        if len(body) > self.max_message_bytes:
            return self._reply(identity, None, False,
                               f"message of {len(body)} bytes exceeds the store's limit of "
                               f"{self.max_message_bytes} bytes", signed=False)
        if not hmac.compare_digest(mac, _sign(self._key, body)):
            return self._reply(identity, None, False,
                               "authentication failed: the message is not signed with this "
                               f"store's token; set {TOKEN_ENV} to the launcher's token",
                               signed=False)
        try:
            request = msgpack.unpackb(body, raw=False)
            request_id, op, *args = request
            handler = self._ops[op]
        except Exception as e:
            return self._reply(identity, None, False, f"malformed request: {e!r}")
        try:
            handler(self, identity, request_id, *args)
        except Exception as e:
            self._reply(identity, request_id, False, f"{op} failed: {e!r}")

    def _op_set(self, ident, rid, key, value):
        self._data[key] = bytes(value)
        self._reply(ident, rid, True, None)
        self._wake(key)

    def _op_get(self, ident, rid, key, timeout):
        self._park(ident, rid, [key], timeout, lambda: self._data[key])

    def _op_wait(self, ident, rid, keys, timeout):
        self._park(ident, rid, list(keys), timeout, lambda: None)

    def _op_check(self, ident, rid, keys):
        self._reply(ident, rid, True, all(k in self._data for k in keys))

    def _op_add(self, ident, rid, key, amount):
        value = int(self._data.get(key, b"0")) + int(amount)
        self._data[key] = str(value).encode()
        self._reply(ident, rid, True, value)
        self._wake(key)

    def _op_compare_set(self, ident, rid, key, expected, desired):
        current = self._data.get(key)
        if (current is None and expected == b"") or current == expected:
            self._data[key] = bytes(desired)
            self._reply(ident, rid, True, bytes(desired))
            self._wake(key)
        else:
            self._reply(ident, rid, True, current if current is not None else expected)

    def _op_delete(self, ident, rid, key):
        self._reply(ident, rid, True, self._data.pop(key, None) is not None)

    def _op_keys(self, ident, rid, prefix):
        self._reply(ident, rid, True, sorted(k for k in self._data if k.startswith(prefix)))

    def _op_ping(self, ident, rid):
        self._reply(ident, rid, True, "pong")

    _ops = {"set": _op_set, "get": _op_get, "wait": _op_wait, "check": _op_check,
            "add": _op_add, "compare_set": _op_compare_set, "delete": _op_delete,
            "keys": _op_keys, "ping": _op_ping}

    def _park(self, ident, rid, keys, timeout, value_of):
        if not all(isinstance(k, str) for k in keys):
            raise TypeError(f"keys must be str, got {keys!r}")
        if all(k in self._data for k in keys):
            return self._reply(ident, rid, True, value_of())
        self._waiters.append([time.monotonic() + float(timeout), ident, rid, keys, value_of])

    def _wake(self, key):
        still = []
        for w in self._waiters:
            if key in w[3] and all(k in self._data for k in w[3]):
                self._reply(w[1], w[2], True, w[4]())
            else:
                still.append(w)
        self._waiters = still

    def _expire_waiters(self):
        now = time.monotonic()
        expired = [w for w in self._waiters if w[0] <= now]
        if expired:
            self._waiters = [w for w in self._waiters if w[0] > now]
            for _, ident, rid, keys, _ in expired:
                missing = [k for k in keys if k not in self._data]
                self._reply(ident, rid, False, {"timeout": missing})


class Store:
    """Client of a `StoreServer`; safe to share between threads.

    `timeout` (seconds) bounds every call unless the call passes its own. `get` waits for the key
    to appear, like PyTorch's TCPStore.
    """

    def __init__(self, endpoint, token, timeout=DEFAULT_TIMEOUT):
        if not token:
            raise StoreError(f"no token for the store at {endpoint}; pass token= or set "
                             f"{TOKEN_ENV}")
        if "://" not in endpoint:
            endpoint = f"tcp://{endpoint}"
        self.endpoint, self.token, self.timeout = endpoint, token, float(timeout)
        self._key = token.encode()
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)
        self._lock = threading.Lock()
        self._next_id = 0
        self._barrier_rounds = {}

    @classmethod
    def from_env(cls, timeout=DEFAULT_TIMEOUT):
        endpoint = os.environ.get(ENDPOINT_ENV)
        token = os.environ.get(TOKEN_ENV)
        if not endpoint or not token:
            raise StoreError(f"{ENDPOINT_ENV} and {TOKEN_ENV} are not set; start the job with "
                             f"`phalanx run` (or set them to a `phalanx store`'s endpoint/token)")
        return cls(endpoint, token, timeout)

    def close(self):
        with self._lock:
            self._sock.close(0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        return {"endpoint": self.endpoint, "token": self.token, "timeout": self.timeout}

    def __setstate__(self, state):
        self.__init__(**state)

    def __repr__(self):
        return f"Store({self.endpoint!r})"

    # -- the API ----------------------------------------------------------------------------
    def set(self, key, value, timeout=None):
        self._call("set", [key, _as_bytes(value, "value")], key, timeout)

    def get(self, key, timeout=None):
        timeout = self._timeout(timeout)
        return self._call("get", [key, timeout], key, timeout)

    def wait(self, keys, timeout=None):
        keys = [keys] if isinstance(keys, str) else list(keys)
        timeout = self._timeout(timeout)
        self._call("wait", [keys, timeout], keys, timeout)

    def check(self, keys):
        keys = [keys] if isinstance(keys, str) else list(keys)
        return self._call("check", [keys], keys)

    def add(self, key, amount=1):
        return self._call("add", [key, int(amount)], key)

    def compare_set(self, key, expected, desired, timeout=None):
        """Set `key` to `desired` if it holds `expected` (b"" matches a missing key); returns
        the value it holds afterwards."""
        return self._call("compare_set", [key, _as_bytes(expected, "expected value"),
                                          _as_bytes(desired, "value")], key, timeout)

    def delete(self, key):
        return self._call("delete", [key], key)

    delete_key = delete

    def keys(self, prefix=""):
        return self._call("keys", [prefix], prefix)

    def ping(self, timeout=None):
        return self._call("ping", [], None, self._timeout(timeout))

    def barrier(self, world_size, name="default", timeout=None):
        """Block until `world_size` callers reached the barrier `name`; reusable.

        Callers must pass the same barriers in the same order, like any collective.
        """
        round_ = self._barrier_rounds.get(name, 0)
        self._barrier_rounds[name] = round_ + 1
        prefix = f"barrier/{name}/{round_}"
        if self.add(f"{prefix}/arrived", 1) == world_size:
            self.set(f"{prefix}/done", b"1")
        self.wait([f"{prefix}/done"], timeout)

    # -- transport --------------------------------------------------------------------------
    def _timeout(self, timeout):
        return self.timeout if timeout is None else float(timeout)

    def _call(self, op, args, key, timeout=None):
        timeout = self._timeout(timeout)
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            body = msgpack.packb([rid, op, *args], use_bin_type=True)
            if len(body) > MAX_MESSAGE_BYTES:
                raise StoreError(f"store {op} of key {key!r}: {len(body)} bytes exceeds the "
                                 f"limit of {MAX_MESSAGE_BYTES} bytes; store a path instead")
            self._sock.send_multipart([_sign(self._key, body), body], copy=False)
            # The server answers a blocking get/wait at its deadline; allow for the transit.
            deadline = time.monotonic() + timeout + (1.0 if op in ("get", "wait") else 0.0)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not self._sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                    raise StoreTimeout(
                        f"store {op} of key {key!r} at {self.endpoint} got no answer within "
                        f"{timeout:.1f} s; is the store running (the launcher, or `phalanx "
                        f"store`) and reachable?")
                frames = self._sock.recv_multipart()
                reply = self._check_reply(frames, op, key)
                if reply[0] == rid:
                    break                       # earlier, timed-out requests' replies are skipped
        _, ok, result = reply
        if ok:
            return result
        if isinstance(result, dict) and "timeout" in result:
            raise StoreTimeout(f"store {op} at {self.endpoint} timed out after {timeout:.1f} s "
                               f"waiting for key(s) {result['timeout']!r}; did every rank reach "
                               f"this point? raise the timeout if startup is slow")
        raise StoreError(f"store {op} of key {key!r} at {self.endpoint} failed: {result}")

    def _check_reply(self, frames, op, key):
        if len(frames) != 2:
            raise StoreError(f"store at {self.endpoint} sent a malformed reply to {op} of key "
                             f"{key!r}: {len(frames)} frames")
        mac, body = frames
        if not mac:
            _, _, error = msgpack.unpackb(body, raw=False)
            raise StoreError(f"store {op} of key {key!r} at {self.endpoint} rejected: {error}")
        if not hmac.compare_digest(mac, _sign(self._key, body)):
            raise StoreError(f"store at {self.endpoint} answered {op} of key {key!r} with a "
                             f"reply not signed by our token: wrong {TOKEN_ENV}?")
        return msgpack.unpackb(body, raw=False)


TCPStore = Store   # the name PyTorch users look for
