"""The rendezvous key-value store: a ZeroMQ server and client speaking msgpack.

Every message is two frames, `[hmac, body]`: `body` is a msgpack list and `hmac` is its
HMAC-SHA256 under the job's token, so a process that does not hold the token can neither read nor
write. Requests are `[request_id, op, *args]`; replies are `[request_id, ok, result_or_error]`.
The server answers malformed, oversized and unauthenticated frames, and requests whose arguments
have the wrong types or values, with an error and keeps serving. Values are bytes (str is
encoded as UTF-8), as in PyTorch's TCPStore.

This module imports only the standard library, pyzmq and msgpack: the launcher uses it, and the
launcher must start fast.
"""
import datetime
import hashlib
import hmac
import math
import numbers
import os
import secrets
import sys
import threading
import time
import traceback

import msgpack
import zmq

from .errors import DistStoreError

ENDPOINT_ENV = "PHALANX_STORE_ENDPOINT"
TOKEN_ENV = "PHALANX_STORE_TOKEN"
DEFAULT_TIMEOUT = 300.0
MAX_MESSAGE_BYTES = 64 << 20
MAX_TIMEOUT = 1e8                  # seconds (about three years): longer waits are cut to it

__all__ = ["Store", "StoreServer", "StoreError", "StoreTimeout", "new_token",
           "ENDPOINT_ENV", "TOKEN_ENV"]


class StoreError(DistStoreError):
    """The store rejected a request, or could not be reached."""


class StoreTimeout(StoreError, TimeoutError):
    """A store operation did not complete in time."""


def new_token():
    return secrets.token_hex(16)


def _sign(key, body):
    return hmac.new(key, body, hashlib.sha256).digest()


def _check_key(key, what="key"):
    if not isinstance(key, str):
        raise TypeError(f"store {what} must be a str, got {type(key).__name__} {key!r:.80}; "
                        f"decode bytes keys (key.decode()) and format numbers (str(n))")
    return key


def _check_keys(keys):
    """A str, or an iterable of str, as a list."""
    if isinstance(keys, str):
        return [keys]
    if isinstance(keys, (bytes, bytearray)) or not hasattr(keys, "__iter__"):
        raise TypeError(f"store keys must be a str or a list of str, got "
                        f"{type(keys).__name__} {keys!r:.80}")
    keys = list(keys)
    for key in keys:
        _check_key(key, "keys")
    return keys


def _check_timeout(timeout, what="timeout"):
    """Seconds (a real number or a timedelta), finite and >= 0, as a float."""
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"store {what} must be a number of seconds or a timedelta, got "
                        f"{type(timeout).__name__} {timeout!r:.80}")
    timeout = float(timeout)
    if not (math.isfinite(timeout) and timeout >= 0):
        raise ValueError(f"store {what} must be a finite number of seconds >= 0, got "
                         f"{timeout!r}; pass a large finite value to wait long")
    return min(timeout, MAX_TIMEOUT)


def _check_int(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"store {what} must be an int, got {type(value).__name__} {value!r:.80}")
    return int(value)


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
        self.failure = None          # why the serving loop died, if it did
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
                    frames = self._sock.recv_multipart(copy=True)
                    try:
                        self._handle(frames)
                    except Exception:        # a request we failed to foresee: drop it, serve on
                        sys.stderr.write("[phalanx store] dropped a request that broke the "
                                         "server:\n" + traceback.format_exc())
                self._expire_waiters()
        except BaseException as e:
            self.failure = f"{type(e).__name__}: {e}"
            raise
        finally:
            # linger briefly: the replies just sent (a departing agent's last call) go out
            self._sock.close(linger=500)
            self._ctx.term()

    def alive(self):
        """Whether the serving thread started by `start()` is still serving."""
        return self._thread is not None and self._thread.is_alive()

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
            if not isinstance(request_id, int) or isinstance(request_id, bool):
                raise TypeError(f"request id must be an int, got {type(request_id).__name__}")
            handler = self._ops[op]
            arity = self._arity[op]
            if len(args) != arity:
                raise TypeError(f"{op} takes {arity} argument(s), got {len(args)}")
        except Exception as e:
            return self._reply(identity, None, False, f"malformed request: {e!r:.200}")
        try:
            handler(self, identity, request_id, *args)
        except Exception as e:
            self._reply(identity, request_id, False, f"{op} failed: {e!r:.200}")

    def _op_set(self, ident, rid, key, value):
        _check_key(key)
        self._data[key] = _bytes_arg(value)
        self._reply(ident, rid, True, None)
        self._wake(key)

    def _op_get(self, ident, rid, key, timeout):
        self._park(ident, rid, [_check_key(key)], timeout, lambda: self._data[key])

    def _op_wait(self, ident, rid, keys, timeout):
        self._park(ident, rid, _list_of_keys(keys), timeout, lambda: None)

    def _op_check(self, ident, rid, keys):
        self._reply(ident, rid, True, all(k in self._data for k in _list_of_keys(keys)))

    def _op_add(self, ident, rid, key, amount):
        _check_key(key)
        value = int(self._data.get(key, b"0")) + _check_int(amount, "amount")
        if not -2 ** 63 <= value < 2 ** 63:           # what a reply (msgpack int64) can carry
            raise OverflowError(f"counter {key!r} would become {value}, outside int64")
        self._data[key] = str(value).encode()
        self._reply(ident, rid, True, value)
        self._wake(key)

    def _op_compare_set(self, ident, rid, key, expected, desired):
        _check_key(key)
        expected, desired = _bytes_arg(expected), _bytes_arg(desired)
        current = self._data.get(key)
        if (current is None and expected == b"") or current == expected:
            self._data[key] = bytes(desired)
            self._reply(ident, rid, True, bytes(desired))
            self._wake(key)
        else:
            self._reply(ident, rid, True, current if current is not None else expected)

    def _op_delete(self, ident, rid, key):
        self._reply(ident, rid, True, self._data.pop(_check_key(key), None) is not None)

    def _op_keys(self, ident, rid, prefix):
        _check_key(prefix, "prefix")
        self._reply(ident, rid, True, sorted(k for k in self._data if k.startswith(prefix)))

    def _op_ping(self, ident, rid):
        self._reply(ident, rid, True, "pong")

    _ops = {"set": _op_set, "get": _op_get, "wait": _op_wait, "check": _op_check,
            "add": _op_add, "compare_set": _op_compare_set, "delete": _op_delete,
            "keys": _op_keys, "ping": _op_ping}
    _arity = {"set": 2, "get": 2, "wait": 2, "check": 1, "add": 2, "compare_set": 3,
              "delete": 1, "keys": 1, "ping": 0}

    def _park(self, ident, rid, keys, timeout, value_of):
        timeout = _check_timeout(timeout)
        if all(k in self._data for k in keys):
            return self._reply(ident, rid, True, value_of())
        self._waiters.append([time.monotonic() + timeout, ident, rid, keys, value_of])

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


def _bytes_arg(value):
    if not isinstance(value, bytes):
        raise TypeError(f"values must be bytes, got {type(value).__name__}")
    return value


def _list_of_keys(keys):
    if not isinstance(keys, list):
        raise TypeError(f"keys must be a list of str, got {type(keys).__name__}")
    for key in keys:
        _check_key(key, "keys")
    return keys


class Store:
    """Client of a `StoreServer`; safe to share between threads.

    `timeout` (seconds) bounds every call unless the call passes its own. `get` waits for the key
    to appear, like PyTorch's TCPStore. Arguments are checked here, with errors that name them:
    keys are str, timeouts finite seconds (longer than MAX_TIMEOUT are cut to it). The launcher
    passes its own `local_server`, so that its calls fail at once when that server's thread died.
    """

    def __init__(self, endpoint, token, timeout=DEFAULT_TIMEOUT, local_server=None):
        if not token:
            raise StoreError(f"no token for the store at {endpoint}; pass token= or set "
                             f"{TOKEN_ENV}")
        if "://" not in endpoint:
            endpoint = f"tcp://{endpoint}"
        self.endpoint, self.token = endpoint, token
        self.timeout = _check_timeout(timeout)
        # a StoreServer in this process: calls fail at once if its thread died, instead of
        # waiting out their timeout (the launcher's agent must notice, and honour signals)
        self._local_server = local_server
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
        self._call("set", [_check_key(key), _as_bytes(value, "value")], key, timeout)

    def get(self, key, timeout=None):
        timeout = self._timeout(timeout)
        return self._call("get", [_check_key(key), timeout], key, timeout)

    def wait(self, keys, timeout=None):
        keys = _check_keys(keys)
        timeout = self._timeout(timeout)
        self._call("wait", [keys, timeout], keys, timeout)

    def check(self, keys):
        keys = _check_keys(keys)
        return self._call("check", [keys], keys)

    def add(self, key, amount=1):
        return self._call("add", [_check_key(key), _check_int(amount, "amount")], key)

    def compare_set(self, key, expected, desired, timeout=None):
        """Set `key` to `desired` if it holds `expected` (b"" matches a missing key); returns
        the value it holds afterwards."""
        return self._call("compare_set", [_check_key(key), _as_bytes(expected, "expected value"),
                                          _as_bytes(desired, "value")], key, timeout)

    def delete(self, key):
        return self._call("delete", [_check_key(key)], key)

    delete_key = delete

    def keys(self, prefix=""):
        return self._call("keys", [_check_key(prefix, "prefix")], prefix)

    def num_keys(self):
        return len(self.keys())

    def multi_set(self, keys, values):
        if len(keys) != len(values):
            raise ValueError(f"multi_set: {len(keys)} keys but {len(values)} values")
        for key, value in zip(keys, values):
            self.set(key, value)

    def multi_get(self, keys):
        return [self.get(key) for key in _check_keys(keys)]

    def set_timeout(self, timeout):
        """The default timeout of later calls (seconds or a timedelta)."""
        self.timeout = _check_timeout(timeout)

    def ping(self, timeout=None):
        return self._call("ping", [], None, self._timeout(timeout))

    def barrier(self, world_size, name="default", timeout=None):
        """Block until `world_size` callers reached the barrier `name`; reusable.

        Callers must pass the same barriers in the same order, like any collective.
        """
        if _check_int(world_size, "world_size") < 1:
            raise ValueError(f"store barrier world_size must be >= 1, got {world_size}")
        _check_key(name, "barrier name")
        round_ = self._barrier_rounds.get(name, 0)
        self._barrier_rounds[name] = round_ + 1
        prefix = f"barrier/{name}/{round_}"
        if self.add(f"{prefix}/arrived", 1) == world_size:
            self.set(f"{prefix}/done", b"1")
        self.wait([f"{prefix}/done"], timeout)

    # -- transport --------------------------------------------------------------------------
    def _timeout(self, timeout):
        return self.timeout if timeout is None else _check_timeout(timeout)

    def _check_local_server(self, op, key):
        server = self._local_server
        if server is not None and not server.alive():
            raise StoreError(f"store {op} of key {key!r}: the store server in this process "
                             f"({self.endpoint}) stopped serving"
                             + (f" ({server.failure})" if server.failure else ""))

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
                self._check_local_server(op, key)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreTimeout(
                        f"store {op} of key {key!r} at {self.endpoint} got no answer within "
                        f"{timeout:.1f} s; is the store running (the launcher, or `phalanx "
                        f"store`) and reachable?")
                # with a server in this process, wake up now and then to see it still serves
                step = min(left, 0.1) if self._local_server is not None else left
                if not self._sock.poll(int(step * 1000) + 1, zmq.POLLIN):
                    continue
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
